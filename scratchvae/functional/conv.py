"""2-D convolution (cross-correlation, as PyTorch) and its adjoint, the transposed
convolution, by im2col. Derivations: docs/layers.md#conv2d and #convtranspose2d.

Shapes are NCHW throughout. Conv2d weights are ``(C_out, C_in, kh, kw)``;
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

Memory layout (speed only; every value is the same): the outputs are NCHW-shaped
views of batch-last (C, H, W, N) memory. The matrix products are computed
transposed (``Y^T = W2 X^T``), so each one writes the next layer's layout directly;
the window copy and col2im move whole batch rows; and a chain of conv layers, ReLUs
and dropouts never transposes: ``_batch_last`` is free on such a view and copies only
an NCHW array (the output of a ``Reshape``, say). See docs/performance.md.
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


# -- the engine's layout: batch-last (C, H, W, N) memory --------------------------------
# Every spatial window then holds whole batch rows (N contiguous numbers), so the window
# copy and the tap-by-tap adds run over long contiguous stretches whatever the stride,
# and the matrix products, computed transposed (Y^T = W2 X^T), write batch-last output
# directly. Layers see NCHW-shaped views of this memory; see the module docstring.

def _batch_last(x):
    """(N, C, H, W) -> contiguous (C, H, W, N); free for the views this module returns."""
    return get_array_module(x).ascontiguousarray(x.transpose(1, 2, 3, 0))


def _as_nchw(x_bl):
    """(C, H, W, N) -> the (N, C, H, W) view of the same memory."""
    return x_bl.transpose(3, 0, 1, 2)


def _pad(x_bl, padding):
    """``pad2d`` for a batch-last (C, H, W, N) array."""
    ph, pw = _pair(padding)
    if ph == 0 and pw == 0:
        return x_bl
    xp = get_array_module(x_bl)
    c, h, w, n = x_bl.shape
    out = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=x_bl.dtype)
    out[:, ph : ph + h, pw : pw + w] = x_bl
    return out


def _crop(x_bl, padding, out_hw):
    """``crop2d`` for a batch-last (C, Hp, Wp, N) array (a view)."""
    ph, pw = _pair(padding)
    return x_bl[:, ph : ph + out_hw[0], pw : pw + out_hw[1]]


def _columns(x_padded, kernel_size, stride, out_hw):
    """im2col, transposed, for a padded batch-last (C, Hp, Wp, N) array.

    Returns X^T, contiguous (C*kh*kw, Ho*Wo*N): column ``(i, j, n)`` is the window with
    top-left corner ``(i*sh, j*sw)`` of image n, in ``(c, u, v)`` order. The window view
    costs nothing (a step along Ho moves ``sh`` rows, a step along the tap u one row);
    the reshape is the one copy.
    """
    xp = get_array_module(x_padded)
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride)
    c, n = x_padded.shape[0], x_padded.shape[3]
    ho, wo = out_hw
    s_c, s_h, s_w, s_n = x_padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        x_padded,
        shape=(c, kh, kw, ho, wo, n),
        strides=(s_c, s_h, s_w, s_h * sh, s_w * sw, s_n),
    )
    return windows.reshape(c * kh * kw, ho * wo * n)


def _add_columns(cols_t, padded_shape, kernel_size, stride, out_hw):
    """col2im, the adjoint of ``_columns``: (C*kh*kw, Ho*Wo*N) -> (C, Hp, Wp, N), adding
    each window back where it was read, one kernel tap at a time (one strided slice each)."""
    xp = get_array_module(cols_t)
    (kh, kw), (sh, sw) = _pair(kernel_size), _pair(stride)
    c, n = padded_shape[0], padded_shape[3]
    ho, wo = out_hw
    taps = cols_t.reshape(c, kh, kw, ho, wo, n)
    out = xp.zeros(padded_shape, dtype=cols_t.dtype)
    for u in range(kh):  # a loop over kernel taps only
        for v in range(kw):
            out[:, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw] += taps[:, u, v]
    return out


def _tap_positions(u, stride, padding, positions, size):
    """The window positions ``lo..hi`` whose tap ``u`` lands inside an output of ``size``
    (cropped coordinates ``u + stride * i - padding``), and the first landing row; ``None`` if none."""
    lo = max(0, -((u - padding) // stride))  # ceil((padding - u) / stride)
    hi = min(positions - 1, (size - 1 + padding - u) // stride)
    return None if lo > hi else (lo, hi, u + stride * lo - padding)


def _add_columns_cropped(cols_t, out_shape, kernel_size, stride, padding, grid_hw):
    """``_crop(_add_columns(...))`` without the padded canvas, in its sub-pixel form.

    The output pixels split into stride x stride phases (rows ``a, a + sh, ...``, columns
    ``b, b + sw, ...``), and every kernel tap lands on one phase only. The first tap to reach a
    phase is copied there (plus zeros on the strips it does not reach), the later ones are
    added: each output pixel is written once by its first tap instead of being zeroed first,
    the padding is never computed, and the result is contiguous. The taps are taken in the
    same order as ``_add_columns`` and 0 + t = t, so every value is bit-identical to it.

    ``cols_t`` is (C*kh*kw, Gh*Gw*N) for a (Gh, Gw) grid of window positions;
    ``out_shape`` is the cropped (C, Ho, Wo, N).
    """
    xp = get_array_module(cols_t)
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel_size), _pair(stride), _pair(padding)
    c, ho, wo, n = out_shape
    gh, gw = grid_hw
    taps = cols_t.reshape(c, kh, kw, gh, gw, n)
    out = xp.empty(out_shape, dtype=cols_t.dtype)
    written = set()
    for u in range(kh):  # a loop over kernel taps only
        rows = _tap_positions(u, sh, ph, gh, ho)
        if rows is None:
            continue
        ilo, ihi, r0 = rows
        for v in range(kw):
            cols = _tap_positions(v, sw, pw, gw, wo)
            if cols is None:
                continue
            jlo, jhi, c0 = cols
            src = taps[:, u, v, ilo : ihi + 1, jlo : jhi + 1]
            dst = out[:, r0 : r0 + sh * (ihi - ilo) + 1 : sh, c0 : c0 + sw * (jhi - jlo) + 1 : sw]
            phase = (r0 % sh, c0 % sw)
            if phase in written:
                dst += src
                continue
            written.add(phase)
            dst[...] = src
            region = out[:, phase[0] :: sh, phase[1] :: sw]
            i0, j0 = r0 // sh, c0 // sw  # where the tap starts inside its phase
            i1, j1 = i0 + ihi - ilo + 1, j0 + jhi - jlo + 1
            region[:, :i0] = 0
            region[:, i1:] = 0
            region[:, i0:i1, :j0] = 0
            region[:, i0:i1, j1:] = 0
    for a in range(min(sh, ho)):  # phases that no tap reaches (stride larger than the kernel)
        for b in range(min(sw, wo)):
            if (a, b) not in written:
                out[:, a::sh, b::sw] = 0
    return out


# -- the textbook forms, in NCHW (lessons 05 and 06 build them step by step) -----------

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
        The same numbers as the engine's ``_columns``, rows reordered.
    """
    n = x_padded.shape[0]
    ho, wo = out_hw
    cols_t = _columns(_batch_last(x_padded), kernel_size, stride, out_hw)
    return cols_t.reshape(-1, ho, wo, n).transpose(3, 1, 2, 0).reshape(n * ho * wo, -1)


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
    n, c, hp, wp = padded_shape
    ho, wo = out_hw
    cols_t = cols.reshape(n, ho, wo, -1).transpose(3, 1, 2, 0).reshape(-1, ho * wo * n)
    return _as_nchw(_add_columns(cols_t, (c, hp, wp, n), kernel_size, stride, out_hw))


def conv2d_forward(x, W, b, stride=1, padding=0):
    """Convolution (cross-correlation), PyTorch's ``conv2d``.

    y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] * xpad[n, c, i*sh + u, j*sw + v]

    In matrices: Y = X W2^T + b with X = im2col(xpad), W2 = W.reshape(C_out, -1);
    computed as its transpose Y^T = W2 X^T, which lands channel-major.

    Parameters
    ----------
    x : (N, C_in, H, W)
    W : (C_out, C_in, kh, kw)
    b : (C_out,), or None for a convolution without bias (``Conv2d(..., bias=False)``)

    Returns
    -------
    y : (N, C_out, Ho, Wo), Ho = floor((H + 2 ph - kh) / sh) + 1
    cache
    """
    n, c, h, w = x.shape
    c_out, _, kh, kw = W.shape
    out_hw = conv2d_output_size((h, w), (kh, kw), stride, padding)
    x_padded = _pad(_batch_last(x), padding)
    cols_t = _columns(x_padded, (kh, kw), stride, out_hw)
    y_t = W.reshape(c_out, -1) @ cols_t
    if b is not None:
        y_t += b[:, None]
    y = _as_nchw(y_t.reshape(c_out, *out_hw, n))
    return y, (cols_t, W, x_padded.shape, stride, padding, (h, w), out_hw, b is not None)


def conv2d_backward(dy, cache, input_grad=True):
    """Gradients of ``conv2d_forward``.

    With dY the (N*Ho*Wo, C_out) matrix of ``dy`` and X the im2col matrix:
    dW = dY^T X;  db = sum of dY over rows;  dx = crop(col2im(dY W2)).

    ``input_grad=False`` skips dx (returned as None), for a network's first layer.

    Returns
    -------
    dx : (N, C_in, H, W);  dW : (C_out, C_in, kh, kw);  db : (C_out,), None without bias
    """
    cols_t, W, padded_shape, stride, padding, in_hw, out_hw, has_bias = cache
    c_out = W.shape[0]
    dY_t = _batch_last(dy).reshape(c_out, -1)
    W2 = W.reshape(c_out, -1)
    dW = (dY_t @ cols_t.T).reshape(W.shape)
    db = dY_t.sum(axis=1) if has_bias else None
    if not input_grad:
        return None, dW, db
    dx = _add_columns_cropped(W2.T @ dY_t, (padded_shape[0], *in_hw, padded_shape[3]),
                              W.shape[2:], stride, padding, out_hw)
    return _as_nchw(dx), dW, db


def conv_transpose2d_forward(x, W, b, stride=1, padding=0, output_padding=0):
    """Transposed convolution, PyTorch's ``conv_transpose2d``: the adjoint of
    ``conv2d`` with respect to its input, plus a bias.

    Each input pixel scatters ``x[n, c, i, j] * W[c, :, :, :]`` onto the output
    at offset ``(i*sh - ph, j*sw - pw)``; ``output_padding`` adds rows/columns at
    the bottom/right so that e.g. 7x7 -> 14x14 with k=3, s=2, p=1.

    In matrices: y = crop(col2im(X W2)) + b with X the (N*H*W, C_in) matrix of x and
    W2 = W.reshape(C_in, -1); computed as col2im of (X W2)^T = W2^T X^T.

    Parameters
    ----------
    x : (N, C_in, H, W)
    W : (C_in, C_out, kh, kw)
    b : (C_out,), or None without bias

    Returns
    -------
    y : (N, C_out, Ho, Wo), Ho = (H - 1) sh - 2 ph + kh + oh
    cache
    """
    n, c_in, h, w = x.shape
    _, c_out, kh, kw = W.shape
    out_hw = conv_transpose2d_output_size((h, w), (kh, kw), stride, padding, output_padding)
    X_t = _batch_last(x).reshape(c_in, -1)
    y = _add_columns_cropped(W.reshape(c_in, -1).T @ X_t, (c_out, *out_hw, n), (kh, kw), stride,
                             padding, (h, w))
    if b is not None:
        y += b[:, None, None, None]
    y = _as_nchw(y)
    return y, (X_t, W, stride, padding, (h, w), b is not None)


def conv_transpose2d_backward(dy, cache):
    """Gradients of ``conv_transpose2d_forward``.

    With D = im2col(pad(dy)) (the windows that the forward scattered into) and X
    the (N*H*W, C_in) matrix of ``x``:
    dx = D W2^T;  dW = X^T D;  db = sum of dy over N, H, W.

    Returns
    -------
    dx : (N, C_in, H, W);  dW : (C_in, C_out, kh, kw);  db : (C_out,), None without bias
    """
    X_t, W, stride, padding, in_hw, has_bias = cache
    c_in = W.shape[0]
    dy_bl = _batch_last(dy)
    n = dy_bl.shape[3]
    D_t = _columns(_pad(dy_bl, padding), W.shape[2:], stride, in_hw)
    W2 = W.reshape(c_in, -1)
    dx = _as_nchw((W2 @ D_t).reshape(c_in, *in_hw, n))
    dW = (X_t @ D_t.T).reshape(W.shape)
    db = dy_bl.sum(axis=(1, 2, 3)) if has_bias else None
    return dx, dW, db
