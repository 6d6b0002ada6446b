"""Conv2d and ConvTranspose2d: gradients by finite differences, the forward
against slow loop references, the adjoint relation between the two, output
sizes, argument safety, error messages, parameters and init, and float32."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.functional import (
    conv2d_forward,
    conv2d_output_size,
    conv_transpose2d_forward,
    conv_transpose2d_output_size,
)
from scratchvae.gradcheck import check_layer
from scratchvae.layers import Conv2d, ConvTranspose2d

from optional import torch_or_skip
from strategies import conv_geometry, conv_transpose_geometry

seeds = st.integers(0, 2**16)


# -- helpers -------------------------------------------------------------------
def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def _conv(backend, g, seed=0, dtype=np.float64):
    return Conv2d(g["c_in"], g["c_out"], g["kernel_size"], g["stride"], g["padding"],
                  dtype=dtype, seed=seed, backend=backend)


def _conv_t(backend, g, seed=0, dtype=np.float64):
    return ConvTranspose2d(g["c_in"], g["c_out"], g["kernel_size"], g["stride"], g["padding"],
                           g["output_padding"], dtype=dtype, seed=seed, backend=backend)


def _host_params(layer):
    return to_host(layer.params["W"]).copy(), to_host(layer.params["b"]).copy()


def _conv2d_loop(x, W, b, stride, padding):
    """y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] xpad[n, c, i*sh + u, j*sw + v]."""
    (sh, sw), (ph, pw) = stride, padding
    n_batch, _, h, w = x.shape
    c_out, _, kh, kw = W.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n_batch, c_out, ho, wo))
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(ho):
                for j in range(wo):
                    window = xpad[n, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    y[n, o, i, j] = b[o] + np.sum(W[o] * window)
    return y


def _conv_transpose2d_loop(x, W, b, stride, padding, output_padding):
    """Scatter x[n, c, i, j] * W[c, o, u, v] onto y[n, o, i*sh + u - ph, j*sw + v - pw]."""
    (sh, sw), (ph, pw), (oh, ow) = stride, padding, output_padding
    n_batch, c_in, h, w = x.shape
    _, c_out, kh, kw = W.shape
    ho, wo = (h - 1) * sh - 2 * ph + kh + oh, (w - 1) * sw - 2 * pw + kw + ow
    y = np.zeros((n_batch, c_out, ho, wo))
    for n in range(n_batch):
        for c in range(c_in):
            for i in range(h):
                for j in range(w):
                    for u in range(kh):
                        for v in range(kw):
                            r, s = i * sh + u - ph, j * sw + v - pw
                            if 0 <= r < ho and 0 <= s < wo:
                                y[n, :, r, s] += x[n, c, i, j] * W[c, :, u, v]
    return y + b[None, :, None, None]


# -- gradients -----------------------------------------------------------------
@pytest.mark.gradcheck
@given(g=conv_geometry(), seed=seeds)
def test_conv2d_gradients(backend, g, seed):
    layer = _conv(backend, g, seed)
    x = to_device(_normal(seed, (g["n"], g["c_in"], g["h"], g["w"])), backend)

    report = check_layer(layer, x, seed=seed)

    assert set(report.checks) == {"x", "W", "b"}
    report.assert_ok(1e-6)


@pytest.mark.gradcheck
@given(g=conv_transpose_geometry(), seed=seeds)
def test_conv_transpose2d_gradients(backend, g, seed):
    layer = _conv_t(backend, g, seed)
    x = to_device(_normal(seed, (g["n"], g["c_in"], g["h"], g["w"])), backend)

    report = check_layer(layer, x, seed=seed)

    assert set(report.checks) == {"x", "W", "b"}
    report.assert_ok(1e-6)


# -- forward against loop references -------------------------------------------
@given(g=conv_geometry(), seed=seeds)
def test_conv2d_forward_matches_loop(backend, g, seed):
    layer = _conv(backend, g, seed)
    x = _normal(seed, (g["n"], g["c_in"], g["h"], g["w"]))

    y = to_host(layer.forward(to_device(x, backend)))

    expected = _conv2d_loop(x, *_host_params(layer), g["stride"], g["padding"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@given(g=conv_transpose_geometry(), seed=seeds)
def test_conv_transpose2d_forward_matches_loop(backend, g, seed):
    layer = _conv_t(backend, g, seed)
    x = _normal(seed, (g["n"], g["c_in"], g["h"], g["w"]))

    y = to_host(layer.forward(to_device(x, backend)))

    expected = _conv_transpose2d_loop(x, *_host_params(layer), g["stride"], g["padding"],
                                      g["output_padding"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# -- the adjoint relation ------------------------------------------------------
@given(g=conv_geometry(), seed=seeds)
def test_conv_transpose_is_adjoint_of_conv(backend, g, seed):
    """<conv2d(x; W), y> == <conv_transpose2d(y; W), x> with one W of shape (C_out, C_in, kh, kw)."""
    (kh, kw), (sh, sw), (ph, pw) = g["kernel_size"], g["stride"], g["padding"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["n"], g["c_in"], g["h"], g["w"]))
    W = rng.standard_normal((g["c_out"], g["c_in"], kh, kw))
    ho, wo = (g["h"] + 2 * ph - kh) // sh + 1, (g["w"] + 2 * pw - kw) // sw + 1
    y = rng.standard_normal((g["n"], g["c_out"], ho, wo))
    # the rows/columns of x that conv's last window does not reach; in [0, s) since
    # H + 2p - k = (Ho - 1) s + ((H + 2p - k) mod s)
    output_padding = (g["h"] - ((ho - 1) * sh - 2 * ph + kh), g["w"] - ((wo - 1) * sw - 2 * pw + kw))
    assert 0 <= output_padding[0] < sh and 0 <= output_padding[1] < sw

    dev = lambda a: to_device(a, backend)  # noqa: E731
    conv_x, _ = conv2d_forward(dev(x), dev(W), dev(np.zeros(g["c_out"])), (sh, sw), (ph, pw))
    convt_y, _ = conv_transpose2d_forward(dev(y), dev(W), dev(np.zeros(g["c_in"])), (sh, sw),
                                          (ph, pw), output_padding)
    conv_x, convt_y = to_host(conv_x), to_host(convt_y)

    assert conv_x.shape == y.shape and convt_y.shape == x.shape
    lhs, rhs = np.vdot(conv_x, y), np.vdot(convt_y, x)
    scale = np.abs(conv_x * y).sum() + np.abs(convt_y * x).sum()
    assert abs(lhs - rhs) <= 1e-12 * scale, (lhs, rhs)


# -- output sizes --------------------------------------------------------------
# (layer, in_hw, kernel, stride, padding, output_padding, out_hw), out_hw by hand:
#   Conv2d:          floor((H + 2p - k) / s) + 1
#   ConvTranspose2d: (H - 1) s - 2p + k + output_padding
OUTPUT_SIZES = [
    ("conv", (28, 28), 3, 2, 1, None, (14, 14)),  # floor(27/2) + 1 = 14
    ("conv", (28, 28), 4, 2, 1, None, (14, 14)),  # floor(26/2) + 1 = 14
    ("conv", (28, 28), 5, 1, 0, None, (24, 24)),  # 23 + 1 = 24
    ("conv", (10, 10), 3, 3, 0, None, (3, 3)),    # floor(7/3) + 1 = 3
    ("conv", (9, 5), (3, 1), (2, 1), (0, 2), None, (4, 9)),  # floor(6/2)+1 = 4; 8+1 = 9
    ("convt", (7, 7), 3, 2, 1, 1, (14, 14)),      # 12 - 2 + 3 + 1 = 14
    ("convt", (7, 7), 3, 2, 1, 0, (13, 13)),      # 12 - 2 + 3 + 0 = 13
    ("convt", (7, 7), 4, 2, 1, 0, (14, 14)),      # 12 - 2 + 4 = 14
    ("convt", (14, 14), 3, 2, 1, 1, (28, 28)),    # 26 - 2 + 3 + 1 = 28
    ("convt", (4, 5), (2, 3), (3, 1), (0, 1), (2, 0), (13, 5)),  # 9+2+2 = 13; 4-2+3 = 5
]


@pytest.mark.parametrize("kind, in_hw, k, s, p, op, out_hw", OUTPUT_SIZES)
def test_conv_output_sizes(backend, kind, in_hw, k, s, p, op, out_hw):
    if kind == "conv":
        layer = Conv2d(2, 3, k, s, p, dtype=np.float64, seed=0, backend=backend)
        assert conv2d_output_size(in_hw, k, s, p) == out_hw
    else:
        layer = ConvTranspose2d(2, 3, k, s, p, op, dtype=np.float64, seed=0, backend=backend)
        assert conv_transpose2d_output_size(in_hw, k, s, p, op) == out_hw
    x = to_device(_normal(0, (2, 2, *in_hw)), backend)

    assert layer.forward(x).shape == (2, 3, *out_hw)


# -- arguments are not modified ------------------------------------------------
@pytest.mark.parametrize("kind", ["conv", "convt"])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv_backward_leaves_arguments_unchanged(backend, kind, padding):
    g = dict(c_in=2, c_out=3, kernel_size=3, stride=2, padding=padding, output_padding=1)
    layer = (_conv if kind == "conv" else _conv_t)(backend, g, seed=1)
    x_host = _normal(1, (2, 2, 7, 6))
    x = to_device(x_host, backend)
    x_copy = x_host.copy()

    y = layer.forward(x)
    dy_host = _normal(2, y.shape)
    dy = to_device(dy_host, backend)
    dy_copy = dy_host.copy()
    layer.backward(dy)

    np.testing.assert_array_equal(to_host(x), x_copy)
    np.testing.assert_array_equal(to_host(dy), dy_copy)


# -- errors --------------------------------------------------------------------
def _message(fn):
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


@pytest.mark.parametrize("kind, name", [("conv", "Conv2d"), ("convt", "ConvTranspose2d")])
def test_conv_bad_input_errors(backend, kind, name):
    g = dict(c_in=3, c_out=2, kernel_size=3, stride=1, padding=0, output_padding=0)
    make = _conv if kind == "conv" else _conv_t
    layer = make(backend, g)
    dev = lambda a: to_device(a, backend)  # noqa: E731

    msg = _message(lambda: layer.forward(dev(_normal(0, (2, 3, 8)))))  # wrong rank
    assert name in msg and "(N, C, H, W)" in msg and "(2, 3, 8)" in msg

    msg = _message(lambda: layer.forward(dev(_normal(0, (2, 4, 8, 8)))))  # wrong channels
    assert name in msg and "3 channels" in msg and "(2, 4, 8, 8)" in msg

    msg = _message(lambda: layer.forward(dev(np.ones((2, 3, 8, 8), dtype=np.int64))))
    assert name in msg and "int64" in msg and "float" in msg and "(2, 3, 8, 8)" in msg

    msg = _message(lambda: layer.backward(dev(_normal(0, (2, 2, 6, 6)))))
    assert name in msg and "before forward" in msg

    out_shape = (2, 2, 6, 6) if kind == "conv" else (2, 2, 10, 10)  # 8-3+1; 7+3
    assert layer.forward(dev(_normal(0, (2, 3, 8, 8)))).shape == out_shape
    msg = _message(lambda: layer.backward(dev(_normal(0, (2, 2, 7, 6)))))  # wrong dy shape
    assert name in msg and str(out_shape) in msg and "(2, 2, 7, 6)" in msg

    if kind == "conv":  # input smaller than the 5x5 kernel
        small = Conv2d(3, 2, 5, dtype=np.float64, seed=0, backend=backend)
        msg = _message(lambda: small.forward(dev(_normal(0, (1, 3, 4, 6)))))
        assert name in msg and "(1, 3, 4, 6)" in msg and "5x5" in msg
    else:  # any input is large enough, but padding can eat the output: 0*1 - 2*2 + 1 = -3
        small = ConvTranspose2d(3, 2, 1, 1, 2, dtype=np.float64, seed=0, backend=backend)
        msg = _message(lambda: small.forward(dev(_normal(0, (1, 3, 1, 1)))))
        assert name in msg and "(1, 3, 1, 1)" in msg and "(-3, -3)" in msg

    # constructor: kernel, stride and padding out of range; output_padding not in [0, stride)
    layer_cls = Conv2d if kind == "conv" else ConvTranspose2d
    for kwargs in (dict(kernel_size=0), dict(kernel_size=3, stride=0), dict(kernel_size=3, padding=-1)):
        assert name in _message(lambda: layer_cls(3, 2, dtype=np.float64, backend=backend, **kwargs))
    if kind == "convt":
        for stride, op, shown in ((2, 2, "(2, 2)"), (2, 3, "(3, 3)"), ((1, 2), (1, 0), "(1, 0)"),
                                  (2, -1, "(-1, -1)")):
            msg = _message(lambda: ConvTranspose2d(3, 2, 3, stride, 0, op, dtype=np.float64,
                                                   backend=backend))
            assert name in msg and "output_padding" in msg and shown in msg


# -- parameters and init -------------------------------------------------------
@pytest.mark.parametrize("kind", ["conv", "convt"])
def test_conv_params_layout_and_init(backend, kind):
    c_in, c_out, (kh, kw) = 3, 5, (3, 2)  # non-square so a kh/kw swap shows
    g = dict(c_in=c_in, c_out=c_out, kernel_size=(kh, kw), stride=1, padding=1, output_padding=0)
    make = _conv if kind == "conv" else _conv_t
    layer, twin, other = make(backend, g, seed=7), make(backend, g, seed=7), make(backend, g, seed=8)
    W_shape = (c_out, c_in, kh, kw) if kind == "conv" else (c_in, c_out, kh, kw)
    fan_in = c_in * kh * kw if kind == "conv" else c_out * kh * kw  # 18 and 30

    for d in (layer.params, layer.grads):
        assert set(d) == {"W", "b"}
        assert d["W"].shape == W_shape and d["b"].shape == (c_out,)
        assert d["W"].dtype == np.float64 and d["b"].dtype == np.float64

    W, b = _host_params(layer)
    bound = 1.0 / math.sqrt(fan_in)
    assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(W).max() > 0.9 * bound  # 90 draws fill U(-bound, bound), not a narrower one
    for name in ("W", "b"):
        np.testing.assert_array_equal(to_host(twin.params[name]), to_host(layer.params[name]))
    assert not np.array_equal(to_host(other.params["W"]), W)

    # writing into the parameter arrays changes the next forward
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, c_in, 4, 5))
    W_new, b_new = rng.standard_normal(W_shape), rng.standard_normal(c_out)
    layer.params["W"][...] = to_device(W_new, backend)
    layer.params["b"][...] = to_device(b_new, backend)
    y = to_host(layer.forward(to_device(x, backend)))
    if kind == "conv":
        expected = _conv2d_loop(x, W_new, b_new, (1, 1), (1, 1))
    else:
        expected = _conv_transpose2d_loop(x, W_new, b_new, (1, 1), (1, 1), (0, 0))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


# -- float32 -------------------------------------------------------------------
def _max_rel_diff(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("kind", ["conv", "convt"])
def test_conv_float32_close_to_float64(backend, kind):
    """The float32 path agrees with float64 on the same (float32-representable) numbers."""
    g = dict(c_in=4, c_out=3, kernel_size=3, stride=2, padding=1, output_padding=1)
    make = _conv if kind == "conv" else _conv_t
    layer32 = make(backend, g, seed=5, dtype=np.float32)
    layer64 = make(backend, g, seed=0, dtype=np.float64)
    for name in ("W", "b"):
        layer64.params[name][...] = layer32.params[name].astype(np.float64)
    x32 = _normal(4, (2, 4, 9, 9)).astype(np.float32)

    y32 = layer32.forward(to_device(x32, backend))
    y64 = layer64.forward(to_device(x32.astype(np.float64), backend))
    dy = _normal(6, y64.shape)
    dx32 = layer32.backward(to_device(dy.astype(np.float32), backend))
    dx64 = layer64.backward(to_device(dy.astype(np.float32).astype(np.float64), backend))

    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    assert _max_rel_diff(to_host(y32), to_host(y64)) < 1e-5
    assert _max_rel_diff(to_host(dx32), to_host(dx64)) < 1e-5
    for name in ("W", "b"):
        assert layer32.grads[name].dtype == np.float32
        assert _max_rel_diff(to_host(layer32.grads[name]), to_host(layer64.grads[name])) < 1e-5


# -- optional: PyTorch as an outside reference --------------------------------
@pytest.mark.parametrize("kind", ["conv", "convt"])
@given(data=st.data())
def test_conv_matches_torch(backend, kind, data):
    torch = torch_or_skip()
    g = data.draw(conv_geometry() if kind == "conv" else conv_transpose_geometry())
    seed = data.draw(seeds)
    if kind == "conv":
        layer = _conv(backend, g, seed)
        ref = torch.nn.Conv2d(g["c_in"], g["c_out"], g["kernel_size"], g["stride"], g["padding"],
                              dtype=torch.float64)
    else:
        layer = _conv_t(backend, g, seed)
        ref = torch.nn.ConvTranspose2d(g["c_in"], g["c_out"], g["kernel_size"], g["stride"],
                                       g["padding"], g["output_padding"], dtype=torch.float64)
    W, b = _host_params(layer)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(W))
        ref.bias.copy_(torch.from_numpy(b))
    x = _normal(seed, (g["n"], g["c_in"], g["h"], g["w"]))

    y = to_host(layer.forward(to_device(x, backend)))
    dy = _normal(seed + 1, y.shape)
    dx = to_host(layer.backward(to_device(dy, backend)))
    x_t = torch.from_numpy(x).requires_grad_(True)
    y_t = ref(x_t)
    y_t.backward(torch.from_numpy(dy))

    close = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, y_t.detach().numpy(), **close)
    np.testing.assert_allclose(dx, x_t.grad.numpy(), **close)
    np.testing.assert_allclose(to_host(layer.grads["W"]), ref.weight.grad.numpy(), **close)
    np.testing.assert_allclose(to_host(layer.grads["b"]), ref.bias.grad.numpy(), **close)


# -- the textbook im2col/col2im and the engine's batch-last memory ------------------
@given(g=conv_geometry(), seed=seeds)
def test_im2col_matches_tap_loop_and_col2im_is_its_adjoint(g, seed):
    from scratchvae.functional.conv import col2im, im2col, pad2d

    n, c = g["n"], g["c_in"]
    (kh, kw), (sh, sw) = g["kernel_size"], g["stride"]
    xpad = pad2d(_normal(seed, (n, c, g["h"], g["w"])), g["padding"])
    ho, wo = conv2d_output_size((g["h"], g["w"]), (kh, kw), (sh, sw), g["padding"])
    expected = np.empty((n, ho, wo, c, kh, kw))
    for i in range(ho):
        for j in range(wo):
            expected[:, i, j] = xpad[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
    cols = im2col(xpad, (kh, kw), (sh, sw), (ho, wo))
    np.testing.assert_array_equal(cols, expected.reshape(n * ho * wo, c * kh * kw))
    C = _normal(seed + 1, cols.shape)
    back = col2im(C, xpad.shape, (kh, kw), (sh, sw), (ho, wo))
    assert back.shape == xpad.shape
    np.testing.assert_allclose(np.sum(cols * C), np.sum(xpad * back), rtol=1e-12)


def test_conv_results_do_not_depend_on_memory_layout(backend):
    """A plain NCHW input and the same numbers as a batch-last view give identical outputs
    and gradients, and the outputs are batch-last (possibly cropped views), so chained conv
    layers never transpose."""
    rng = np.random.default_rng(3)
    x_host = rng.standard_normal((5, 3, 9, 8))
    conv = Conv2d(3, 4, 3, stride=2, padding=1, dtype=np.float64, seed=1, backend=backend)
    conv_t = ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, dtype=np.float64,
                             seed=2, backend=backend)
    results = []
    for x in (x_host, np.ascontiguousarray(x_host.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)):
        h = conv.forward(to_device(x, backend))
        y = conv_t.forward(h)
        dy = to_device(np.cos(np.arange(y.size)).reshape(y.shape), backend)
        dx = conv.backward(conv_t.backward(dy))
        results.append([to_host(a) for a in (y, dx, conv.grads["W"], conv_t.grads["W"])])
        for out in (h, y, dx):  # (C, H, W, N) memory: the batch innermost, then the width
            assert out.strides[0] == out.itemsize and out.strides[3] == out.shape[0] * out.itemsize
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@given(g=conv_geometry(), seed=seeds)
def test_sub_pixel_col2im_is_bit_identical_to_crop_of_col2im(g, seed):
    """The engine's per-phase col2im (no padded canvas, each pixel written first by its first
    tap) against the plain one, cropped: the same taps in the same order, so equal bit for bit,
    over conv geometries (strides larger than the kernel included: pixels no tap reaches)."""
    from scratchvae.functional.conv import _add_columns, _add_columns_cropped, _crop

    n, c, (kh, kw), (ph, pw) = g["n"], g["c_in"], g["kernel_size"], g["padding"]
    h, w = g["h"], g["w"]
    grid = conv2d_output_size((h, w), (kh, kw), g["stride"], g["padding"])
    cols = _normal(seed, (c * kh * kw, grid[0] * grid[1] * n)).astype(np.float32)
    plain = _add_columns(cols, (c, h + 2 * ph, w + 2 * pw, n), (kh, kw), g["stride"], grid)
    cropped = _add_columns_cropped(cols, (c, h, w, n), (kh, kw), g["stride"], g["padding"], grid)
    np.testing.assert_array_equal(cropped, _crop(plain, g["padding"], (h, w)))


@pytest.mark.parametrize("kind", ["conv", "convt"])
def test_sequential_without_input_gradient_gives_the_same_parameter_gradients(backend, kind):
    """A network's first layer may skip dL/dx (the data needs none): Sequential.backward with
    input_grad=False returns None and leaves every parameter gradient as the full backward."""
    from scratchvae.layers import Flatten, ReLU, Sequential

    first = (Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64, seed=1, backend=backend)
             if kind == "conv" else
             ConvTranspose2d(2, 3, 3, stride=2, padding=1, dtype=np.float64, seed=1, backend=backend))
    net = Sequential(first, ReLU(dtype=np.float64, backend=backend), Flatten(backend=backend))
    x = to_device(_normal(0, (4, 2, 7, 6)), backend)
    y = net.forward(x)
    dy = to_device(_normal(1, y.shape), backend)
    dx = net.backward(dy)
    assert dx.shape == x.shape
    full = {k: to_host(g).copy() for k, g in net.grads.items()}
    for g in net.grads.values():
        g[...] = 0
    net.forward(x)
    assert net.backward(dy, input_grad=False) is None
    assert first.skips_input_grad == (kind == "conv")
    for k, g in net.grads.items():
        np.testing.assert_array_equal(to_host(g), full[k])
