"""Flatten and Reshape: change the per-sample shape, keep the batch axis."""
import math

from .base import Layer


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...); backward reshapes back."""

    def forward(self, x, training=True):
        self.check_input(x, (2, 3, 4, 5))
        return self.remember(tuple(x.shape), x.reshape(x.shape[0], -1))

    def backward(self, dy):
        return dy.reshape(self.take_cache(dy))


class Reshape(Layer):
    """(N, ...) -> (N, *shape); ``shape`` is per sample, e.g. ``Reshape((64, 7, 7))``."""

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x, training=True):
        self.check_input(x, (2, 3, 4, 5))
        per_sample = math.prod(x.shape[1:])
        if per_sample != math.prod(self.shape):
            raise ValueError(
                f"Reshape: cannot reshape input of shape {tuple(x.shape)} to (N, "
                f"{', '.join(map(str, self.shape))}): {per_sample} values per sample, "
                f"expected {math.prod(self.shape)}"
            )
        return self.remember(tuple(x.shape), x.reshape((x.shape[0],) + self.shape))

    def backward(self, dy):
        return dy.reshape(self.take_cache(dy))

    def __repr__(self):
        return f"Reshape({self.shape})"
