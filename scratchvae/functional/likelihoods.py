"""Reconstruction likelihoods p(x|z): negative log-likelihood per image, in nats,
and its gradient with respect to the decoder's outputs. Derivations: docs/vae.md.

Each ``*_nll`` returns ``(nll, cache)`` with ``nll`` of shape (N,), summed over
every pixel of an image; each ``*_nll_backward`` takes d(loss)/d(nll) of shape
(N,) and returns the gradients of the decoder outputs (and of any likelihood
parameter).
"""
import math

from ..backend import get_array_module
from .activations import sigmoid_given_exp
from .latent import bound_logvar, softplus

_LOG_2PI = math.log(2 * math.pi)


def _per_image(a):
    """Sum over every axis but the first: (N, ...) -> (N,)."""
    return a.reshape(a.shape[0], -1).sum(axis=1)


def _expand(dnll, like):
    """(N,) -> broadcastable against (N, ...)."""
    return dnll.reshape((-1,) + (1,) * (like.ndim - 1))


def bernoulli_nll(logits, x):
    """-log p(x | logits) for Bernoulli pixels with p = sigmoid(logits), stable for any logit.

    per pixel: softplus(l) - x * l = max(l, 0) - x l + log1p(exp(-|l|))
    For x in [0, 1] (not only {0, 1}) this is the binary cross-entropy.
    """
    xp = get_array_module(logits)
    e = xp.exp(-xp.abs(logits))  # kept: the backward's sigmoid needs the same exp(-|l|)
    return _per_image(softplus(logits, e) - x * logits), (logits, x, e)


def bernoulli_nll_value(logits, x):
    """The value of ``bernoulli_nll`` alone, for scoring (the importance-weighted bound): no
    cache, two scratch arrays reused in place, and one ``log`` per 16 or 32 pixels.

    per pixel: max(l, 0) - x l + log(1 + e), e = exp(-|l|), summed over the image.
    - max(l, 0) = (|l| + l) / 2 exactly (the sum is 2l or 0).
    - sum of log(1 + e) = sum of the logs of products of 2^f factors (``_sum_of_logs``):
      each factor is in (1, 2], so a product of at most 32 stays below 2^32.
    NumPy's float32 ``log1p`` is scalar code, and ``log`` costs about as much as ``exp``
    (docs/performance.md); here the ``exp`` remains and the logs nearly vanish. Rounding:
    1 + e costs 2^-24 nats a pixel, the products at most 1 ulp a factor, the fewer logs
    4 ulp of a larger value; about 10 float32 ulps a pixel against the training form
    (``test_bernoulli_nll_value_agrees_with_bernoulli_nll``).
    """
    xp = get_array_module(logits)
    n = logits.shape[0]
    l, x = logits.reshape(n, -1), x.reshape(n, -1)
    t = xp.abs(l)
    e = xp.negative(t)
    xp.exp(e, out=e)
    e += 1
    logs = _sum_of_logs(e)  # consumes e; it is scratch from here on
    t += l
    t *= 0.5  # max(l, 0)
    t -= xp.multiply(x, l, out=e)
    return t.sum(axis=1) + logs


_MAX_FOLDS = 5  # at most 2^5 factors, each <= 2: a product below 2^32, far from overflow


def _sum_of_logs(a):
    """Row sums of log(a) for a (N, P) in (1, 2], computed as logs of products: the right
    half of the row is multiplied into the left half while P is even, at most
    ``_MAX_FOLDS`` times. ``a`` is overwritten."""
    xp = get_array_module(a)
    width = a.shape[1]
    for _ in range(_MAX_FOLDS):
        if width % 2:
            break
        width //= 2
        a[:, :width] *= a[:, width : 2 * width]
    return xp.log(a[:, :width]).sum(axis=1)


def bernoulli_nll_backward(dnll, cache):
    """d/dlogits = dnll * (sigmoid(l) - x)."""
    logits, x, e = cache
    return _expand(dnll, logits) * (sigmoid_given_exp(logits, e) - x)


def gaussian_fixed_nll(mean, x, variance):
    """-log N(x; mean, c) with a fixed variance c, normalizing constant included.

    per pixel: (x - mean)^2 / (2c) + log(2 pi c) / 2
    The data term is C ||x - mean||^2 with C = 1 / (2c), the tutorial's weighting.
    """
    diff = mean - x
    const = 0.5 * math.log(2 * math.pi * variance)
    return _per_image(diff * diff) / (2.0 * variance) + const * (x[0].size), (diff, variance)


def gaussian_fixed_nll_backward(dnll, cache):
    """d/dmean = dnll * (mean - x) / c."""
    diff, variance = cache
    return _expand(dnll, diff) * diff / variance


def gaussian_scale_nll(mean, log_scale, x):
    """-log N(x; mean, s^2) with one learned log-scale s = log_scale (shape (1,)) for all pixels.

    per pixel: (x - mean)^2 / (2 exp(2 s)) + s + log(2 pi) / 2
    """
    xp = get_array_module(mean)
    diff = mean - x
    inv_var = xp.exp(-2.0 * log_scale)
    sq = _per_image(diff * diff)
    d = x[0].size
    nll = 0.5 * sq * inv_var + d * (log_scale + 0.5 * _LOG_2PI)
    return nll, (diff, inv_var, sq, d)


def gaussian_scale_nll_backward(dnll, cache):
    """d/dmean = dnll (mean - x) / exp(2s);  d/ds = sum_n dnll_n (D - sq_n / exp(2s))."""
    diff, inv_var, sq, d = cache
    dmean = _expand(dnll, diff) * diff * inv_var
    dlog_scale = (dnll * (d - sq * inv_var)).sum(keepdims=True).reshape(1)
    return dmean, dlog_scale


def gaussian_nll(mean, logvar, x):
    """-log N(x; mean, exp(lv)) with a mean and a log-variance per pixel, lv = bound(logvar).

    per pixel: ((x - mean)^2 exp(-lv) + lv + log(2 pi)) / 2
    """
    xp = get_array_module(mean)
    lv, slope = bound_logvar(logvar)
    diff = mean - x
    inv_var = xp.exp(-lv)
    nll = 0.5 * _per_image(diff * diff * inv_var + lv + _LOG_2PI)
    return nll, (diff, inv_var, slope)


def gaussian_nll_backward(dnll, cache):
    """d/dmean = dnll (mean - x) / var;  d/dlogvar = dnll (1 - (x - mean)^2 / var) / 2 * bound'."""
    diff, inv_var, slope = cache
    d = _expand(dnll, diff)
    scaled = diff * inv_var
    return d * scaled, d * (0.5 * (1.0 - diff * scaled)) * slope
