"""A catalogue of realistic wrong solutions, each with the part of the report that must fail
and the words its hint must contain (``tests/test_exercises.py`` grades every one).

Most are written out as a learner would write them; the mistakes every backward can make
(ignoring the upstream gradient, a flipped sign) are made, for every exercise, by
``generic_mistakes`` from the engine's own pair.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from scratchvae.exercises import EXERCISES, exercise

IGNORES = "does not change when the upstream gradient does"
SIGN = "wrong sign"
IN_PLACE = "in place"
MISSING_DERIVATIVE = "factor f'(x) is missing"
HALF = "the 1/2 of the chain rule"
OVERFLOW = "FloatingPointError"
BATCH_MEAN = "N, the batch size: a mean where a sum belongs"
BATCH_SUM = "N, the batch size: a sum where a mean belongs"


@dataclass
class Mistake:
    exercise: str
    what: str
    forward: Callable
    backward: Callable
    part: str  # the title of the part that must fail
    hint: str  # words its report must contain


def engine_pair(name):
    spec = exercise(name)
    module = importlib.import_module(f"scratchvae.functional.{spec.module}")
    return getattr(module, spec.engine_forward), getattr(module, spec.engine_backward)


def _first_grad(name):
    return "backward d" + {"reparameterize": "mu", "kl_standard_normal": "mu",
                           "kl_monte_carlo": "z", "bernoulli_nll": "logits",
                           "gaussian_fixed_nll": "mean", "gaussian_scale_nll": "mean",
                           "softmax_cross_entropy": "logits"}.get(name, "x")


def generic_mistakes():
    out = []
    for spec in EXERCISES:
        forward, backward = engine_pair(spec.name)
        out.append(Mistake(spec.name, "backward fed ones instead of the upstream gradient",
                           forward, lambda dy, c, b=backward: b(np.ones_like(dy), c),
                           _first_grad(spec.name), IGNORES))
        out.append(Mistake(spec.name, "every gradient negated", forward,
                           lambda dy, c, b=backward: _negate(b(dy, c)), _first_grad(spec.name), SIGN))
    return out


def _negate(grads):
    return tuple(-g for g in grads) if isinstance(grads, tuple) else -grads


# -- activations ------------------------------------------------------------------------
def relu_in_place(x):
    x[x < 0] = 0  # writes into the caller's array
    return x, x > 0


def relu_backward_dy(dy, mask):
    return dy


def leaky_backward_dy(dy, cache):
    return dy


def leaky_fixed_slope(x, negative_slope=0.01):
    mask = x > 0
    return np.where(mask, x, 0.01 * x), (mask, negative_slope)


def sigmoid_naive(x):
    y = 1 / (1 + np.exp(-x))
    return y, y


def sigmoid_backward_dy(dy, y):
    return dy


def tanh_naive(x):
    y = (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))
    return y, y


def tanh_backward_dy(dy, y):
    return dy


# -- dense and dropout ----------------------------------------------------------------
def dense_forward(x, W, b):
    return x @ W + b, (x, W)


def dense_forward_squeezed(x, W, b):
    x = np.squeeze(x)  # "drop stray axes": with N = 1 it drops the batch axis too
    return x @ W + b, (x, W)


def dense_dW_transposed(dy, cache):
    x, W = cache
    return dy @ W.T, dy.T @ x, dy.sum(axis=0)


def dense_db_mean(dy, cache):
    x, W = cache
    return dy @ W.T, x.T @ dy, dy.mean(axis=0)


def dense_db_unsummed(dy, cache):
    x, W = cache
    return dy @ W.T, x.T @ dy, dy


def dense_dW_averaged(dy, cache):
    x, W = cache
    return dy @ W.T, x.T @ dy / len(x), dy.sum(axis=0)


def relu_backward_in_place(dy, mask):
    dy[~mask] = 0  # writes into the caller's upstream gradient
    return dy


def dense_forward_float64(x, W, b):
    return (x @ W + b).astype(np.float64), (x, W)


def dense_dx_unshaped(dy, cache):
    x, W = cache
    return dy @ W, x.T @ dy, dy.sum(axis=0)  # (N, out) @ (in, out): raises


def dropout_forward_unscaled(x, mask, p):
    return x * mask, mask


def dropout_backward_unscaled(dy, scaled_mask):
    return dy * (scaled_mask > 0)


# -- the latent pieces ----------------------------------------------------------------
def reparameterize_forward(mu, logvar, eps):
    sigma = np.exp(0.5 * logvar)
    return mu + sigma * eps, (sigma, eps)


def reparameterize_no_half(dz, cache):
    sigma, eps = cache
    return dz, dz * eps * sigma


def reparameterize_right(dz, cache):
    sigma, eps = cache
    return dz, dz * eps * sigma / 2


def kl_forward_mean(mu, logvar):
    from scratchvae.functional.latent import kl_standard_normal_forward
    kl, cache = kl_standard_normal_forward(mu, logvar)
    return kl / mu.shape[1], cache


def kl_forward_unclamped(mu, logvar):
    return 0.5 * np.sum(np.exp(logvar) + mu**2 - 1 - logvar, axis=1), (mu, logvar)


def kl_backward_no_half(dkl, cache):
    mu, logvar = cache
    return dkl[:, None] * mu, dkl[:, None] * (np.exp(logvar) - 1)


def kl_backward_right(dkl, cache):
    mu, logvar = cache
    return dkl[:, None] * mu, dkl[:, None] * (np.exp(logvar) - 1) / 2


def mc_forward_unclamped(z, mu, logvar):
    var = np.exp(logvar)
    kl = np.sum(-logvar / 2 - (z - mu) ** 2 / (2 * var) + z**2 / 2, axis=1)
    return kl, (z, mu, logvar)


def mc_backward_dmu_sign(dkl, cache):
    z, mu, logvar = cache
    d, inv = dkl[:, None], np.exp(-logvar)
    return d * (z - (z - mu) * inv), -d * (z - mu) * inv, d * ((z - mu) ** 2 * inv - 1) / 2


def mc_backward_no_half(dkl, cache):
    z, mu, logvar = cache
    d, inv = dkl[:, None], np.exp(-logvar)
    return d * (z - (z - mu) * inv), d * (z - mu) * inv, d * ((z - mu) ** 2 * inv - 1)


def mc_backward_right(dkl, cache):
    z, mu, logvar = cache
    d, inv = dkl[:, None], np.exp(-logvar)
    return d * (z - (z - mu) * inv), d * (z - mu) * inv, d * ((z - mu) ** 2 * inv - 1) / 2


# -- likelihoods ----------------------------------------------------------------------
def _per_image(a):
    return a.reshape(len(a), -1).sum(axis=1)


def _expand(d, like):
    return d.reshape((-1,) + (1,) * (like.ndim - 1))


def bernoulli_naive(logits, x):
    p = 1 / (1 + np.exp(-logits))
    return _per_image(-(x * np.log(p) + (1 - x) * np.log(1 - p))), (p, x)


def bernoulli_backward(dnll, cache):
    p, x = cache
    return _expand(dnll, p) * (p - x)


def bernoulli_pixel_mean(logits, x):
    from scratchvae.functional.likelihoods import bernoulli_nll
    nll, cache = bernoulli_nll(logits, x)
    return nll / x[0].size, cache


def bernoulli_backward_flipped(dnll, cache):
    p, x = cache
    return _expand(dnll, p) * (x - p)


def gaussian_fixed_forward(mean, x, variance):
    diff = mean - x
    nll = _per_image(diff**2 / (2 * variance) + 0.5 * np.log(2 * np.pi * variance))
    return nll, (diff, variance)


def gaussian_fixed_no_constant(mean, x, variance):
    diff = mean - x
    return _per_image(diff**2 / (2 * variance)), (diff, variance)


def gaussian_fixed_backward(dnll, cache):
    diff, variance = cache
    return _expand(dnll, diff) * diff / variance


def gaussian_fixed_backward_2c(dnll, cache):
    diff, variance = cache
    return _expand(dnll, diff) * diff / (2 * variance)


def gaussian_scale_forward(mean, log_scale, x):
    diff = mean - x
    inv_var = np.exp(-2 * log_scale)
    sq = _per_image(diff**2)
    d = x[0].size
    return 0.5 * sq * inv_var + d * (log_scale + 0.5 * np.log(2 * np.pi)), (diff, inv_var, sq, d)


def gaussian_scale_unsummed(dnll, cache):
    diff, inv_var, sq, d = cache
    return _expand(dnll, diff) * diff * inv_var, dnll * (d - sq * inv_var)


def gaussian_scale_dmean_averaged(dnll, cache):
    diff, inv_var, sq, d = cache
    return (_expand(dnll, diff) * diff * inv_var / len(diff),
            np.sum(dnll * (d - sq * inv_var), keepdims=True).reshape(1))


def gaussian_scale_dscale_half(dnll, cache):
    diff, inv_var, sq, d = cache
    return (_expand(dnll, diff) * diff * inv_var,
            np.sum(dnll * (d - sq * inv_var), keepdims=True).reshape(1) * 2)


# -- convolutions, batch norm, resampling, classification -----------------------------
def _wrap_backward(name, change):
    """The engine's backward with one learner-like change applied to its gradients."""
    backward = engine_pair(name)[1]
    return lambda dy, cache: change(dy, *backward(dy, cache))


def batchnorm_forward_no_eps(x, gamma, beta, eps=1e-5):
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape))  # eps forgotten
    return gamma.reshape(shape) * xhat + beta.reshape(shape), (xhat, gamma, var, mean, var)


def batchnorm_backward_for_no_eps(dy, cache):
    xhat, gamma, var, _, _ = cache
    axes = (0,) if dy.ndim == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (dy.ndim - 2)
    m = dy.size // dy.shape[1]
    dbeta, dgamma = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    dx = (gamma / np.sqrt(var)).reshape(shape) * (
        dy - (dbeta / m).reshape(shape) - xhat * (dgamma / m).reshape(shape))
    return dx, dgamma, dbeta


def upsample_backward_strided(dy, cache):
    (s,) = cache
    return dy[:, :, ::s, ::s] * 1.0  # one copy's gradient, not the sum over the block


def upsample_backward_mean(dy, cache):
    (s,) = cache
    n, c, hs, ws = dy.shape
    return dy.reshape(n, c, hs // s, s, ws // s, s).mean(axis=(3, 5))


def gap_forward_sum(x):
    return x.sum(axis=(2, 3)), x.shape


def gap_backward(dy, shape):
    return np.broadcast_to(dy[:, :, None, None], shape) / (shape[2] * shape[3])


def gap_backward_no_share(dy, shape):
    return np.broadcast_to(dy[:, :, None, None], shape) * 1.0


def gap_forward(x):
    return x.mean(axis=(2, 3)), x.shape


def softmax_naive(logits, labels):
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(labels)), labels]), (p, labels)


def softmax_backward(dloss, cache):
    p, labels = cache
    onehot = np.eye(p.shape[1])[labels]
    return dloss[:, None] * (p - onehot)


def softmax_backward_batch_mean(dloss, cache):
    p, labels = cache
    return dloss[:, None] * (p - np.eye(p.shape[1])[labels]) / len(labels)


def written_mistakes():
    E = engine_pair
    return [
        Mistake("relu", "zeroes the negatives of x in place", relu_in_place, E("relu")[1],
                "inputs unchanged", IN_PLACE),
        Mistake("relu", "dx = dy", E("relu")[0], relu_backward_dy, "backward dx",
                MISSING_DERIVATIVE),
        Mistake("leaky_relu", "dx = dy", E("leaky_relu")[0], leaky_backward_dy, "backward dx",
                MISSING_DERIVATIVE),
        Mistake("sigmoid", "1 / (1 + exp(-x)) for every x", sigmoid_naive, E("sigmoid")[1],
                "safeguard: large inputs", OVERFLOW),
        Mistake("sigmoid", "dx = dy", E("sigmoid")[0], sigmoid_backward_dy, "backward dx",
                MISSING_DERIVATIVE),
        Mistake("tanh", "tanh from exp(x)", tanh_naive, E("tanh")[1], "safeguard: large inputs",
                OVERFLOW),
        Mistake("tanh", "dx = dy", E("tanh")[0], tanh_backward_dy, "backward dx",
                MISSING_DERIVATIVE),
        Mistake("dense", "dW = dy.T @ x", dense_forward, dense_dW_transposed, "backward dW",
                "transposed"),
        Mistake("dense", "np.squeeze on x", dense_forward_squeezed, E("dense")[1], "batch of one",
                "right number of entries in the wrong shape"),
        Mistake("dense", "db = mean of dy", dense_forward, dense_db_mean, "backward db",
                BATCH_MEAN),
        Mistake("dense", "db = dy, not summed", dense_forward, dense_db_unsummed, "backward db",
                "sum over the batch axis"),
        Mistake("dense", "dW divided by N", dense_forward, dense_dW_averaged, "backward dW",
                BATCH_MEAN),
        Mistake("relu", "dy zeroed in place", E("relu")[0], relu_backward_in_place,
                "inputs unchanged", "changed the upstream gradient in place"),
        Mistake("dense", "y cast to float64", dense_forward_float64, E("dense")[1], "float32",
                "out is float64 for float32 inputs"),
        Mistake("dense", "dx = dy @ W", dense_forward, dense_dx_unshaped, "backward",
                "ValueError: matmul"),
        Mistake("dropout", "no 1 / (1 - p) in the forward", dropout_forward_unscaled,
                dropout_backward_unscaled, "forward", "0.7 x the right one"),
        Mistake("dropout", "no 1 / (1 - p) in the backward", E("dropout")[0],
                dropout_backward_unscaled, "backward dx", "0.7 x the right one"),
        Mistake("reparameterize", "dlogvar without the 1/2", reparameterize_forward,
                reparameterize_no_half, "backward dlogvar", HALF),
        Mistake("reparameterize", "exp(logvar / 2) without a clamp", reparameterize_forward,
                reparameterize_right, "safeguard: the log-variance clamp", OVERFLOW),
        Mistake("kl_standard_normal", "a mean over the latent dimensions", kl_forward_mean,
                E("kl_standard_normal")[1], "forward", "D, the number of values per image"),
        Mistake("kl_standard_normal", "dlogvar without the 1/2", kl_forward_unclamped,
                kl_backward_no_half, "backward dlogvar", HALF),
        Mistake("kl_standard_normal", "exp(logvar) without a clamp", kl_forward_unclamped,
                kl_backward_right, "safeguard: the log-variance clamp", OVERFLOW),
        Mistake("kl_monte_carlo", "dmu with the sign of dz's term", mc_forward_unclamped,
                mc_backward_dmu_sign, "backward dmu", SIGN),
        Mistake("kl_monte_carlo", "dlogvar without the 1/2", mc_forward_unclamped,
                mc_backward_no_half, "backward dlogvar", HALF),
        Mistake("kl_monte_carlo", "exp(-logvar) without a clamp", mc_forward_unclamped,
                mc_backward_right, "safeguard: the log-variance clamp", OVERFLOW),
        Mistake("bernoulli_nll", "log(sigmoid(l))", bernoulli_naive, bernoulli_backward,
                "safeguard: large logits", OVERFLOW),
        Mistake("bernoulli_nll", "a mean over the pixels", bernoulli_pixel_mean,
                E("bernoulli_nll")[1], "forward", "D, the number of values per image"),
        Mistake("bernoulli_nll", "x - sigmoid(l)", bernoulli_naive, bernoulli_backward_flipped,
                "backward dlogits", SIGN),
        Mistake("gaussian_fixed_nll", "no normalizing constant", gaussian_fixed_no_constant,
                gaussian_fixed_backward, "forward", "a constant term is missing"),
        Mistake("leaky_relu", "the slope fixed at 0.01", leaky_fixed_slope, E("leaky_relu")[1],
                "forward", "relative error"),
        Mistake("gaussian_fixed_nll", "dmean divided by 2c", gaussian_fixed_forward,
                gaussian_fixed_backward_2c, "backward dmean", "a factor 1/2 too many"),
        Mistake("gaussian_scale_nll", "dlog_scale per image", gaussian_scale_forward,
                gaussian_scale_unsummed, "backward dlog_scale", "sum the contributions"),
        Mistake("gaussian_scale_nll", "dmean divided by N", gaussian_scale_forward,
                gaussian_scale_dmean_averaged, "backward dmean", BATCH_MEAN),
        Mistake("gaussian_scale_nll", "dlog_scale twice", gaussian_scale_forward,
                gaussian_scale_dscale_half, "backward dlog_scale", HALF),
        Mistake("conv2d", "dW with C_in and C_out swapped", E("conv2d")[0],
                _wrap_backward("conv2d", lambda dy, dx, dW, db: (dx, dW.transpose(1, 0, 2, 3), db)),
                "backward dW", "axes in another order"),
        Mistake("conv2d", "db averaged over the batch", E("conv2d")[0],
                _wrap_backward("conv2d", lambda dy, dx, dW, db: (dx, dW, db / len(dy))),
                "backward db", BATCH_MEAN),
        Mistake("conv_transpose2d", "dW with C_in and C_out swapped", E("conv_transpose2d")[0],
                _wrap_backward("conv_transpose2d",
                               lambda dy, dx, dW, db: (dx, dW.transpose(1, 0, 2, 3), db)),
                "backward dW", "axes in another order"),
        Mistake("conv_transpose2d", "db per image", E("conv_transpose2d")[0],
                _wrap_backward("conv_transpose2d",
                               lambda dy, dx, dW, db: (dx, dW, dy.sum(axis=(2, 3)))),
                "backward db", "axis of"),
        Mistake("batchnorm", "no eps", batchnorm_forward_no_eps, batchnorm_backward_for_no_eps,
                "safeguard: a constant feature", OVERFLOW),
        Mistake("batchnorm", "dgamma averaged over the batch", E("batchnorm")[0],
                _wrap_backward("batchnorm", lambda dy, dx, dg, db: (dx, dg / len(dy), db)),
                "backward dgamma", BATCH_MEAN),
        Mistake("upsample_nearest", "the gradient of one copy", E("upsample_nearest")[0],
                upsample_backward_strided, "backward dx", "relative error"),
        Mistake("upsample_nearest", "a mean over the block", E("upsample_nearest")[0],
                upsample_backward_mean, "backward dx", "s s, the pixels of one upsampled block"),
        Mistake("global_avg_pool2d", "a sum over the pixels", gap_forward_sum, gap_backward,
                "forward", "H W, the pixels of a channel"),
        Mistake("global_avg_pool2d", "no 1 / (H W) in the backward", gap_forward,
                gap_backward_no_share, "backward dx", "H W, the pixels of a channel"),
        Mistake("softmax_cross_entropy", "exp of the raw logits", softmax_naive,
                softmax_backward, "safeguard: large logits", OVERFLOW),
        Mistake("softmax_cross_entropy", "dlogits divided by N", E("softmax_cross_entropy")[0],
                softmax_backward_batch_mean, "backward dlogits", BATCH_MEAN),
    ]


MISTAKES = written_mistakes() + generic_mistakes()
