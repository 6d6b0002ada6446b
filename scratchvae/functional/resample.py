"""Nearest-neighbour upsampling and global average pooling. Derivations:
docs/layers.md#upsample and #globalavgpool2d.

Both keep the engine's layout (see ``functional/conv.py``): they read an (N, C, H, W)
array through its batch-last (C, H, W, N) memory, which is free for a conv output, and
return NCHW-shaped views of batch-last memory, so a conv that follows copies nothing.
No Python loop runs over batch items or pixels.
"""
from ..backend import get_array_module
from .conv import _as_nchw, _batch_last


def _check_scale(scale):
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale_factor must be a positive integer, got {scale!r}")
    return int(scale)


def upsample_nearest_forward(x, scale=2):
    """Nearest-neighbour upsampling by an integer factor s, PyTorch's
    ``interpolate(x, scale_factor=s, mode="nearest")``:

        y[n, c, i, j] = x[n, c, i // s, j // s]

    Parameters
    ----------
    x : (N, C, H, W)
    scale : positive int s

    Returns
    -------
    y : (N, C, s H, s W)
    cache : (s,)
    """
    s = _check_scale(scale)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    x_bl = _batch_last(x)
    blocks = xp.broadcast_to(x_bl[:, :, None, :, None, :], (c, h, s, w, s, n))
    return _as_nchw(blocks.reshape(c, h * s, w * s, n)), (s,)


def upsample_nearest_backward(dy, cache):
    """dx[n, c, i, j] = sum of dy over the s x s block that copied x[n, c, i, j]
    (the adjoint of the copy: sum pooling with window and stride s).

    Returns
    -------
    dx : (N, C, H, W) for dy (N, C, s H, s W)
    """
    (s,) = cache
    n, c, hs, ws = dy.shape
    dy_bl = _batch_last(dy)
    return _as_nchw(dy_bl.reshape(c, hs // s, s, ws // s, s, n).sum(axis=(2, 4)))


def global_avg_pool2d_forward(x):
    """The mean over each channel's pixels: y[n, c] = (1 / (H W)) sum_{i,j} x[n, c, i, j].

    Parameters
    ----------
    x : (N, C, H, W)

    Returns
    -------
    y : (N, C)
    cache : (H, W)
    """
    _, _, h, w = x.shape
    return _batch_last(x).mean(axis=(1, 2)).T, (h, w)


def global_avg_pool2d_backward(dy, cache):
    """dx[n, c, i, j] = dy[n, c] / (H W): every pixel gets an equal share.

    Returns
    -------
    dx : (N, C, H, W), a fresh array (batch-last memory) for dy (N, C)
    """
    xp = get_array_module(dy)
    h, w = cache
    share = (dy.T / (h * w))[:, None, None, :]
    n, c = dy.shape
    return _as_nchw(xp.broadcast_to(share, (c, h, w, n)).copy())
