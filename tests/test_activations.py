"""Activation layers: gradients by finite differences, forward values against
formulas written here, and a sigmoid that stays finite and exact at extreme inputs."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.gradcheck import check_layer
from scratchvae.layers import LeakyReLU, ReLU, Sigmoid, Tanh

MAKERS = {
    "ReLU": lambda **kw: ReLU(**kw),
    "LeakyReLU(0.2)": lambda **kw: LeakyReLU(0.2, **kw),
    "Sigmoid": lambda **kw: Sigmoid(**kw),
    "Tanh": lambda **kw: Tanh(**kw),
}

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def _away_from_kink(x, margin=1e-3):
    """Move entries with |x| < margin to +-0.5, so a finite-difference step of
    1e-6 never crosses the kink of ReLU/LeakyReLU at 0."""
    return np.where(np.abs(x) < margin, np.where(x < 0, -0.5, 0.5), x)


def _layer(name, backend):
    return MAKERS[name](dtype=np.float64, backend=backend)


@pytest.mark.gradcheck
@pytest.mark.parametrize("name", list(MAKERS))
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_activation_gradients(backend, name, shape, seed):
    # |x| <= 3 keeps tanh and sigmoid out of saturation, where f'(x) < 1e-2 would sink
    # below the resolution of central differences (the extremes are tested below)
    x_host = _away_from_kink(np.random.default_rng(seed).uniform(-3, 3, size=shape))
    x = to_device(x_host, backend)

    report = check_layer(_layer(name, backend), x, seed=seed)

    assert set(report.checks) == {"x"}
    report.assert_ok(1e-6)


def _relu(x):
    return np.maximum(x, 0.0)


def _leaky_relu_02(x):
    return np.where(x > 0, x, 0.2 * x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _tanh(x):
    e = np.exp(2.0 * x)
    return (e - 1.0) / (e + 1.0)


FORMULAS = {"ReLU": _relu, "LeakyReLU(0.2)": _leaky_relu_02, "Sigmoid": _sigmoid, "Tanh": _tanh}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_activation_forward_values(backend, name):
    x_host = np.random.default_rng(0).uniform(-5, 5, size=(3, 4, 5))
    x_host[0, 0, :3] = [0.0, -1.0, 1.0]  # the kink and two exact points
    layer = _layer(name, backend)

    y = to_host(layer.forward(to_device(x_host, backend)))

    assert y.shape == x_host.shape and y.dtype == np.float64
    np.testing.assert_allclose(y, FORMULAS[name](x_host), rtol=1e-12, atol=1e-15)


def test_leaky_relu_default_slope_is_pytorchs(backend):
    layer = LeakyReLU(dtype=np.float64, backend=backend)
    y = to_host(layer.forward(to_device(np.array([-2.0, 3.0]), backend)))
    np.testing.assert_allclose(y, [-0.02, 3.0], rtol=1e-15)


def test_sigmoid_stable_at_extremes(backend):
    x_host = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    layer = Sigmoid(dtype=np.float64, backend=backend)
    dy = to_device(np.ones_like(x_host), backend)

    # Any warning fails; overflow, division by zero and invalid operations raise.
    # (exp(-1000) underflowing to 0 is the correct, exact-to-precision result.)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        y = to_host(layer.forward(to_device(x_host, backend)))
        dx = to_host(layer.backward(dy))

    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert y[0] == 0.0 and y[-1] == 1.0 and y[2] == 0.5
    # sigmoid(-50) = 1 / (1 + e^50) ~ 1.9e-22: kept to full relative precision,
    # not rounded to 0; sigmoid(50) = 1 - 1.9e-22 rounds to 1 in float64.
    np.testing.assert_allclose(y[1], 1.0 / (1.0 + math.exp(50.0)), rtol=1e-14)
    assert y[3] == 1.0
    # the derivative y (1 - y) is ~0 at the extremes and 1/4 at 0
    np.testing.assert_allclose(dx, [0.0, 1.0 / (1.0 + math.exp(50.0)), 0.25, 0.0, 0.0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("name, slope", [("ReLU", 0.0), ("LeakyReLU(0.2)", 0.2)])
def test_piecewise_slope_at_zero_is_pytorchs(backend, name, slope):
    """At x = 0 the mask is off: ReLU passes no gradient, LeakyReLU passes slope * dy."""
    layer = _layer(name, backend)
    layer.forward(to_device(np.array([0.0, -1.0, 1.0]), backend))
    dx = to_host(layer.backward(to_device(np.array([3.0, 5.0, 7.0]), backend)))
    np.testing.assert_allclose(dx, [3.0 * slope, 5.0 * slope, 7.0], rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_where_free_forms_give_the_same_numbers_as_where(dtype):
    """sigmoid as max(e, [x >= 0]) / (1 + e), LeakyReLU as max(x, a x) and its backward as
    dy * max([x > 0], a): bit for bit the ``where`` forms they replace (docs/performance.md),
    signed zeros, extremes and NaN included."""
    from scratchvae.functional.activations import leaky_relu_backward, leaky_relu_forward, sigmoid_given_exp

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(20_000) * 30).astype(dtype)
    x[:7] = [0.0, -0.0, 100.0, -100.0, 1e-30, -1e-30, np.nan]
    e = np.exp(-np.abs(x))
    d = 1 + e
    with np.errstate(invalid="ignore"):
        want = np.where(x >= 0, 1 / d, e / d).astype(dtype)
        got = sigmoid_given_exp(x, e)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    for slope in (0.0, 0.01, 0.2, 1.0):
        y, cache = leaky_relu_forward(x, slope)
        want_y = np.where(x > 0, x, slope * x).astype(dtype)
        np.testing.assert_array_equal(y, want_y)
        assert np.array_equal(np.signbit(y[:2]), np.signbit(want_y[:2]))
        dy = rng.standard_normal(x.size).astype(dtype)
        np.testing.assert_array_equal(leaky_relu_backward(dy, cache), np.where(x > 0, dy, slope * dy).astype(dtype))
