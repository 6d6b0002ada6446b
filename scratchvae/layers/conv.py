"""Conv2d and ConvTranspose2d layers (NCHW, PyTorch layouts). Math in ``functional/conv.py``."""
from ..functional import conv as F  # F.name at call time: exercises swap in a learner's pair
from ..functional.conv import _pair
from .base import Layer


class Conv2d(Layer):
    """2-D convolution (cross-correlation), as ``torch.nn.Conv2d``.

    Parameters: ``W`` (out_channels, in_channels, kh, kw), ``b`` (out_channels,),
    from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels * kh * kw;
    ``bias=False`` leaves ``b`` out (y has no bias term).
    Input (N, C_in, H, W) -> output (N, C_out, floor((H + 2p - kh)/s) + 1, ...).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *, bias=True,
                 dtype=None, seed=None, rng=None, backend=None):
        super().__init__(dtype=dtype, seed=seed, rng=rng, backend=backend)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        _check_geometry(self._name(), self.kernel_size, self.stride, self.padding)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        self.bias = bool(bias)
        self.add_param("W", self.uniform_init((self.out_channels, self.in_channels, kh, kw), fan_in))
        if self.bias:
            self.add_param("b", self.uniform_init((self.out_channels,), fan_in))

    def forward(self, x, training=True):
        self.check_input(x, 4, self.in_channels)
        try:
            y, cache = F.conv2d_forward(x, self.params["W"], self.params.get("b"), self.stride,
                                      self.padding)
        except ValueError as exc:
            raise ValueError(f"Conv2d: input of shape {tuple(x.shape)}: {exc}") from None
        return self.remember(cache, y)

    skips_input_grad = True

    def backward(self, dy, input_grad=True):
        """dL/dx (None with ``input_grad=False``), and the parameter gradients into ``grads``."""
        dx, dW, db = F.conv2d_backward(dy, self.take_cache(dy), input_grad)
        self.set_grads(W=dW, **({"b": db} if self.bias else {}))
        return dx

    def __repr__(self):
        bias = "" if self.bias else ", bias=False"
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}{bias})")


class ConvTranspose2d(Layer):
    """2-D transposed convolution, as ``torch.nn.ConvTranspose2d``.

    Parameters: ``W`` (in_channels, out_channels, kh, kw), ``b`` (out_channels,),
    from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with PyTorch's fan_in for this layout,
    out_channels * kh * kw; ``bias=False`` leaves ``b`` out.
    Input (N, C_in, H, W) -> output (N, C_out, (H - 1) s - 2p + kh + output_padding, ...).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, *, bias=True, dtype=None, seed=None, rng=None, backend=None):
        super().__init__(dtype=dtype, seed=seed, rng=rng, backend=backend)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.output_padding = _pair(output_padding)
        _check_geometry(self._name(), self.kernel_size, self.stride, self.padding)
        for op, s in zip(self.output_padding, self.stride):
            if not 0 <= op < s:
                raise ValueError(
                    f"ConvTranspose2d: output_padding {self.output_padding} must be smaller than "
                    f"the stride {self.stride} and non-negative"
                )
        kh, kw = self.kernel_size
        fan_in = self.out_channels * kh * kw
        self.bias = bool(bias)
        self.add_param("W", self.uniform_init((self.in_channels, self.out_channels, kh, kw), fan_in))
        if self.bias:
            self.add_param("b", self.uniform_init((self.out_channels,), fan_in))

    def forward(self, x, training=True):
        self.check_input(x, 4, self.in_channels)
        try:
            y, cache = F.conv_transpose2d_forward(
                x, self.params["W"], self.params.get("b"), self.stride, self.padding,
                self.output_padding
            )
        except ValueError as exc:
            raise ValueError(f"ConvTranspose2d: input of shape {tuple(x.shape)}: {exc}") from None
        return self.remember(cache, y)

    def backward(self, dy):
        dx, dW, db = F.conv_transpose2d_backward(dy, self.take_cache(dy))
        self.set_grads(W=dW, **({"b": db} if self.bias else {}))
        return dx

    def __repr__(self):
        bias = "" if self.bias else ", bias=False"
        return (f"ConvTranspose2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}{bias})")


def _check_geometry(name, kernel_size, stride, padding):
    if min(kernel_size) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(
            f"{name}: kernel_size {kernel_size} and stride {stride} must be >= 1 "
            f"and padding {padding} >= 0"
        )
