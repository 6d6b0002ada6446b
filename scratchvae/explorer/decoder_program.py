"""The decoder as a program the page runs: a list of plain operations and one float32 weight
buffer, read by the JavaScript forward pass in ``explorer.js`` (docs/explorer.md).

Tensors in the page are 1-D feature vectors or images stored channels-last (H, W, C), so the
innermost loop of every convolution walks contiguous memory. The weights are written in the
layouts the JavaScript reads:

* ``dense``: W (in, out) as the engine holds it, b (out,);
* ``conv2d``: the engine's W (C_out, C_in, kh, kw) transposed to (kh, kw, C_in, C_out);
* ``conv_transpose2d``: the engine's W (C_in, C_out, kh, kw) transposed to (kh, kw, C_in, C_out);
* ``affine`` (batch norm in evaluation mode): y = x * scale + shift per channel, with
  scale = gamma / sqrt(running_var + eps) and shift = beta - running_mean * scale.

Dropout is the identity in evaluation mode and is left out. The likelihood's mean (the
sigmoid of the Bernoulli's logits, the first half of the channels of a Gaussian with a
per-pixel variance) is the program's last operation, so the program computes exactly
``vae.decode``.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host
from ..layers import (BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dense, Dropout, Flatten,
                      LeakyReLU, ReLU, Reshape, Residual, Sequential, Sigmoid, Tanh, Upsample)


class UnsupportedDecoder(ValueError):
    """The decoder holds a layer (or a likelihood) the page's JavaScript does not implement."""


class _Program:
    """Collects the weight arrays and the operations that read them."""

    def __init__(self):
        self.arrays, self.size, self.macs = [], 0, 0

    def add(self, array) -> int:
        """Append a host array (flattened, as float32); returns its offset in floats."""
        flat = np.ascontiguousarray(array, dtype=np.float32).ravel()
        offset = self.size
        self.arrays.append(flat)
        self.size += flat.size
        return offset

    def weights(self) -> np.ndarray:
        return np.concatenate(self.arrays) if self.arrays else np.zeros(0, np.float32)


def _conv_fields(layer, program, transposed):
    w = to_host(layer.params["W"]).astype(np.float64)
    kh, kw = layer.kernel_size
    # engine (C_out, C_in, kh, kw) or transposed (C_in, C_out, kh, kw) -> (kh, kw, C_in, C_out)
    w = w.transpose(2, 3, 0, 1) if transposed else w.transpose(2, 3, 1, 0)
    b = layer.params.get("b")
    return dict(cin=layer.in_channels, cout=layer.out_channels, k=[kh, kw], stride=list(layer.stride),
                padding=list(layer.padding), w=program.add(w),
                b=program.add(to_host(b)) if b is not None else -1)


def _shape_after(op, shape):
    """The (C, H, W) or (n,) shape after ``op``, to count its multiply-adds."""
    kind = op["op"]
    if kind == "dense":
        return (op["out"],)
    if kind == "reshape":
        return tuple(op["shape"])
    if kind == "flatten":
        return (int(np.prod(shape)),)
    if kind in ("conv2d", "conv_transpose2d"):
        (kh, kw), (sh, sw), (ph, pw) = op["k"], op["stride"], op["padding"]
        h, w = shape[1], shape[2]
        if kind == "conv2d":
            return (op["cout"], (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        oph, opw = op["output_padding"]
        return (op["cout"], (h - 1) * sh - 2 * ph + kh + oph, (w - 1) * sw - 2 * pw + kw + opw)
    if kind == "upsample":
        return (shape[0], shape[1] * op["scale"], shape[2] * op["scale"])
    return shape


def _macs(op, shape_in, shape_out):
    """Multiply-adds of one operation (the page's cost per decode)."""
    if op["op"] == "dense":
        return op["in"] * op["out"]
    if op["op"] == "conv2d":
        return int(np.prod(shape_out)) * op["cin"] * op["k"][0] * op["k"][1]
    if op["op"] == "conv_transpose2d":
        return int(np.prod(shape_in)) * op["cout"] * op["k"][0] * op["k"][1]
    return 0


def _translate(layers, program, shape):
    """Operations for a list of layers, given the input shape; returns (ops, output shape)."""
    ops = []
    for layer in layers:
        if isinstance(layer, Sequential):
            inner, shape = _translate(layer.layers, program, shape)
            ops += inner
            continue
        if isinstance(layer, Dropout):
            continue  # the identity in evaluation mode
        if isinstance(layer, Residual):
            body, out = _translate([layer.body], program, shape)
            shortcut = None
            if layer.shortcut is not None:
                shortcut, _ = _translate([layer.shortcut], program, shape)
            ops.append(dict(op="residual", body=body, shortcut=shortcut))
            shape = out
            continue
        if isinstance(layer, Dense):
            op = dict(op="dense", **{"in": layer.in_features}, out=layer.out_features,
                      w=program.add(to_host(layer.params["W"])), b=program.add(to_host(layer.params["b"])))
        elif isinstance(layer, ConvTranspose2d):
            op = dict(op="conv_transpose2d", **_conv_fields(layer, program, True),
                      output_padding=list(layer.output_padding))
        elif isinstance(layer, Conv2d):
            op = dict(op="conv2d", **_conv_fields(layer, program, False))
        elif isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            gamma, beta = (to_host(layer.params[k]).astype(np.float64) for k in ("gamma", "beta"))
            mean, var = (to_host(layer.buffers[k]).astype(np.float64) for k in ("running_mean", "running_var"))
            scale = gamma / np.sqrt(var + layer.eps)
            op = dict(op="affine", scale=program.add(scale), shift=program.add(beta - mean * scale))
        elif isinstance(layer, Upsample):  # nearest, the one mode the engine has
            op = dict(op="upsample", scale=int(layer.scale_factor))
        elif isinstance(layer, Reshape):
            op = dict(op="reshape", shape=list(layer.shape))
        elif isinstance(layer, Flatten):
            op = dict(op="flatten")
        elif isinstance(layer, LeakyReLU):
            op = dict(op="leaky_relu", slope=layer.negative_slope)
        elif isinstance(layer, (ReLU, Tanh, Sigmoid)):
            op = dict(op=type(layer).__name__.lower())
        else:
            raise UnsupportedDecoder(f"the page's decoder has no JavaScript for the layer {layer!r}")
        out = _shape_after(op, shape)
        program.macs += _macs(op, shape, out)
        ops.append(op)
        shape = out
    return ops, shape


def _likelihood_mean(likelihood, image_shape):
    """The operation that turns the decoder's output into the image mean."""
    name = likelihood.name
    if name == "bernoulli":
        return [dict(op="sigmoid")]
    if name in ("gaussian-fixed", "gaussian-learned-scale"):
        return []
    if name == "gaussian":
        return [dict(op="first_channels", channels=image_shape[0])]
    raise UnsupportedDecoder(f"the page has no JavaScript for the mean of the {name!r} likelihood")


def decoder_program(vae) -> dict:
    """The decoder of ``vae`` (and its likelihood's mean) as the page's program.

    Returns a dict: ``ops`` (the operations, JSON-ready), ``weights`` (float32 (P,), every
    parameter in the layouts above), ``macs`` (multiply-adds per decoded image) and
    ``output_shape`` (C, H, W). Raises ``UnsupportedDecoder`` for a layer it cannot express.
    """
    program = _Program()
    layers = vae.decoder.layers if isinstance(vae.decoder, Sequential) else [vae.decoder]
    ops, shape = _translate(layers, program, (vae.latent_dim,))
    if int(np.prod(shape)) != int(np.prod(vae.image_shape)) * vae.likelihood.channels_per_pixel:
        raise UnsupportedDecoder(f"the decoder's output {shape} does not match the images "
                                 f"{vae.image_shape}")
    if len(shape) != 3:
        ops.append(dict(op="reshape", shape=[vae.image_shape[0] * vae.likelihood.channels_per_pixel,
                                             *vae.image_shape[1:]]))
    ops += _likelihood_mean(vae.likelihood, vae.image_shape)
    return dict(ops=ops, weights=program.weights(), macs=int(program.macs),
                output_shape=list(vae.image_shape))
