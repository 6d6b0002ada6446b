"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh. Math in ``functional/activations.py``."""
from ..functional import activations as F  # F.name at call time: exercises swap in a learner's pair
from .base import Layer

_ANY_RANK = (1, 2, 3, 4, 5)


class _Activation(Layer):
    """An elementwise map with no parameters; any input shape. A subclass defines
    ``_forward(x)`` and ``_backward(dy, cache)``."""

    def forward(self, x, training=True):
        self.check_input(x, _ANY_RANK)
        y, cache = self._forward(x)
        return self.remember(cache, y)

    def backward(self, dy):
        return self._backward(dy, self.take_cache(dy))


class _Piecewise(Layer):
    """A piecewise-linear activation. With ``freeze_pattern`` set (see
    ``scratchvae.gradcheck.frozen_patterns``) it reuses the on/off pattern of
    its last forward, so finite differences never step across a kink."""

    freeze_pattern = False

    def forward(self, x, training=True):
        self.check_input(x, _ANY_RANK)
        if self.freeze_pattern and self._cache is not None and self._out_shape == tuple(x.shape):
            y = self._apply_pattern(x, self._cache)
        else:
            y, self._cache = self._compute(x)
        return self.remember(self._cache, y)

    def backward(self, dy):
        return type(self)._backward(dy, self.take_cache(dy))


class ReLU(_Piecewise):
    """y = max(x, 0)."""

    def _compute(self, x):
        return F.relu_forward(x)

    def _apply_pattern(self, x, mask):
        return F.relu_backward(x, mask)  # x * [x0 > 0]: the same linear map as at x0

    def backward(self, dy):
        return F.relu_backward(dy, self.take_cache(dy))


class Sigmoid(_Activation):
    """y = 1 / (1 + exp(-x)), computed without overflow."""

    def _forward(self, x):
        return F.sigmoid_forward(x)

    def _backward(self, dy, y):
        return F.sigmoid_backward(dy, y)


class Tanh(_Activation):
    """y = tanh(x)."""

    def _forward(self, x):
        return F.tanh_forward(x)

    def _backward(self, dy, y):
        return F.tanh_backward(dy, y)


class LeakyReLU(_Piecewise):
    """y = x for x > 0, ``negative_slope * x`` otherwise (PyTorch's default slope 0.01)."""

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def _compute(self, x):
        return F.leaky_relu_forward(x, self.negative_slope)

    def _apply_pattern(self, x, cache):
        return F.leaky_relu_backward(x, cache)

    def backward(self, dy):
        return F.leaky_relu_backward(dy, self.take_cache(dy))

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope})"
