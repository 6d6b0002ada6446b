"""The exercises: for each hand-derived pair of ``scratchvae.functional``, how to draw its
inputs, which of them the backward differentiates, the definition its forward must match,
the numerical safeguards it must keep, and the docstring of the learner's skeleton.

An exercise is named as the engine's pair without ``_forward``/``_backward``; the learner
writes ``NAME_forward`` and ``NAME_backward`` with the same arguments and return values.
Inputs are drawn by a seeded generator with every axis a different size, so a transposed
or wrongly summed gradient has the wrong shape; ``n`` is the batch size.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import definitions as D


@dataclass
class Case:
    """One set of inputs: ``args`` in the forward's order; ``wrt`` the names of those the
    backward returns gradients for, in its order; ``sizes`` named sizes the hints look for."""

    args: dict
    wrt: tuple
    sizes: dict


@dataclass(frozen=True)
class Safeguard:
    """A separate part: inputs where the plain formula overflows or divides by zero."""

    title: str
    make: Callable  # rng -> Case
    reference: Callable | None = None  # the exact values (float64), or only "finite"


@dataclass(frozen=True)
class Exercise:
    name: str
    lesson: str  # the lesson file (in lessons/) that derives it
    module: str  # scratchvae.functional.<module> holds the engine's pair: the answer key
    engine_forward: str
    engine_backward: str
    signature: str  # the forward's parameters, as the skeleton writes them
    make: Callable  # (rng, n, dims, k) -> Case; dims are distinct sizes, k the case number
    definition: Callable  # what the forward must equal, given the case's args
    doc: str  # the skeleton's docstring: shapes, what to return
    elementwise: bool = False  # dx = dy * f'(x): a dx equal to dy misses f'
    safeguards: tuple = ()
    factor_hints: dict = field(default_factory=dict)  # ratio (yours / right) -> the likely cause


def _away_from_zero(rng, shape):
    """|x| in [0.2, 2]: a finite-difference step never crosses a kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.2, 2.0, size=shape)


def _elementwise_case(rng, n, dims, k, values=None):
    x = (values or (lambda s: 2.0 * rng.standard_normal(s)))((n, dims[0], dims[1]))
    return Case(dict(x=x), ("x",), dict(N=n))


def _huge_logvar_case(names):
    """Log-variances of +-1e4, +-500 and +-90: exp overflows (float32 from 89 on) without a clamp."""
    def make(rng):
        logvar = np.array([[1e4, 500.0, 90.0], [-1e4, -500.0, -90.0]])
        args = {name: logvar if name == "logvar" else rng.standard_normal(logvar.shape)
                for name in names}
        return Case(args, tuple(n for n in names if n != "eps"), dict(N=2))
    return make


_HALF = {2.0: "a factor 2: the 1/2 of the chain rule (d/dv exp(v / 2) = exp(v / 2) / 2, or the "
              "1/2 in front of a square) is missing",
         0.5: "a factor 1/2 too many: a 1/2 of the chain rule applied twice, or where none belongs"}
_LOGVAR_CLAMP = "the log-variance clamp: logvar of +-1e4 and +-500 (bound it before exp; "\
    "scratchvae.functional.latent.bound_logvar does it, and you may call it)"
_SIGMA_DOC = """
    logvar may be any finite number: exp() of a large one overflows, so bound it first,
    ``lv, slope = bound_logvar(logvar)`` (from scratchvae.functional.latent; ``slope`` is
    d lv / d logvar, ~1 for ordinary values), and multiply the logvar gradient by ``slope``."""


def _dense(rng, n, dims, k):
    i, o = dims[:2]
    return Case(dict(x=rng.standard_normal((n, i)), W=rng.standard_normal((i, o)),
                     b=rng.standard_normal(o)), ("x", "W", "b"), dict(N=n))


def _dropout(rng, n, dims, k):
    shape = (n, dims[0], dims[1])
    mask = (rng.random(shape) < 0.7).astype(np.float64)
    return Case(dict(x=rng.standard_normal(shape), mask=mask, p=0.3), ("x",), dict(N=n))


def _latent(names):
    def make(rng, n, dims, k):
        shape = (n, dims[0])
        args = {name: rng.standard_normal(shape) for name in names}
        args["logvar"] = rng.uniform(-2.0, 2.0, shape)
        args = {name: args[name] for name in names}
        return Case(args, tuple(a for a in names if a != "eps"), dict(N=n, D=dims[0]))
    return make


def _image_sizes(n, dims):
    return dict(N=n, D=dims[0] * dims[1])


def _bernoulli(rng, n, dims, k):
    shape = (n, dims[0], dims[1])
    return Case(dict(logits=2.0 * rng.standard_normal(shape), x=rng.random(shape)), ("logits",),
                _image_sizes(n, dims))


def _bernoulli_large(rng):
    logits = np.array([[1e4, -1e4, 1e3, -1e3], [100.0, -100.0, 40.0, -40.0]])
    x = np.array([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    return Case(dict(logits=logits, x=x), ("logits",), dict(N=2))


def _gaussian_fixed(rng, n, dims, k):
    shape = (n, dims[0], dims[1])
    return Case(dict(mean=rng.standard_normal(shape), x=rng.random(shape), variance=0.3),
                ("mean",), _image_sizes(n, dims))


def _gaussian_scale(rng, n, dims, k):
    shape = (n, dims[0], dims[1])
    return Case(dict(mean=rng.standard_normal(shape), log_scale=rng.uniform(-0.5, 0.5, 1),
                     x=rng.random(shape)), ("mean", "log_scale"), _image_sizes(n, dims))


def _conv_geometry(rng, h, w):
    kh, kw = (int(rng.integers(1, min(3, s) + 1)) for s in (h, w))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    padding = tuple(int(p) for p in rng.integers(0, 2, 2))
    return (kh, kw), stride, padding


def _conv2d(rng, n, dims, k):
    c_in, c_out, h, w = dims[:4]
    (kh, kw), stride, padding = _conv_geometry(rng, h, w)
    return Case(dict(x=rng.standard_normal((n, c_in, h, w)),
                     W=rng.standard_normal((c_out, c_in, kh, kw)), b=rng.standard_normal(c_out),
                     stride=stride, padding=padding), ("x", "W", "b"), dict(N=n))


def _conv_transpose2d(rng, n, dims, k):
    c_in, c_out, h, w = dims[:4]
    (kh, kw), stride, padding = _conv_geometry(rng, h, w)
    output_padding = tuple(int(rng.integers(0, s)) for s in stride)
    # padding may not eat the whole output: (size - 1) s - 2 p + k + op >= 1
    padding = tuple(min(p, ((size - 1) * s + k + op - 1) // 2) for p, size, s, k, op in
                    zip(padding, (h, w), stride, (kh, kw), output_padding))
    return Case(dict(x=rng.standard_normal((n, c_in, h, w)),
                     W=rng.standard_normal((c_in, c_out, kh, kw)), b=rng.standard_normal(c_out),
                     stride=stride, padding=padding, output_padding=output_padding),
                ("x", "W", "b"), dict(N=n))


def _batchnorm(rng, n, dims, k):
    """Even k: (N, F) with N > F + 1 rows (with two, each xhat is +-1 and dx nearly 0, all
    rounding); odd k: (N, C, H, W), N may be 1."""
    c = dims[0]
    if k % 2 == 0:
        n = n * dims[1] + c
        shape, sizes = (n, c), dict(N=n)
    else:
        shape, sizes = (n, c, dims[1], dims[2]), dict(N=n, **{"N H W": n * dims[1] * dims[2]})
    return Case(dict(x=1.5 * rng.standard_normal(shape) + 0.5, gamma=rng.standard_normal(c),
                     beta=rng.standard_normal(c), eps=1e-5), ("x", "gamma", "beta"), sizes)


def _batchnorm_constant(rng):
    x = rng.standard_normal((4, 3))
    x[:, 1] = 0.7  # a feature with variance 0: only eps keeps 1 / sqrt(var + eps) finite
    return Case(dict(x=x, gamma=rng.standard_normal(3), beta=rng.standard_normal(3), eps=1e-5),
                ("x", "gamma", "beta"), dict(N=4))


def _image(rng, n, dims, k):
    return Case(dict(x=rng.standard_normal((n, dims[0], dims[1], dims[2]))), ("x",),
                dict(N=n, **{"H W": dims[1] * dims[2]}))


def _upsample(rng, n, dims, k):
    case = _image(rng, n, dims, k)
    case.args["scale"] = 2 + k % 2
    case.sizes["s s"] = case.args["scale"] ** 2
    return case


def _softmax_ce(rng, n, dims, k):
    return Case(dict(logits=2.0 * rng.standard_normal((n, dims[0])),
                     labels=rng.integers(0, dims[0], n)), ("logits",), dict(N=n))


def _softmax_large(rng):
    return Case(dict(logits=np.array([[1e4, 0.0, -1e4], [800.0, 1000.0, 0.0]]),
                     labels=np.array([1, 1])), ("logits",), dict(N=2))


def _large_inputs(rng):
    return Case(dict(x=np.array([[-1000.0, -100.0, -30.0], [30.0, 100.0, 1000.0]])), ("x",),
                dict(N=2))


def _sigmoid_reference(x):
    with np.errstate(over="ignore"):
        return D.sigmoid(x)  # exp(1000) = inf gives 1 / inf = 0: the right limit


_ELEMENTWISE_DOC = """x : any shape, e.g. (N, F) or (N, C, H, W)
    Returns (y, cache): y = {formula}, the shape of x.
    Backward returns dx, the shape of x."""

EXERCISES = [
    Exercise("relu", "04_dense_backward.md", "activations", "relu_forward", "relu_backward", "x",
             lambda rng, n, dims, k: _elementwise_case(rng, n, dims, k,
                                                       lambda s: _away_from_zero(rng, s)),
             lambda x: D.relu(x), _ELEMENTWISE_DOC.format(formula="max(x, 0)"), elementwise=True),
    Exercise("leaky_relu", "04_dense_backward.md", "activations", "leaky_relu_forward",
             "leaky_relu_backward", "x, negative_slope=0.01",
             lambda rng, n, dims, k: Case(dict(x=_away_from_zero(rng, (n, dims[0], dims[1])),
                                               negative_slope=0.2), ("x",), dict(N=n)),
             D.leaky_relu, _ELEMENTWISE_DOC.format(
                 formula="x where x > 0, negative_slope * x elsewhere"), elementwise=True),
    Exercise("sigmoid", "04_dense_backward.md", "activations", "sigmoid_forward",
             "sigmoid_backward", "x", _elementwise_case, D.sigmoid,
             _ELEMENTWISE_DOC.format(formula="1 / (1 + exp(-x))") + """
    x may be any finite number: exp(-x) overflows for x < -710 (x < -89 in float32).""",
             elementwise=True,
             safeguards=(Safeguard("large inputs: x = +-30, +-100, +-1000 (exp(-x) overflows; "
                                   "use exp(-|x|) on both sides)", _large_inputs,
                                   _sigmoid_reference),)),
    Exercise("tanh", "04_dense_backward.md", "activations", "tanh_forward", "tanh_backward", "x",
             _elementwise_case, D.tanh,
             _ELEMENTWISE_DOC.format(formula="tanh(x) = (e^x - e^-x) / (e^x + e^-x)"),
             elementwise=True,
             safeguards=(Safeguard("large inputs: x = +-30, +-100, +-1000 (e^x overflows; "
                                   "np.tanh does not)", _large_inputs, np.tanh),)),
    Exercise("dense", "04_dense_backward.md", "dense", "dense_forward", "dense_backward",
             "x, W, b", _dense, D.dense, """x : (N, in);  W : (in, out);  b : (out,)
    Returns (y, cache): y = x @ W + b, shape (N, out).
    Backward returns (dx, dW, db) with the shapes of x, W and b."""),
    Exercise("dropout", "04_dense_backward.md", "dropout", "dropout_forward", "dropout_backward",
             "x, mask, p", _dropout, D.dropout, """x : any shape;  mask : the shape of x, 1 where a
    unit is kept and 0 where it is dropped;  p : the drop probability in [0, 1)
    Returns (y, cache): y = x * mask / (1 - p) (inverted dropout), the shape of x.
    Backward returns dx, the shape of x.""", elementwise=True),
    Exercise("reparameterize", "02_reparameterization.md", "latent", "reparameterize_forward",
             "reparameterize_backward", "mu, logvar, eps", _latent(("mu", "logvar", "eps")),
             D.reparameterize, """mu, logvar, eps : (N, D)
    Returns (z, cache): z = mu + exp(logvar / 2) * eps, shape (N, D).
    Backward returns (dmu, dlogvar), each (N, D); eps is noise and gets no gradient.""" + _SIGMA_DOC,
             safeguards=(Safeguard(_LOGVAR_CLAMP, _huge_logvar_case(("mu", "logvar", "eps"))),),
             factor_hints=_HALF),
    Exercise("kl_standard_normal", "03_kl_divergence.md", "latent", "kl_standard_normal_forward",
             "kl_standard_normal_backward", "mu, logvar", _latent(("mu", "logvar")),
             D.kl_standard_normal, """mu, logvar : (N, D), the encoder's q(z|x) = N(mu, exp(logvar))
    Returns (kl, cache): kl[n] = KL(q(z|x_n) || N(0, I)) in nats, shape (N,): a sum over D.
    Backward takes dkl (N,) and returns (dmu, dlogvar), each (N, D).""" + _SIGMA_DOC,
             safeguards=(Safeguard(_LOGVAR_CLAMP, _huge_logvar_case(("mu", "logvar"))),),
             factor_hints=_HALF),
    Exercise("kl_monte_carlo", "03_kl_divergence.md", "latent", "kl_monte_carlo_forward",
             "kl_monte_carlo_backward", "z, mu, logvar", _latent(("z", "mu", "logvar")),
             D.kl_monte_carlo, """z, mu, logvar : (N, D); z is a sample of q(z|x) = N(mu, exp(logvar))
    Returns (kl, cache): kl[n] = sum_d [log q(z|x_n) - log p(z)], shape (N,), p = N(0, I).
    Backward takes dkl (N,) and returns (dz, dmu, dlogvar), each (N, D): the partial
    derivatives, each holding the other two inputs fixed.""" + _SIGMA_DOC,
             safeguards=(Safeguard(_LOGVAR_CLAMP, _huge_logvar_case(("z", "mu", "logvar"))),),
             factor_hints=_HALF),
    Exercise("bernoulli_nll", "01_elbo.md", "likelihoods", "bernoulli_nll",
             "bernoulli_nll_backward", "logits, x", _bernoulli, D.bernoulli_nll,
             """logits : (N, ...), the decoder's output;  x : the shape of logits, pixels in [0, 1]
    Returns (nll, cache): nll[n] = -sum over every pixel of image n of
    x log p + (1 - x) log(1 - p), p = sigmoid(logits), shape (N,).
    Any finite logit must give a finite nll: log(sigmoid(-1000)) is log(0).
    Backward takes dnll (N,) and returns dlogits, the shape of logits.""",
             safeguards=(Safeguard("large logits: +-40 to +-1e4 (write log p through a stable "
                                   "softplus, log(1 + e^l) = max(l, 0) + log1p(e^-|l|))",
                                   _bernoulli_large, D.bernoulli_nll_stable),)),
    Exercise("gaussian_fixed_nll", "01_elbo.md", "likelihoods", "gaussian_fixed_nll",
             "gaussian_fixed_nll_backward", "mean, x, variance", _gaussian_fixed,
             D.gaussian_fixed_nll, """mean : (N, ...), the decoder's output;  x : the shape of mean;
    variance : a fixed float c
    Returns (nll, cache): nll[n] = -log N(x_n; mean_n, c I), summed over every pixel of
    image n, normalizing constant included, shape (N,).
    Backward takes dnll (N,) and returns dmean, the shape of mean.""", factor_hints=_HALF),
    Exercise("gaussian_scale_nll", "01_elbo.md", "likelihoods", "gaussian_scale_nll",
             "gaussian_scale_nll_backward", "mean, log_scale, x", _gaussian_scale,
             D.gaussian_scale_nll, """mean : (N, ...);  log_scale : (1,), one learned log standard
    deviation s for every pixel;  x : the shape of mean
    Returns (nll, cache): nll[n] = -log N(x_n; mean_n, exp(2 s) I), summed over every pixel
    of image n, shape (N,).
    Backward takes dnll (N,) and returns (dmean, dlog_scale), shapes of mean and (1,).""",
             factor_hints=_HALF),
    Exercise("conv2d", "05_convolution.md", "conv", "conv2d_forward", "conv2d_backward",
             "x, W, b, stride=(1, 1), padding=(0, 0)", _conv2d, D.conv2d,
             """x : (N, C_in, H, W);  W : (C_out, C_in, kh, kw);  b : (C_out,)
    stride, padding : pairs (sh, sw), (ph, pw); zero padding on every side
    Returns (y, cache): y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] xpad[n, c, i sh + u,
    j sw + v], shape (N, C_out, Ho, Wo), Ho = (H + 2 ph - kh) // sh + 1.
    Backward returns (dx, dW, db) with the shapes of x, W and b."""),
    Exercise("conv_transpose2d", "06_transposed_convolution.md", "conv",
             "conv_transpose2d_forward", "conv_transpose2d_backward",
             "x, W, b, stride=(1, 1), padding=(0, 0), output_padding=(0, 0)", _conv_transpose2d,
             D.conv_transpose2d, """x : (N, C_in, H, W);  W : (C_in, C_out, kh, kw);  b : (C_out,)
    stride, padding, output_padding : pairs, output_padding < stride
    Returns (y, cache): each x[n, c, i, j] * W[c, :, :, :] added onto the output at offset
    (i sh - ph, j sw - pw), plus b; shape (N, C_out, Ho, Wo), Ho = (H - 1) sh - 2 ph + kh + oh.
    Backward returns (dx, dW, db) with the shapes of x, W and b."""),
    Exercise("batchnorm", "11_residual_networks.md", "batchnorm", "batchnorm_forward",
             "batchnorm_backward", "x, gamma, beta, eps=1e-5", _batchnorm, D.batchnorm,
             """x : (N, F) or (N, C, H, W);  gamma, beta : (F,) or (C,)
    Returns (y, cache): per feature (axis 1), mean and biased variance over every other
    axis, y = gamma (x - mean) / sqrt(var + eps) + beta, the shape of x.
    The BatchNorm layers read the running statistics from your cache: make its last two
    entries that mean and var, each (F,) or (C,).
    Backward returns (dx, dgamma, dbeta) with the shapes of x, gamma and beta.""",
             safeguards=(Safeguard("a constant feature: variance 0, where only eps keeps "
                                   "1 / sqrt(var + eps) finite", _batchnorm_constant, D.batchnorm),)),
    Exercise("upsample_nearest", "11_residual_networks.md", "resample", "upsample_nearest_forward",
             "upsample_nearest_backward", "x, scale=2", _upsample, D.upsample_nearest,
             """x : (N, C, H, W);  scale : a positive int s
    Returns (y, cache): y[n, c, i, j] = x[n, c, i // s, j // s], shape (N, C, s H, s W).
    Backward returns dx, the shape of x."""),
    Exercise("global_avg_pool2d", "11_residual_networks.md", "resample",
             "global_avg_pool2d_forward", "global_avg_pool2d_backward", "x", _image,
             D.global_avg_pool2d, """x : (N, C, H, W)
    Returns (y, cache): y[n, c] = the mean of x[n, c] over its H W pixels, shape (N, C).
    Backward takes dy (N, C) and returns dx, the shape of x."""),
    Exercise("softmax_cross_entropy", "11_residual_networks.md", "classification",
             "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "logits, labels",
             _softmax_ce, D.softmax_cross_entropy, """logits : (N, K) class scores;  labels : (N,) int
    class indices in [0, K)
    Returns (loss, cache): loss[n] = -log softmax(logits[n])[labels[n]], shape (N,).
    Any finite logits must give a finite loss: exp(1000) overflows.
    Backward takes dloss (N,) and returns dlogits, shape (N, K).""",
             safeguards=(Safeguard("large logits: 1e4 and 1000 (subtract each row's max before "
                                   "exp)", _softmax_large, D.softmax_cross_entropy_stable),)),
]

BY_NAME = {e.name: e for e in EXERCISES}
NAMES = tuple(BY_NAME)


def exercise(name) -> Exercise:
    """The exercise called ``name``; ``KeyError`` listing the names otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(NAMES)}") from None


def answer_key(name):
    """The engine's own (forward, backward) for exercise ``name``: what a learner's pair is
    compared with once it passes, and what ``substituted`` puts back."""
    spec = exercise(name)
    module = importlib.import_module(f"scratchvae.functional.{spec.module}")
    return getattr(module, spec.engine_forward), getattr(module, spec.engine_backward)
