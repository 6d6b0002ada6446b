"""2-D convolution (cross-correlation, as PyTorch) and its adjoint, the transposed
convolution, by im2col. Derivations: docs/layers.md#conv2d and #convtranspose2d.

Layout is NCHW throughout. Conv2d weights are ``(C_out, C_in, kh, kw)``;
ConvTranspose2d weights are ``(C_in, C_out, kh, kw)``, as in PyTorch.

Two helpers carry all the indexing:

* ``im2col`` reads every kernel-sized window of a padded image through a strided
  view (no copy until the one reshape into a matrix), so a convolution is one
  matrix product;
* ``col2im`` is its adjoint: it adds each column back where it was read from,
  one kernel tap at a time, each tap a single vectorized slice over the batch.

Conv backward-to-input is ``col2im``; transposed conv forward is the same
``col2im``; transposed conv backward-to-input is ``im2col``. No Python loop
runs over batch items or pixels, only over the ``kh * kw`` kernel taps.
"""
from ..backend import get_array_module


def _pair(v):
    """``3 -> (3, 3)``; a pair passes through."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv2d_output_size(size, kernel_size, stride=1, padding=0):
    """Output (H, W) of a convolution: floor((size + 2p - k) / s) + 1 per axis."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = map(_pair, (size, kernel_size, stride, padding))
    out = ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(
            f"input {h}x{w} with padding {(ph, pw)} is smaller than the kernel {kh}x{kw}: "
            "use a larger input, more padding or a smaller kernel"
        )
    return out


def conv_transpose2d_output_size(size, kernel_size, stride=1, padding=0, output_padding=0):
    """Output (H, W) of a transposed convolution: (size - 1) s - 2p + k + output_padding."""
    (h, w), (kh, kw), (sh, sw), (ph, pw), (oh, ow) = map(
        _pair, (size, kernel_size, stride, padding, output_padding)
    )
    out = ((h - 1) * sh - 2 * ph + kh + oh, (w - 1) * sw - 2 * pw + kw + ow)
    if out[0] < 1 or out[1] < 1:
        raise ValueError(f"transposed convolution output would be {out}: reduce the padding")
    return out


def pad2d(x, padding):
    """Zero-pad the last two axes of (N, C, H, W) by ``(ph, pw)`` on each side."""
    ph, pw = _pair(padding)
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def crop2d(x, padding, out_hw):
    """Undo ``pad2d``: keep ``out_hw`` rows and columns after skipping the padding."""
    ph, pw = _pair(padding)
    return x[:, :, ph : ph + out_hw[0], pw : pw + out_hw[1]]


def im2col(x_padded, kernel_size, stride, out_hw):
    """All kernel windows of a padded batch as one matrix.

    Parameters
    ----------
    x_padded : (N, C, Hp, Wp)
    kernel_size, stride : int or pair
    out_hw : (Ho, Wo), the number of window positions per axis

    Returns
    -------
    cols : (N * Ho * Wo, C * kh * kw); row ``(n, i, j)`` holds the window whose
        top-left corner is ``(i * sh, j * sw)``, flattened in ``(c, u, v)`` order.
    """
    xp = get_array_module(x_padded)
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride)
    n, c = x_padded.shape[:2]
    ho, wo = out_hw
    s_n, s_c, s_h, s_w = x_padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        x_padded,
        shape=(n, ho, wo, c, kh, kw),
        strides=(s_n, s_h * sh, s_w * sw, s_c, s_h, s_w),
    )
    return windows.reshape(n * ho * wo, c * kh * kw)  # the one copy


def col2im(cols, padded_shape, kernel_size, stride, out_hw):
    """Adjoint of ``im2col``: add every window back onto a zero image.

    Parameters
    ----------
    cols : (N * Ho * Wo, C * kh * kw)
    padded_shape : (N, C, Hp, Wp)

    Returns
    -------
    (N, C, Hp, Wp), where pixel (h, w) is the sum of every column entry that
    ``im2col`` read from it.
    """
    xp = get_array_module(cols)
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride)
    n, c, hp, wp = padded_shape
    ho, wo = out_hw
    # (kh, kw, N, C, Ho, Wo): one contiguous (N, C, Ho, Wo) block per kernel tap.
    taps = xp.ascontiguousarray(cols.reshape(n, ho, wo, c, kh, kw).transpose(4, 5, 0, 3, 1, 2))
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    for u in range(kh):  # a loop over kernel taps only
        for v in range(kw):
            out[:, :, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw] += taps[u, v]
    return out


def _rows_to_nchw(rows, n, h, w):
    """(N * H * W, C) -> contiguous (N, C, H, W)."""
    xp = get_array_module(rows)
    return xp.ascontiguousarray(rows.reshape(n, h, w, -1).transpose(0, 3, 1, 2))


def _nchw_to_rows(x):
    """(N, C, H, W) -> (N * H * W, C)."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def conv2d_forward(x, W, b, stride=1, padding=0):
    """Convolution (cross-correlation), PyTorch's ``conv2d``.

    y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v]

    Parameters
    ----------
    x : (N, C_in, H, W)
    W : (C_out, C_in, kh, kw)
    b : (C_out,)

    Returns
    -------
    y : (N, C_out, Ho, Wo), Ho = floor((H + 2 ph - kh) / sh) + 1
    cache
    """
    n, c, h, w = x.shape
    c_out, _, kh, kw = W.shape
    out_hw = conv2d_output_size((h, w), (kh, kw), stride, padding)
    x_padded = pad2d(x, padding)
    cols = im2col(x_padded, (kh, kw), stride, out_hw)
    W2 = W.reshape(c_out, -1)
    y = _rows_to_nchw(cols @ W2.T + b, n, *out_hw)
    return y, (cols, W, x_padded.shape, stride, padding, (h, w), out_hw)


def conv2d_backward(dy, cache):
    """Gradients of ``conv2d_forward``.

    With dY the (N*Ho*Wo, C_out) matrix of ``dy`` and X the im2col matrix:
    dW = dY^T X;  db = sum of dY over rows;  dx = crop(col2im(dY W)).

    Returns
    -------
    dx : (N, C_in, H, W);  dW : (C_out, C_in, kh, kw);  db : (C_out,)
    """
    cols, W, padded_shape, stride, padding, in_hw, out_hw = cache
    c_out = W.shape[0]
    dY = _nchw_to_rows(dy)
    W2 = W.reshape(c_out, -1)
    dW = (dY.T @ cols).reshape(W.shape)
    db = dY.sum(axis=0)
    dx_padded = col2im(dY @ W2, padded_shape, W.shape[2:], stride, out_hw)
    return crop2d(dx_padded, padding, in_hw), dW, db


def conv_transpose2d_forward(x, W, b, stride=1, padding=0, output_padding=0):
    """Transposed convolution, PyTorch's ``conv_transpose2d``: the adjoint of
    ``conv2d`` with respect to its input, plus a bias.

    Each input pixel scatters ``x[n, c, i, j] * W[c, :, :, :]`` onto the output
    at offset ``(i*sh - ph, j*sw - pw)``; ``output_padding`` adds rows/columns at
    the bottom/right so that e.g. 7x7 -> 14x14 with k=3, s=2, p=1.

    Parameters
    ----------
    x : (N, C_in, H, W)
    W : (C_in, C_out, kh, kw)
    b : (C_out,)

    Returns
    -------
    y : (N, C_out, Ho, Wo), Ho = (H - 1) sh - 2 ph + kh + oh
    cache
    """
    n, c_in, h, w = x.shape
    _, c_out, kh, kw = W.shape
    ph, pw = _pair(padding)
    out_hw = conv_transpose2d_output_size((h, w), (kh, kw), stride, padding, output_padding)
    padded_shape = (n, c_out, out_hw[0] + 2 * ph, out_hw[1] + 2 * pw)
    X = _nchw_to_rows(x)
    cols = X @ W.reshape(c_in, -1)
    y = crop2d(col2im(cols, padded_shape, (kh, kw), stride, (h, w)), padding, out_hw)
    y = y + b.reshape(1, -1, 1, 1)
    return y, (X, W, stride, padding, (h, w))


def conv_transpose2d_backward(dy, cache):
    """Gradients of ``conv_transpose2d_forward``.

    With D = im2col(pad(dy)) (the windows that the forward scattered into) and X
    the (N*H*W, C_in) matrix of ``x``:
    dx = D W2^T;  dW = X^T D;  db = sum of dy over N, H, W.

    Returns
    -------
    dx : (N, C_in, H, W);  dW : (C_in, C_out, kh, kw);  db : (C_out,)
    """
    X, W, stride, padding, in_hw = cache
    n = dy.shape[0]
    c_in = W.shape[0]
    D = im2col(pad2d(dy, padding), W.shape[2:], stride, in_hw)
    W2 = W.reshape(c_in, -1)
    dx = _rows_to_nchw(D @ W2.T, n, *in_hw)
    dW = (X.T @ D).reshape(W.shape)
    db = dy.sum(axis=(0, 2, 3))
    return dx, dW, db
