"""Upsample (nearest) and GlobalAvgPool2d. Math in ``functional/resample.py``."""
from ..functional import resample as F  # F.name at call time: exercises swap in a learner's pair
from ..functional.resample import _check_scale
from .base import Layer


class Upsample(Layer):
    """Nearest-neighbour upsampling by an integer factor, as ``torch.nn.Upsample(scale_factor=s,
    mode="nearest")``: (N, C, H, W) -> (N, C, s H, s W), each pixel copied into an s x s block;
    backward sums each block. No parameters."""

    def __init__(self, scale_factor=2, mode="nearest", **kwargs):
        super().__init__(**kwargs)
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got mode={mode!r}")
        try:
            self.scale_factor = _check_scale(scale_factor)
        except ValueError as exc:
            raise ValueError(f"Upsample: {exc}") from None
        self.mode = mode

    def forward(self, x, training=True):
        self.check_input(x, 4)
        y, cache = F.upsample_nearest_forward(x, self.scale_factor)
        return self.remember(cache, y)

    def backward(self, dy):
        return F.upsample_nearest_backward(dy, self.take_cache(dy))

    def __repr__(self):
        return f"Upsample(scale_factor={self.scale_factor}, mode={self.mode!r})"


class GlobalAvgPool2d(Layer):
    """The mean of each channel over its pixels: (N, C, H, W) -> (N, C), as
    ``torch.nn.AdaptiveAvgPool2d(1)`` followed by flattening. No parameters."""

    def forward(self, x, training=True):
        self.check_input(x, 4)
        y, cache = F.global_avg_pool2d_forward(x)
        return self.remember(cache, y)

    def backward(self, dy):
        return F.global_avg_pool2d_backward(dy, self.take_cache(dy))
