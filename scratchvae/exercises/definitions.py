"""The mathematical definitions the grader compares a learner's forward pass with.

Each is the plainest NumPy spelling of the formula, float64, written for ordinary inputs
(moderate logits and log-variances): a second, independent statement of what the engine's
forwards in ``scratchvae.functional`` compute fast and safely. ``tests/test_exercises.py``
checks that the two agree. Two are also the stable references of the safeguard parts
(``bernoulli_nll_stable``, ``softmax_cross_entropy_stable``): they use ``np.logaddexp``,
which is exact for any finite input.
"""
import math

import numpy as np


def relu(x):
    return np.maximum(x, 0.0)


def leaky_relu(x, negative_slope):
    return np.where(x > 0, x, negative_slope * x)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def tanh(x):
    return (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))


def dense(x, W, b):
    """x (N, in), W (in, out), b (out,) -> (N, out)."""
    return x @ W + b


def dropout(x, mask, p):
    return x * mask / (1.0 - p)


def reparameterize(mu, logvar, eps):
    return mu + np.exp(logvar / 2) * eps


def kl_standard_normal(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) of each row: (N, D) -> (N,)."""
    return 0.5 * np.sum(np.exp(logvar) + mu**2 - 1.0 - logvar, axis=1)


def _log_normal(z, mean, var):
    return -0.5 * (np.log(2 * math.pi * var) + (z - mean) ** 2 / var)


def kl_monte_carlo(z, mu, logvar):
    """log q(z|x) - log p(z) of each row: (N, D) -> (N,)."""
    return np.sum(_log_normal(z, mu, np.exp(logvar)) - _log_normal(z, 0.0, 1.0), axis=1)


def _per_image(a):
    return a.reshape(a.shape[0], -1).sum(axis=1)


def bernoulli_nll(logits, x):
    """-sum log p(x | p = sigmoid(logits)) over every pixel of an image: (N, ...) -> (N,)."""
    p = sigmoid(logits)
    return _per_image(-(x * np.log(p) + (1 - x) * np.log(1 - p)))


def bernoulli_nll_stable(logits, x):
    """The same, for any finite logit: log(1 + e^l) - x l."""
    return _per_image(np.logaddexp(0.0, logits) - x * logits)


def gaussian_fixed_nll(mean, x, variance):
    return _per_image(-_log_normal(x, mean, variance))


def gaussian_scale_nll(mean, log_scale, x):
    """One learned log standard deviation s, shape (1,), for every pixel."""
    return _per_image(-_log_normal(x, mean, np.exp(2 * log_scale)))


def conv2d(x, W, b, stride, padding):
    """y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] xpad[n, c, i sh + u, j sw + v]."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _, _, kh, kw = W.shape
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = np.zeros((x.shape[0], W.shape[0], ho, wo)) + b[None, :, None, None]
    for u in range(kh):  # a loop over the kernel's taps, each one a whole-batch product
        for v in range(kw):
            window = xp[:, :, u : u + sh * ho : sh, v : v + sw * wo : sw]
            y += np.einsum("nchw,oc->nohw", window, W[:, :, u, v])
    return y


def conv_transpose2d(x, W, b, stride, padding, output_padding):
    """Each x[n, c, i, j] W[c, o, :, :] added onto the output at (i sh - ph, j sw - pw)."""
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    n, _, h, w = x.shape
    _, c_out, kh, kw = W.shape
    canvas = np.zeros((n, c_out, (h - 1) * sh + kh + oh, (w - 1) * sw + kw + ow))
    for u in range(kh):
        for v in range(kw):
            canvas[:, :, u : u + sh * h : sh, v : v + sw * w : sw] += np.einsum(
                "nchw,co->nohw", x, W[:, :, u, v])
    ho, wo = (h - 1) * sh - 2 * ph + kh + oh, (w - 1) * sw - 2 * pw + kw + ow
    return canvas[:, :, ph : ph + ho, pw : pw + wo] + b[None, :, None, None]


def batchnorm(x, gamma, beta, eps):
    """Per feature (axis 1), over every other axis, with the biased variance."""
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return gamma.reshape(shape) * (x - mean) / np.sqrt(var + eps) + beta.reshape(shape)


def upsample_nearest(x, scale):
    return np.repeat(np.repeat(x, scale, axis=2), scale, axis=3)


def global_avg_pool2d(x):
    return x.mean(axis=(2, 3))


def softmax_cross_entropy(logits, labels):
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(labels)), labels])


def softmax_cross_entropy_stable(logits, labels):
    return np.logaddexp.reduce(logits, axis=1) - logits[np.arange(len(labels)), labels]
