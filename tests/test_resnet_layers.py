"""The pieces of the ResNet-18 VAE: convolutions without bias, nearest upsampling, global
average pooling and the residual connection. Finite-difference gradients over drawn shapes,
forwards against plain references, the adjoint relations, parameter names, input_grad=False,
and backward leaving its arguments unchanged."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.functional import (
    conv2d_backward,
    conv2d_forward,
    global_avg_pool2d_forward,
    residual_backward,
    residual_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)
from scratchvae.gradcheck import check_function, check_layer
from scratchvae.layers import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    GlobalAvgPool2d,
    ReLU,
    Residual,
    Sequential,
    Tanh,
    Upsample,
)

from optional import torch_or_skip
from strategies import conv_geometry, conv_transpose_geometry, small, upsample_geometry

seeds = st.integers(0, 2**16)


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape)


def _kw(backend, seed=0):
    return dict(dtype=np.float64, backend=backend, seed=seed)


# -- convolutions without bias -------------------------------------------------------
@pytest.mark.gradcheck
@pytest.mark.parametrize("kind", ["conv", "convt"])
@given(data=st.data())
def test_conv_without_bias_gradients(backend, kind, data):
    g = data.draw(conv_geometry() if kind == "conv" else conv_transpose_geometry())
    seed = data.draw(seeds)
    if kind == "conv":
        layer = Conv2d(g["c_in"], g["c_out"], g["kernel_size"], g["stride"], g["padding"],
                       bias=False, **_kw(backend, seed))
    else:
        layer = ConvTranspose2d(g["c_in"], g["c_out"], g["kernel_size"], g["stride"], g["padding"],
                                g["output_padding"], bias=False, **_kw(backend, seed))
    x = to_device(_normal(seed, (g["n"], g["c_in"], g["h"], g["w"])), backend)

    report = check_layer(layer, x, seed=seed)

    assert set(report.checks) == {"x", "W"}
    report.assert_ok(1e-6)


@pytest.mark.parametrize("kind", ["conv", "convt"])
def test_conv_without_bias_is_the_conv_with_zero_bias(backend, kind):
    make = (lambda **k: Conv2d(3, 4, 3, 2, 1, **k)) if kind == "conv" else \
        (lambda **k: ConvTranspose2d(3, 4, 3, 2, 1, 1, **k))
    with_bias, without = make(**_kw(backend, 5)), make(bias=False, **_kw(backend, 5))
    assert set(without.params) == set(without.grads) == {"W"}
    assert without.num_params() == with_bias.num_params() - 4
    assert "bias=False" in repr(without) and "bias" not in repr(with_bias)
    without.params["W"][...] = with_bias.params["W"]
    with_bias.params["b"][...] = 0
    x = to_device(_normal(1, (2, 3, 5, 5)), backend)

    y0, y1 = with_bias.forward(x), without.forward(x)
    dy = to_device(_normal(2, y0.shape), backend)
    dx0, dx1 = with_bias.backward(dy), without.backward(dy)

    np.testing.assert_array_equal(to_host(y0), to_host(y1))
    np.testing.assert_array_equal(to_host(dx0), to_host(dx1))
    np.testing.assert_array_equal(to_host(with_bias.grads["W"]), to_host(without.grads["W"]))


def test_conv2d_forward_without_bias_returns_no_bias_gradient():
    x, W = _normal(0, (2, 2, 4, 4)), _normal(1, (3, 2, 3, 3))
    y, cache = conv2d_forward(x, W, None, 1, 1)
    dx, dW, db = conv2d_backward(_normal(2, y.shape), cache)
    assert db is None and dx.shape == x.shape and dW.shape == W.shape


# -- nearest upsampling -----------------------------------------------------------
@pytest.mark.gradcheck
@given(g=upsample_geometry(), seed=seeds)
def test_upsample_gradients(backend, g, seed):
    layer = Upsample(g["scale"], **_kw(backend))
    x = to_device(_normal(seed, (g["n"], g["c"], g["h"], g["w"])), backend)

    report = check_layer(layer, x, seed=seed)

    assert set(report.checks) == {"x"}
    report.assert_ok(1e-6)


@given(g=upsample_geometry(), seed=seeds)
def test_upsample_forward_repeats_and_backward_is_the_adjoint(backend, g, seed):
    s = g["scale"]
    x = _normal(seed, (g["n"], g["c"], g["h"], g["w"]))
    y = to_host(Upsample(s, **_kw(backend)).forward(to_device(x, backend)))
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, s, axis=2), s, axis=3))

    # <up(x), dy> = <x, sumpool(dy)>, and sum pooling by hand
    dy = _normal(seed + 1, y.shape)
    out, cache = upsample_nearest_forward(to_device(x, backend), s)
    dx = to_host(upsample_nearest_backward(to_device(dy, backend), cache))
    n, c, h, w = x.shape
    pooled = np.zeros_like(x)
    for u in range(s):
        for v in range(s):
            pooled += dy[:, :, u::s, v::s]
    np.testing.assert_allclose(dx, pooled, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * dx), rtol=1e-12)


@pytest.mark.parametrize("scale, mode", [(0, "nearest"), (1.5, "nearest"), (2, "bilinear")])
def test_upsample_bad_settings(scale, mode):
    with pytest.raises(ValueError, match="Upsample: "):
        Upsample(scale, mode)


# -- global average pooling ----------------------------------------------------------
@pytest.mark.gradcheck
@given(n=small(1, 3), c=small(1, 4), h=small(1, 5), w=small(1, 5), seed=seeds)
def test_global_avg_pool_gradients(backend, n, c, h, w, seed):
    layer = GlobalAvgPool2d(**_kw(backend))
    x = to_device(_normal(seed, (n, c, h, w)), backend)

    report = check_layer(layer, x, seed=seed)

    assert set(report.checks) == {"x"}
    report.assert_ok(1e-6)


@given(n=small(1, 3), c=small(1, 4), h=small(1, 5), w=small(1, 5), seed=seeds)
def test_global_avg_pool_forward_is_the_pixel_mean(backend, n, c, h, w, seed):
    x = _normal(seed, (n, c, h, w))
    y = to_host(GlobalAvgPool2d(**_kw(backend)).forward(to_device(x, backend)))
    assert y.shape == (n, c)
    np.testing.assert_allclose(y, x.reshape(n, c, -1).sum(axis=2) / (h * w), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(to_host(global_avg_pool2d_forward(to_device(x, backend))[0]), y)


# -- the residual connection -------------------------------------------------------
@st.composite
def residual_case(draw):
    """Body conv3x3 (stride s) - BN - Tanh - conv3x3; shortcut the identity where the shape
    stays, else conv1x1 with stride s and BN. Tanh, not ReLU: no kink for the differences.
    At least two input channels: with one, a 1x1 conv's weight is one number per output channel,
    which training-mode BN divides out again, so its true gradient is ~0 (eps-sized) and the
    comparison would be of rounding noise. Likewise at least 3x3 pixels: batch statistics over
    two values normalize any pair to -1 and 1, whatever the weights."""
    n, c_in, size = draw(small(2, 3)), draw(small(2, 3)), draw(small(3, 5))
    stride = draw(small(1, 2))
    c_out = c_in if stride == 1 and draw(st.booleans()) else draw(small(1, 3))
    return dict(n=n, c_in=c_in, c_out=c_out, size=size, stride=stride,
                seed=draw(seeds), training=draw(st.booleans()))


def _residual(backend, g):
    kw = _kw(backend, g["seed"])
    body = Sequential(Conv2d(g["c_in"], g["c_out"], 3, g["stride"], 1, bias=False, **kw),
                      BatchNorm2d(g["c_out"], **kw), Tanh(**kw),
                      Conv2d(g["c_out"], g["c_out"], 3, 1, 1, **kw))
    shortcut = None
    if g["stride"] != 1 or g["c_in"] != g["c_out"]:
        shortcut = Sequential(Conv2d(g["c_in"], g["c_out"], 1, g["stride"], 0, bias=False, **kw),
                              BatchNorm2d(g["c_out"], **kw))
    return Residual(body, shortcut)


@pytest.mark.gradcheck
@given(g=residual_case())
def test_residual_gradients(backend, g):
    layer = _residual(backend, g)
    x = to_device(_normal(g["seed"], (g["n"], g["c_in"], g["size"], g["size"])), backend)

    report = check_layer(layer, x, training=g["training"], seed=g["seed"])

    expected = {"x", "body.0.W", "body.1.gamma", "body.1.beta", "body.3.W", "body.3.b"}
    if layer.shortcut is not None:
        expected |= {"shortcut.0.W", "shortcut.1.gamma", "shortcut.1.beta"}
    assert set(report.checks) == expected
    report.assert_ok(1e-6)


def test_residual_identity_adds_dy_and_the_functions_agree_with_the_layer(backend):
    kw = _kw(backend, 3)
    body = Sequential(Conv2d(2, 2, 3, 1, 1, **kw), Tanh(**kw))
    layer = Residual(body)
    x = to_device(_normal(0, (2, 2, 4, 4)), backend)
    y = layer.forward(x)
    np.testing.assert_allclose(to_host(y), to_host(body.forward(x) + x), rtol=1e-15)
    dy = to_device(_normal(1, y.shape), backend)
    dx = layer.backward(dy)
    body.forward(x)
    np.testing.assert_allclose(to_host(dx), to_host(body.backward(dy) + dy), rtol=1e-14)

    # the same with the plain functions and check_function
    W = to_device(_normal(2, (2, 2, 3, 3)), backend)

    def f_forward(a):
        return conv2d_forward(a, W, None, 1, 1)

    def f_backward(g, cache):
        return conv2d_backward(g, cache)[0]

    cache = {}

    def forward():
        out, cache["c"] = residual_forward(x, f_forward)
        return out

    report = check_function(forward, lambda g: {"x": residual_backward(g, cache["c"], f_backward)},
                            {"x": x})
    report.assert_ok(1e-6)


def test_residual_shape_mismatch_is_a_clear_error(backend):
    layer = Residual(Conv2d(2, 3, 3, 1, 1, **_kw(backend)))
    with pytest.raises(ValueError, match=r"residual: the body gives shape \(1, 3, 4, 4\) but the "
                                         r"shortcut gives \(1, 2, 4, 4\)"):
        layer.forward(to_device(np.ones((1, 2, 4, 4)), backend))
    with pytest.raises(TypeError, match="Residual: body is a list"):
        Residual([Conv2d(2, 2, 3, **_kw(backend))])


def test_residual_parameter_names_are_the_branches_own_arrays(backend):
    layer = _residual(backend, dict(n=2, c_in=2, c_out=3, size=4, stride=2, seed=0, training=True))
    assert layer.params["body.0.W"] is layer.body.layers[0].params["W"]
    assert layer.grads["shortcut.1.gamma"] is layer.shortcut.layers[1].grads["gamma"]
    assert set(layer.buffers) == {"body.1.running_mean", "body.1.running_var",
                                  "shortcut.1.running_mean", "shortcut.1.running_var"}
    assert layer.num_params() == sum(p.size for p in layer.params.values()) == \
        2 * 3 * 9 + 2 * 3 + 3 * 3 * 9 + 3 + 2 * 3 + 2 * 3
    assert set(Residual(Tanh(**_kw(backend))).params) == set()


def test_residual_without_input_gradient_reaches_both_branches(backend, monkeypatch):
    """input_grad=False: None comes back, both branches' first convolutions are told to skip
    their input gradient, and every parameter gradient equals the full backward's."""
    g = dict(n=2, c_in=2, c_out=3, size=4, stride=2, seed=1, training=True)
    layer = _residual(backend, g)
    x = to_device(_normal(0, (2, 2, 4, 4)), backend)
    y = layer.forward(x)
    dy = to_device(_normal(1, y.shape), backend)
    layer.backward(dy)
    full = {k: to_host(v).copy() for k, v in layer.grads.items()}

    calls = []
    original = Conv2d.backward

    def spy(self, d, input_grad=True):
        calls.append((self is layer.body.layers[0], self is layer.shortcut.layers[0], input_grad))
        return original(self, d, input_grad)

    monkeypatch.setattr(Conv2d, "backward", spy)
    layer.zero_grad()
    layer.forward(x)
    assert layer.backward(dy, input_grad=False) is None

    assert (True, False, False) in calls and (False, True, False) in calls
    for k, v in layer.grads.items():
        np.testing.assert_allclose(to_host(v), full[k], rtol=1e-13, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ["Upsample", "GlobalAvgPool2d", "Residual", "Conv2d-nobias",
                                  "ConvTranspose2d-nobias"])
def test_backward_leaves_arguments_unchanged(backend, name, training):
    kw = _kw(backend)
    build = {
        "Upsample": lambda: Upsample(2, **kw),
        "GlobalAvgPool2d": lambda: GlobalAvgPool2d(**kw),
        "Residual": lambda: Residual(Sequential(Conv2d(3, 3, 3, 1, 1, bias=False, **kw),
                                                BatchNorm2d(3, **kw), ReLU(**kw))),
        "Conv2d-nobias": lambda: Conv2d(3, 2, 3, 2, 1, bias=False, **kw),
        "ConvTranspose2d-nobias": lambda: ConvTranspose2d(3, 2, 3, 2, 1, 1, bias=False, **kw),
    }[name]
    layer = build()
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((2, 3, 4, 4))
    x = to_device(x_host.copy(), backend)
    y = layer.forward(x, training=training)
    dy_host = rng.standard_normal(y.shape)
    dy = to_device(dy_host.copy(), backend)
    layer.backward(dy)
    np.testing.assert_array_equal(to_host(x), x_host)
    np.testing.assert_array_equal(to_host(dy), dy_host)


@pytest.mark.parametrize("name", ["Upsample", "GlobalAvgPool2d", "Residual"])
def test_backward_before_forward_errors(backend, name):
    kw = _kw(backend)
    layer = {"Upsample": lambda: Upsample(2, **kw), "GlobalAvgPool2d": lambda: GlobalAvgPool2d(**kw),
             "Residual": lambda: Residual(Tanh(**kw))}[name]()
    with pytest.raises(ValueError, match=f"{name}: backward called before forward"):
        layer.backward(to_device(np.ones((2, 3, 4, 4)), backend))


@pytest.mark.parametrize("name", ["Upsample", "GlobalAvgPool2d"])
def test_bad_input_errors(backend, name):
    layer = Upsample(2, **_kw(backend)) if name == "Upsample" else GlobalAvgPool2d(**_kw(backend))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(N, C, H, W\), got shape \(2, 3\)"):
        layer.forward(to_device(np.ones((2, 3)), backend))


# -- against PyTorch, where it is installed ---------------------------------------
def test_new_layers_match_torch(backend):
    torch = torch_or_skip()
    x = _normal(0, (2, 3, 5, 6))
    dy_up = _normal(1, (2, 3, 10, 12))
    up = Upsample(2, **_kw(backend))
    y = to_host(up.forward(to_device(x, backend)))
    dx = to_host(up.backward(to_device(dy_up, backend)))
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.Upsample(scale_factor=2, mode="nearest")(xt)
    yt.backward(torch.from_numpy(dy_up))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-13)

    pool = GlobalAvgPool2d(**_kw(backend))
    y = to_host(pool.forward(to_device(x, backend)))
    ref = torch.nn.AdaptiveAvgPool2d(1)(torch.from_numpy(x)).flatten(1).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-13)
