"""Flatten, Reshape and Sequential: gradients, dotted parameter names, and errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.gradcheck import check_layer, frozen_patterns
from scratchvae.layers import (
    BatchNorm1d,
    Dense,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    Sequential,
    Sigmoid,
    Tanh,
)

dims = st.integers(1, 4)


def _f64(backend, seed=None):
    return dict(dtype=np.float64, backend=backend, seed=seed)


@pytest.mark.gradcheck
@given(n=dims, c=dims, h=dims, w=dims, seed=st.integers(0, 2**16))
def test_flatten_reshape_gradients(backend, n, c, h, w, seed):
    x_host = np.random.default_rng(seed).standard_normal((n, c, h, w))
    x = to_device(x_host, backend)

    flatten = Flatten(**_f64(backend))
    np.testing.assert_array_equal(to_host(flatten.forward(x)), x_host.reshape(n, c * h * w))
    check_layer(flatten, x, seed=seed).assert_ok(1e-6)

    reshape = Reshape((c * h, w), **_f64(backend))
    np.testing.assert_array_equal(to_host(reshape.forward(x)), x_host.reshape(n, c * h, w))
    check_layer(reshape, x, seed=seed).assert_ok(1e-6)


def _mlp_tanh_sigmoid(backend):
    return Sequential(
        Dense(4, 6, **_f64(backend, seed=1)), Tanh(**_f64(backend)),
        Dense(6, 3, **_f64(backend, seed=2)), Sigmoid(**_f64(backend)),
    )


def _mlp_leaky_batchnorm(backend):
    # LeakyReLU sits between Dense and BatchNorm1d: right before a training-mode batch
    # norm a bias has an exactly zero gradient (the batch mean cancels it), and a
    # relative error of zero against rounding noise is meaningless.
    model = Sequential(
        Dense(4, 6, **_f64(backend, seed=3)), LeakyReLU(0.2, **_f64(backend)), BatchNorm1d(6, **_f64(backend)),
        Dense(6, 3, **_f64(backend, seed=4)),
    )
    rng = np.random.default_rng(0)
    model.params["2.gamma"][...] = to_device(rng.uniform(0.5, 2.0, 6), backend)
    model.params["2.beta"][...] = to_device(rng.standard_normal(6), backend)
    return model


@pytest.mark.gradcheck
@pytest.mark.parametrize("build", [_mlp_tanh_sigmoid, _mlp_leaky_batchnorm])
def test_sequential_gradients(backend, build):
    model = build(backend)
    x = to_device(np.random.default_rng(1).standard_normal((5, 4)), backend)

    # LeakyReLU's pre-activations are not under the test's control, so its on/off
    # pattern is frozen at the checked point (same gradient, no kink in reach).
    with frozen_patterns(model):
        report = check_layer(model, x, training=True)

    assert set(report.checks) == {"x"} | set(model.params)
    assert len(model.params) == (4 if build is _mlp_tanh_sigmoid else 6)
    report.assert_ok(1e-6)


def test_sequential_dotted_names(backend):
    model = Sequential(
        Dense(3, 4, **_f64(backend, seed=0)), ReLU(**_f64(backend)),
        Dense(4, 2, **_f64(backend, seed=1)), BatchNorm1d(2, **_f64(backend)),
    )
    assert len(model) == 4 and list(model) == model.layers and isinstance(model[1], ReLU)
    expected = {"0.W": (3, 4), "0.b": (4,), "2.W": (4, 2), "2.b": (2,), "3.gamma": (2,), "3.beta": (2,)}

    assert {k: v.shape for k, v in model.params.items()} == expected
    assert {k: v.shape for k, v in model.grads.items()} == expected
    assert set(model.buffers) == {"3.running_mean", "3.running_var"}
    for dotted, array in model.params.items():
        index, name = dotted.split(".")
        assert array is model[int(index)].params[name]
        assert model.grads[dotted] is model[int(index)].grads[name]
    for name in ("running_mean", "running_var"):
        assert model.buffers[f"3.{name}"] is model[3].buffers[name]

    # backward fills the gradient arrays in place, so references taken earlier see it
    held = model.grads
    rng = np.random.default_rng(2)
    model.forward(to_device(rng.standard_normal((5, 3)), backend))
    model.backward(to_device(rng.standard_normal((5, 2)), backend))
    for dotted, array in held.items():
        index, name = dotted.split(".")
        assert model[int(index)].grads[name] is array
    assert to_host(held["2.W"]).any() and to_host(held["3.gamma"]).any()

    # a write through a dotted name reaches the layer
    model.params["0.W"][...] = 0.0
    assert not to_host(model[0].params["W"]).any()


def test_sequential_nested_names(backend):
    inner = Sequential(Dense(2, 3, **_f64(backend, seed=0)), Tanh(**_f64(backend)))
    model = Sequential(Dense(4, 2, **_f64(backend, seed=1)), inner)

    assert set(model.params) == {"0.W", "0.b", "1.0.W", "1.0.b"}
    assert model.params["1.0.W"] is inner[0].params["W"]


def test_sequential_rejects_non_layers():
    with pytest.raises(TypeError, match="item 1 is a str"):
        Sequential(Tanh(), "relu")


def test_reshape_errors(backend):
    x = to_device(np.zeros((2, 5)), backend)

    with pytest.raises(ValueError) as info:
        Reshape((3, 4), **_f64(backend)).forward(x)
    message = str(info.value)
    assert "Reshape" in message and "(2, 5)" in message and "5 values per sample" in message
    assert "expected 12" in message

    with pytest.raises(ValueError, match=r"Reshape: expected input of shape .*got shape \(5,\)"):
        Reshape((5,), **_f64(backend)).forward(to_device(np.zeros(5), backend))
    with pytest.raises(ValueError, match=r"Flatten: expected input of shape .*got shape \(5,\)"):
        Flatten(**_f64(backend)).forward(to_device(np.zeros(5), backend))

    layer = Reshape((5, 1), **_f64(backend))
    layer.forward(x)
    with pytest.raises(ValueError, match=r"Reshape: backward expected dy of shape \(2, 5, 1\).*got \(2, 5\)"):
        layer.backward(x)
