"""The latent pieces of a VAE: the log-variance bound, the reparameterization
z = mu + exp(logvar / 2) * eps, and the KL divergence from q(z|x) = N(mu, diag(exp(logvar)))
to the prior N(0, I): analytic, per latent dimension, with free bits, and Monte-Carlo.
Derivations: docs/vae.md.

Every function that exponentiates a log-variance first passes it through
``bound_logvar``, a smooth two-sided clamp to [LOGVAR_MIN, LOGVAR_MAX]. Inside
that range it is the identity up to about exp(-k d) / k, d the distance to the
nearer bound and k = LOGVAR_SHARPNESS = 4 (below 1e-11 for |logvar| <= 22, 5e-10 at
|logvar| = 25); outside it saturates, so exp() never overflows in float32
(exp(30) ~ 1e13) and no NaN appears for any finite input.
Its derivative is part of each backward and of each gradient check.
"""
import math

from ..backend import get_array_module
from .activations import sigmoid

LOGVAR_MIN = -30.0
LOGVAR_MAX = 30.0
LOGVAR_SHARPNESS = 4.0  # k: a power of two, so k * x and x / k are exact
_SATURATED = 1e4  # beyond the bounds by this much the clamp is flat to every float's precision
_LOG_2PI = math.log(2 * math.pi)


def softplus(x, e=None):
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)).

    ``e``: exp(-|x|) if the caller has computed it (it is shared with ``sigmoid_given_exp``).
    """
    xp = get_array_module(x)
    if e is None:
        e = xp.exp(-xp.abs(x))
    return xp.maximum(x, 0) + xp.log1p(e)


def bound_logvar(logvar, low=LOGVAR_MIN, high=LOGVAR_MAX, k=LOGVAR_SHARPNESS):
    """Smooth clamp b(v) = low + s(high - s(high - v) - low), s(x) = softplus(k x) / k.

    Returns ``(b, db/dv)``; db/dv = sigmoid(k (high - v)) * sigmoid(k (u - low)) with
    u = high - s(high - v), which lies in [0, 1]. Inputs further than 1e4 outside the
    bounds are first clipped there (b and db/dv are already exact in floating point
    there), so k * v cannot overflow.
    """
    xp = get_array_module(logvar)
    v = xp.clip(logvar, low - _SATURATED, high + _SATURATED)
    u = high - softplus(k * (high - v)) / k
    b = low + softplus(k * (u - low)) / k
    slope = sigmoid(k * (high - v)) * sigmoid(k * (u - low))
    return b.astype(logvar.dtype, copy=False), slope.astype(logvar.dtype, copy=False)


def reparameterize_forward(mu, logvar, eps):
    """z = mu + sigma * eps with sigma = exp(bound(logvar) / 2).

    Parameters
    ----------
    mu, logvar, eps : (N, D)

    Returns
    -------
    z : (N, D);  cache
    """
    xp = get_array_module(mu)
    lv, slope = bound_logvar(logvar)
    sigma = xp.exp(0.5 * lv)
    return mu + sigma * eps, (sigma, eps, slope)


def reparameterize_backward(dz, cache):
    """dmu = dz;  dlogvar = dz * eps * sigma / 2 * bound'(logvar)."""
    sigma, eps, slope = cache
    return dz, dz * eps * (0.5 * sigma) * slope


def _twice_kl_terms(mu, logvar):
    """(exp(lv) + mu^2 - 1 - lv, exp(lv), bound'(logvar)), each (N, D): twice the KL of each
    image and latent dimension, the variance and the slope of the bound; lv = bound(logvar)."""
    xp = get_array_module(mu)
    lv, slope = bound_logvar(logvar)
    var = xp.exp(lv)
    return var + mu * mu - 1.0 - lv, var, slope


def kl_standard_normal_forward(mu, logvar):
    """Analytic KL(N(mu, diag(exp(lv))) || N(0, I)) per sample.

    KL_n = 1/2 sum_d (exp(lv) + mu^2 - 1 - lv), lv = bound(logvar)

    Parameters
    ----------
    mu, logvar : (N, D)

    Returns
    -------
    kl : (N,) in nats;  cache
    """
    twice_kl, var, slope = _twice_kl_terms(mu, logvar)
    kl = 0.5 * twice_kl.sum(axis=1)
    return kl, (mu, var, slope)


def kl_standard_normal_backward(dkl, cache):
    """dmu = dkl * mu;  dlogvar = dkl * (exp(lv) - 1) / 2 * bound'(logvar)."""
    mu, var, slope = cache
    d = dkl[:, None]
    return d * mu, d * (0.5 * (var - 1.0)) * slope


def kl_per_dimension(mu, logvar):
    """Analytic KL of each image and latent dimension, KL_nd = (exp(lv) + mu^2 - 1 - lv) / 2.

    Parameters
    ----------
    mu, logvar : (N, D)

    Returns
    -------
    (N, D) in nats; its row sums are ``kl_standard_normal_forward``, its column means the
    per-dimension KL that free bits and the active-unit count read.
    """
    return 0.5 * _twice_kl_terms(mu, logvar)[0]


def kl_free_bits_forward(mu, logvar, free_bits):
    """The free-bits KL (Kingma et al. 2016): a floor of ``free_bits`` nats per latent dimension.

    With KL_d = mean_n KL_nd, the batch-mean KL of dimension d (``kl_per_dimension``), the
    objective is sum_d max(free_bits, KL_d). Its per-image share is

        kl_n = sum_d [ KL_nd if KL_d > free_bits else free_bits ],

    chosen so that mean_n kl_n is exactly that objective. A dimension at or below the floor is
    *inactive*: it adds the constant ``free_bits`` and receives no gradient. The mask depends
    on the whole batch, so the value of one image does too. lv = bound(logvar), as in the
    analytic KL. Derivation: docs/vae.md, "Posterior collapse: KL warm-up and free bits".

    Parameters
    ----------
    mu, logvar : (N, D)
    free_bits : the floor tau >= 0, in nats per latent dimension

    Returns
    -------
    kl : (N,) in nats;  cache
    """
    if not free_bits >= 0:
        raise ValueError(f"free_bits must be >= 0 nats per dimension, got {free_bits}")
    xp = get_array_module(mu)
    twice_kl, var, slope = _twice_kl_terms(mu, logvar)
    kl_nd = 0.5 * twice_kl
    active = kl_nd.mean(axis=0) > free_bits  # (D,): strict, so a dimension on the floor is inactive
    floor = xp.asarray(free_bits, dtype=kl_nd.dtype)
    kl = xp.where(active, kl_nd, floor).sum(axis=1)
    return kl, (mu, var, slope, active.astype(kl_nd.dtype))


def kl_free_bits_backward(dkl, cache):
    """dmu = dkl * mu * a_d;  dlogvar = dkl * (exp(lv) - 1) / 2 * bound'(logvar) * a_d,
    a_d = 1 for an active dimension (KL_d > free_bits), else 0."""
    mu, var, slope, active = cache
    d = dkl[:, None] * active
    return d * mu, d * (0.5 * (var - 1.0)) * slope


def kl_monte_carlo_forward(z, mu, logvar):
    """Single-sample KL estimate log q(z|x) - log p(z) at a given z, per sample.

    log q(z|x) - log p(z) = sum_d [ -lv/2 - (z - mu)^2 / (2 exp(lv)) + z^2 / 2 ]
    (the log(2 pi) terms cancel). Its mean over z ~ q is the analytic KL.

    Parameters
    ----------
    z, mu, logvar : (N, D); z is an input of its own, so the gradient flows
        both through z (and from there through the reparameterization) and
        directly into mu and logvar.

    Returns
    -------
    kl : (N,);  cache
    """
    xp = get_array_module(z)
    lv, slope = bound_logvar(logvar)
    inv_var = xp.exp(-lv)
    diff = z - mu
    kl = (-0.5 * lv - 0.5 * diff * diff * inv_var + 0.5 * z * z).sum(axis=1)
    return kl, (z, diff, inv_var, slope)


def kl_monte_carlo_backward(dkl, cache):
    """Partial derivatives of the estimate, holding the other inputs fixed.

    dz = dkl * (z - (z - mu) / var);  dmu = dkl * (z - mu) / var;
    dlogvar = dkl * (-1/2 + (z - mu)^2 / (2 var)) * bound'(logvar)
    """
    z, diff, inv_var, slope = cache
    d = dkl[:, None]
    scaled = diff * inv_var
    return d * (z - scaled), d * scaled, d * (0.5 * (diff * scaled - 1.0)) * slope


def gaussian_log_density(x, mean, logvar):
    """log N(x; mean, exp(logvar)) elementwise (used by the lessons and evaluation)."""
    xp = get_array_module(x)
    diff = x - mean
    return -0.5 * (_LOG_2PI + logvar + diff * diff * xp.exp(-logvar))
