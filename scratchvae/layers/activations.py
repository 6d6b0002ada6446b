"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh. Math in ``functional/activations.py``."""
from ..functional import activations as F
from .base import Layer

_ANY_RANK = (1, 2, 3, 4, 5)


class _Activation(Layer):
    """An elementwise map with no parameters; any input shape."""

    _forward = None
    _backward = None

    def forward(self, x, training=True):
        self.check_input(x, _ANY_RANK)
        y, cache = type(self)._forward(x)
        return self.remember(cache, y)

    def backward(self, dy):
        return type(self)._backward(dy, self.take_cache(dy))


class ReLU(_Activation):
    """y = max(x, 0)."""

    _forward = F.relu_forward
    _backward = F.relu_backward


class Sigmoid(_Activation):
    """y = 1 / (1 + exp(-x)), computed without overflow."""

    _forward = F.sigmoid_forward
    _backward = F.sigmoid_backward


class Tanh(_Activation):
    """y = tanh(x)."""

    _forward = F.tanh_forward
    _backward = F.tanh_backward


class LeakyReLU(Layer):
    """y = x for x > 0, ``negative_slope * x`` otherwise (PyTorch's default slope 0.01)."""

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)

    def forward(self, x, training=True):
        self.check_input(x, _ANY_RANK)
        y, cache = F.leaky_relu_forward(x, self.negative_slope)
        return self.remember(cache, y)

    def backward(self, dy):
        return F.leaky_relu_backward(dy, self.take_cache(dy))

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope})"
