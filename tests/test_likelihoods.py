"""Reconstruction likelihoods: values against densities written here, stability, gradients.

The likelihood objects (``scratchvae.likelihoods``) are tested; they call the functions
in ``scratchvae.functional.likelihoods``, so both layers are covered.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import get_xp, to_device, to_host
from scratchvae.functional import likelihoods as FL
from scratchvae.gradcheck import check_function
from scratchvae.likelihoods import LIKELIHOODS, Gaussian, GaussianFixed, make_likelihood

from numerics import strict_floats

LOG_2PI = math.log(2 * math.pi)


def _host_bernoulli_nll(logits, x):
    """-sum(x log p + (1 - x) log(1 - p)) per image with p = 1 / (1 + exp(-logits))."""
    p = 1.0 / (1.0 + np.exp(-logits))
    per_pixel = -(x * np.log(p) + (1.0 - x) * np.log(1.0 - p))
    return per_pixel.reshape(len(x), -1).sum(axis=1)


def _host_gaussian_nll(x, mean, var):
    """-sum log N(x; mean, var) per image, normalizing constant included."""
    log_density = -0.5 * np.log(2 * np.pi * var) - (x - mean) ** 2 / (2 * var)
    return -np.broadcast_to(log_density, x.shape).reshape(len(x), -1).sum(axis=1)


# -- Bernoulli -------------------------------------------------------------------------
def test_bernoulli_value_stable(backend):
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.standard_normal((4, 1, 5, 6))
    x = rng.random((4, 1, 5, 6))
    x[0] = (x[0] > 0.5).astype(float)  # binary images and grey levels
    lik = make_likelihood("bernoulli", get_xp(backend), np.float64)

    nll = to_host(lik.nll(to_device(logits, backend), to_device(x, backend)))

    assert nll.shape == (4,)
    np.testing.assert_allclose(nll, _host_bernoulli_nll(logits, x), rtol=1e-12)
    np.testing.assert_allclose(to_host(lik.mean(to_device(logits, backend))), 1 / (1 + np.exp(-logits)),
                               rtol=1e-12)

    # saturated logits: the per-pixel NLL tends to softplus(l) - x l, i.e. |l| when the
    # pixel disagrees with the logit's sign, 0 when it agrees, |l|/2 for x = 1/2
    big = np.array([1000.0, 1000.0, 1000.0, -1000.0, -1000.0, -1000.0])
    xs = np.array([0.0, 1.0, 0.5, 1.0, 0.0, 0.5])
    expected = np.array([1000.0, 0.0, 500.0, 1000.0, 0.0, 500.0])
    for dtype in (np.float64, np.float32):
        l_dev = to_device(big.reshape(6, 1), backend, dtype=dtype)
        x_dev = to_device(xs.reshape(6, 1), backend, dtype=dtype)
        with strict_floats(backend):
            value, cache = FL.bernoulli_nll(l_dev, x_dev)
            grad = FL.bernoulli_nll_backward(to_device(np.ones(6), backend, dtype=dtype), cache)
        value, grad = to_host(value), to_host(grad)
        assert value.dtype == dtype and np.all(np.isfinite(value)), dtype
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=0)
        # d/dl = sigmoid(l) - x: 1 - x for l = 1000, -x for l = -1000
        np.testing.assert_allclose(grad[:, 0], np.where(big > 0, 1.0, 0.0) - xs, rtol=0, atol=1e-6)


# -- gradients ---------------------------------------------------------------------------
def _gradient_case(kind, backend, n, c, h, w, seed):
    """(forward, backward, inputs) for a likelihood, as functions of named float64 arrays."""
    rng = np.random.default_rng(seed)
    xp = get_xp(backend)
    shape = (n, c, h, w)
    if kind == "bernoulli":
        lik = make_likelihood("bernoulli", xp, np.float64)
        x = to_device(rng.random(shape), backend)
        logits = to_device(3.0 * rng.standard_normal(shape), backend)
        inputs = {"logits": logits}
        forward = lambda: lik.nll(logits, x)  # noqa: E731
        backward = lambda dy: {"logits": lik.backward(dy)}  # noqa: E731
        return forward, backward, inputs
    x = to_device(rng.standard_normal(shape), backend)
    mean = to_device(rng.standard_normal(shape), backend)
    if kind == "gaussian-fixed":
        lik = GaussianFixed(variance=0.3)  # not the default 0.5: a wrong 1/c shows
        forward = lambda: lik.nll(mean, x)  # noqa: E731
        backward = lambda dy: {"mean": lik.backward(dy)}  # noqa: E731
        return forward, backward, {"mean": mean}
    if kind == "gaussian-learned-scale":
        lik = make_likelihood("gaussian-learned-scale", xp, np.float64)
        log_scale = lik.params["log_scale"]
        log_scale[...] = to_device(rng.uniform(-1.0, 1.0, 1), backend)

        def backward(dy):
            dmean = lik.backward(dy)
            return {"mean": dmean, "log_scale": lik.grads["log_scale"]}

        return lambda: lik.nll(mean, x), backward, {"mean": mean, "log_scale": log_scale}
    assert kind == "gaussian"
    lik = Gaussian()
    lv = np.clip(1.5 * rng.standard_normal(shape), -4.0, 4.0)
    # log-variances beyond the bounds and on their edges. Above, var ~ exp(30) and nothing
    # is large. Below, var ~ exp(-30), and an O(1) residual would make (x - mean)^2 / var
    # ~ 1e13 (and its mean-gradient ~1e13, hiding every other entry's error), so those
    # pixels get x = mean exactly: a pixel the decoder predicts with certainty, where the
    # logvar gradient runs through the bound
    above = rng.random(shape) < 0.2
    below = ~above & (rng.random(shape) < 0.25)
    keep = rng.integers(above.size)  # one moderate pixel keeps the mean gradient's scale O(1)
    above.flat[keep] = below.flat[keep] = False
    lv[above] = rng.choice([29.5, 30.0, 31.0, 40.0], size=int(above.sum()))
    lv[below] = rng.choice([-40.0, -31.0, -30.0, -29.5], size=int(below.sum()))
    x_h, mean_h = to_host(x).copy(), to_host(mean)
    x_h[below] = mean_h[below]
    x = to_device(x_h, backend)
    logvar = to_device(lv, backend)

    def forward():
        out = xp.concatenate([mean, logvar], axis=1)  # the decoder's 2C channels
        return lik.nll(out, x)

    def backward(dy):
        dout = lik.backward(dy)
        return {"mean": dout[:, :c], "logvar": dout[:, c:]}

    return forward, backward, {"mean": mean, "logvar": logvar}


@pytest.mark.gradcheck
@pytest.mark.parametrize("kind", LIKELIHOODS)
@given(n=st.integers(1, 3), c=st.integers(1, 2), h=st.integers(1, 3), w=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_likelihood_gradients(backend, kind, n, c, h, w, seed):
    forward, backward, inputs = _gradient_case(kind, backend, n, c, h, w, seed)

    report = check_function(forward, backward, inputs, seed=seed)

    assert set(report.checks) == set(inputs)
    report.assert_ok(1e-6)


# -- Gaussian values ---------------------------------------------------------------------
def test_gaussian_values_match_density(backend):
    rng = np.random.default_rng(1)
    shape = (3, 2, 4, 5)
    x, mean = rng.standard_normal(shape), rng.standard_normal(shape)
    x_d, mean_d = to_device(x, backend), to_device(mean, backend)
    xp = get_xp(backend)

    # fixed variance c
    for c in (0.5, 0.1, 2.0):
        lik = make_likelihood("gaussian-fixed", xp, np.float64, variance=c)
        np.testing.assert_allclose(to_host(lik.nll(mean_d, x_d)), _host_gaussian_nll(x, mean, c),
                                   rtol=1e-12)
        np.testing.assert_array_equal(to_host(lik.mean(mean_d)), mean)

    # one learned scale s for every pixel: var = exp(2 s)
    lik = make_likelihood("gaussian-learned-scale", xp, np.float64)
    np.testing.assert_allclose(to_host(lik.nll(mean_d, x_d)), _host_gaussian_nll(x, mean, 1.0),
                               rtol=1e-12)  # s = 0 at init: unit variance
    for s in (0.7, -1.3):
        lik.params["log_scale"][...] = s
        np.testing.assert_allclose(to_host(lik.nll(mean_d, x_d)),
                                   _host_gaussian_nll(x, mean, np.exp(2 * s)), rtol=1e-12)

    # a log-variance per pixel (inside the bound), the decoder output holding means then
    # log-variances along the channel axis
    logvar = rng.uniform(-6.0, 6.0, shape)
    lik = make_likelihood("gaussian", xp, np.float64)
    assert lik.channels_per_pixel == 2
    out = to_device(np.concatenate([mean, logvar], axis=1), backend)
    np.testing.assert_allclose(to_host(lik.nll(out, x_d)), _host_gaussian_nll(x, mean, np.exp(logvar)),
                               rtol=1e-12)
    np.testing.assert_array_equal(to_host(lik.mean(out)), mean)


def test_gaussian_fixed_is_weighted_squared_error(backend):
    rng = np.random.default_rng(2)
    shape = (4, 1, 6, 6)
    x, mean = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    pixels = 36
    squared_error = ((x - mean) ** 2).reshape(4, -1).sum(axis=1)
    for c in (0.5, 0.05, 3.0):
        lik = GaussianFixed(variance=c)
        nll = to_host(lik.nll(to_device(mean, backend), to_device(x, backend)))
        const = pixels * 0.5 * math.log(2 * math.pi * c)
        np.testing.assert_allclose(nll - const, squared_error / (2 * c), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="variance must be positive"):
        GaussianFixed(variance=0.0)
