"""Hypothesis strategies that draw valid layer geometries together (kept small for 2 cores)."""
from hypothesis import strategies as st

from scratchvae.functional.conv import conv2d_output_size

small = st.integers


@st.composite
def conv_geometry(draw, max_size=7):
    """Conv2d settings whose output has at least one pixel; non-square kernels and strides."""
    kh, kw = draw(small(1, 3)), draw(small(1, 3))
    sh, sw = draw(small(1, 3)), draw(small(1, 3))
    ph, pw = draw(small(0, 2)), draw(small(0, 2))
    min_h, min_w = max(1, kh - 2 * ph), max(1, kw - 2 * pw)
    h, w = draw(small(min_h, max(min_h, max_size))), draw(small(min_w, max(min_w, max_size)))
    n, c_in, c_out = draw(small(1, 3)), draw(small(1, 3)), draw(small(1, 3))
    conv2d_output_size((h, w), (kh, kw), (sh, sw), (ph, pw))  # valid by construction
    return dict(n=n, c_in=c_in, c_out=c_out, h=h, w=w, kernel_size=(kh, kw), stride=(sh, sw),
                padding=(ph, pw))


@st.composite
def conv_transpose_geometry(draw, max_size=5):
    """ConvTranspose2d settings with output_padding < stride and a non-empty output."""
    kh, kw = draw(small(1, 3)), draw(small(1, 3))
    sh, sw = draw(small(1, 3)), draw(small(1, 3))
    oh, ow = draw(small(0, sh - 1)), draw(small(0, sw - 1))
    h, w = draw(small(1, max_size)), draw(small(1, max_size))
    # padding may not eat the whole output: (h-1)s - 2p + k + op >= 1
    ph = draw(small(0, max(0, min(2, ((h - 1) * sh + kh + oh - 1) // 2))))
    pw = draw(small(0, max(0, min(2, ((w - 1) * sw + kw + ow - 1) // 2))))
    n, c_in, c_out = draw(small(1, 3)), draw(small(1, 3)), draw(small(1, 3))
    return dict(n=n, c_in=c_in, c_out=c_out, h=h, w=w, kernel_size=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), output_padding=(oh, ow))


def batch_and_features(max_n=5, max_f=4):
    """(N, F) with N >= 2 (batch statistics need two values)."""
    return st.tuples(small(2, max_n), small(1, max_f))


@st.composite
def upsample_geometry(draw, max_size=4):
    """(N, C, H, W) and an integer scale factor for nearest upsampling."""
    return dict(n=draw(small(1, 3)), c=draw(small(1, 3)), h=draw(small(1, max_size)),
                w=draw(small(1, max_size)), scale=draw(small(1, 3)))
