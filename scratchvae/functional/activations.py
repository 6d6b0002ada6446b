"""Elementwise activations and their derivatives. Derivations: docs/layers.md#activations.

Every backward is ``dx = dy * f'(x)``, with ``f'`` written in the cheapest form
that the cache allows (from the output where possible).
"""
from ..backend import get_array_module


def relu_forward(x):
    """y = max(x, 0), any shape; the cache is the on/off pattern [x > 0].

    ``maximum`` rather than ``where``: on the CPU it is several times faster, and it
    keeps the input's memory layout (channel-major conv outputs stay so).
    """
    xp = get_array_module(x)
    return xp.maximum(x, 0), x > 0


def relu_backward(dy, mask):
    """dx = dy * [x > 0]."""
    return dy * mask


def leaky_relu_forward(x, negative_slope=0.01):
    """y = x for x > 0, ``negative_slope * x`` otherwise.

    For a slope in [0, 1] that is max(x, slope * x), the same numbers as ``where`` (each is
    one of the two candidates) at a fraction of the cost on the CPU (docs/performance.md).
    """
    xp = get_array_module(x)
    mask = x > 0
    if 0 <= negative_slope <= 1:
        return xp.maximum(x, negative_slope * x), (mask, negative_slope)
    return xp.where(mask, x, negative_slope * x).astype(x.dtype, copy=False), (mask, negative_slope)


def leaky_relu_backward(dy, cache):
    """dx = dy for x > 0, ``negative_slope * dy`` otherwise: dy * max([x > 0], slope) for a slope
    in [0, 1] (the factor is exactly 1 or exactly the slope)."""
    xp = get_array_module(dy)
    mask, negative_slope = cache
    if 0 <= negative_slope <= 1:
        return dy * xp.maximum(mask, xp.asarray(negative_slope, dtype=dy.dtype))
    return xp.where(mask, dy, negative_slope * dy).astype(dy.dtype, copy=False)


def sigmoid(x):
    """Logistic function 1 / (1 + exp(-x)), without overflow for large |x|.

    Uses exp(-|x|) <= 1 on both branches:
    x >= 0: 1 / (1 + e^-x);  x < 0: e^x / (1 + e^x).
    """
    return sigmoid_given_exp(x, get_array_module(x).exp(-get_array_module(x).abs(x)))


def sigmoid_given_exp(x, e):
    """``sigmoid(x)`` when e = exp(-|x|) is already at hand (the Bernoulli likelihood keeps it
    from its forward pass): the same operations on the same numbers, minus the exp."""
    xp = get_array_module(x)
    # numerator 1 for x >= 0 and e for x < 0, as max(e, [x >= 0]) since 0 < e <= 1: the same
    # numbers as where(x >= 0, 1 / d, e / d), without NumPy's slow float ``where``
    return xp.maximum(e, x >= 0) / (1 + e)


def sigmoid_forward(x):
    """y = sigmoid(x); the cache is y itself."""
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy, y):
    """dx = dy * y * (1 - y)."""
    return dy * y * (1 - y)


def tanh_forward(x):
    """y = tanh(x); the cache is y itself."""
    y = get_array_module(x).tanh(x)
    return y, y


def tanh_backward(dy, y):
    """dx = dy * (1 - y^2)."""
    return dy * (1 - y * y)
