"""BatchNorm1d / BatchNorm2d: gradients in both modes, per-channel output statistics,
PyTorch's running-statistics convention, and the batch-of-one error."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.gradcheck import check_layer
from scratchvae.layers import BatchNorm1d, BatchNorm2d

EPS = 1e-5


@st.composite
def bn_inputs(draw):
    """(layer class, input shape): (N, F) or (N, C, H, W), with N >= 2 and m >= 4
    values per feature. In training dx is dy projected away from the constant and
    xhat directions, an (m - 2)-dimensional space: for m = 2 it is empty (dx is
    ~eps-sized), for m = 3 a line that a random dy can be nearly orthogonal to. Either
    way the true gradient can fall below what central differences resolve."""
    if draw(st.booleans()):
        return BatchNorm1d, (draw(st.integers(4, 6)), draw(st.integers(1, 4)))
    n, c, h = draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    w = draw(st.integers(-(-4 // (n * h)), 3))  # n * h * w >= 4
    return BatchNorm2d, (n, c, h, w)


def _axes(shape):
    """The axes statistics are taken over: all but the channel axis 1."""
    return (0,) if len(shape) == 2 else (0, 2, 3)


def _per_channel(v, shape):
    """Broadcast a per-channel vector against an input of ``shape``."""
    return v.reshape((1, -1) + (1,) * (len(shape) - 2))


def _set(layer, store, name, value, backend):
    getattr(layer, store)[name][...] = to_device(value, backend)


def _layer_with_affine(cls, channels, backend, rng, **kw):
    """A float64 layer with gamma and beta that are far from ones and zeros."""
    layer = cls(channels, dtype=np.float64, backend=backend, **kw)
    _set(layer, "params", "gamma", rng.uniform(0.5, 2.0, channels) * rng.choice([-1, 1], channels), backend)
    _set(layer, "params", "beta", rng.standard_normal(channels), backend)
    return layer


@pytest.mark.gradcheck
@given(case=bn_inputs(), seed=st.integers(0, 2**16))
def test_batchnorm_gradients_training(backend, case, seed):
    cls, shape = case
    rng = np.random.default_rng(seed)
    layer = _layer_with_affine(cls, shape[1], backend, rng)
    x = to_device(rng.standard_normal(shape), backend)

    report = check_layer(layer, x, training=True, seed=seed)

    assert set(report.checks) == {"x", "gamma", "beta"}
    report.assert_ok(1e-6)


@pytest.mark.gradcheck
@given(case=bn_inputs(), seed=st.integers(0, 2**16))
def test_batchnorm_gradients_eval(backend, case, seed):
    cls, shape = case
    rng = np.random.default_rng(seed)
    layer = _layer_with_affine(cls, shape[1], backend, rng)
    _set(layer, "buffers", "running_mean", rng.standard_normal(shape[1]), backend)
    _set(layer, "buffers", "running_var", rng.uniform(0.3, 3.0, shape[1]), backend)
    x = to_device(rng.standard_normal(shape), backend)

    report = check_layer(layer, x, training=False, seed=seed)

    assert set(report.checks) == {"x", "gamma", "beta"}
    report.assert_ok(1e-6)


@pytest.mark.gradcheck
@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (2, 3)), (BatchNorm2d, (2, 2, 1, 1))])
def test_batchnorm_gradients_two_values_large_eps(backend, cls, shape):
    """Two values per feature, the smallest batch training allows: with eps = 0.5 the
    output still depends on x at O(1), so the check can resolve the gradient."""
    rng = np.random.default_rng(3)
    layer = _layer_with_affine(cls, shape[1], backend, rng, eps=0.5)
    x = to_device(rng.standard_normal(shape), backend)

    check_layer(layer, x, training=True, seed=3).assert_ok(1e-6)


@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (64, 3)), (BatchNorm2d, (8, 3, 4, 5))])
def test_batchnorm_statistics_per_channel(backend, cls, shape):
    """Each channel comes out with mean beta and biased std gamma sqrt(var / (var + eps)),
    whatever its input scale: 1e-3 (where eps matters), 1 and 1e3."""
    rng = np.random.default_rng(1)
    scales, offsets = np.array([1e-3, 1.0, 1e3]), np.array([5.0, -2.0, 300.0])
    x = _per_channel(scales, shape) * rng.standard_normal(shape) + _per_channel(offsets, shape)
    gamma, beta = np.array([1.5, 0.7, 3.0]), np.array([-1.0, 0.25, 2.0])
    layer = cls(3, dtype=np.float64, backend=backend)
    _set(layer, "params", "gamma", gamma, backend)
    _set(layer, "params", "beta", beta, backend)

    y = to_host(layer.forward(to_device(x, backend), training=True))

    axes = _axes(shape)
    var = x.var(axis=axes)  # biased, over N (and H, W)
    np.testing.assert_allclose(y.mean(axis=axes), beta, rtol=0, atol=1e-10)
    np.testing.assert_allclose(y.std(axis=axes), np.abs(gamma) * np.sqrt(var / (var + EPS)), rtol=1e-9)
    # the small-scale channel is visibly shrunk by eps; the others are not
    assert y.std(axis=axes)[0] < 0.5 * gamma[0]


@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (6, 3)), (BatchNorm2d, (3, 3, 2, 4))])
def test_batchnorm_running_stats_momentum(backend, cls, shape):
    momentum, steps, channels = 0.3, 4, shape[1]
    rng = np.random.default_rng(2)
    layer = cls(channels, momentum=momentum, dtype=np.float64, backend=backend)
    np.testing.assert_array_equal(to_host(layer.buffers["running_mean"]), np.zeros(channels))
    np.testing.assert_array_equal(to_host(layer.buffers["running_var"]), np.ones(channels))

    axes = _axes(shape)
    running_mean, running_var = np.zeros(channels), np.ones(channels)
    for _ in range(steps):
        x = 3.0 * rng.standard_normal(shape) + _per_channel(rng.standard_normal(channels), shape)
        layer.forward(to_device(x, backend), training=True)
        running_mean = (1 - momentum) * running_mean + momentum * x.mean(axis=axes)
        running_var = (1 - momentum) * running_var + momentum * x.var(axis=axes, ddof=1)  # unbiased

    np.testing.assert_allclose(to_host(layer.buffers["running_mean"]), running_mean, rtol=1e-12)
    np.testing.assert_allclose(to_host(layer.buffers["running_var"]), running_var, rtol=1e-12)

    # evaluation normalizes with the running statistics and leaves them alone
    x = rng.standard_normal(shape)
    y = to_host(layer.forward(to_device(x, backend), training=False))
    expected = (x - _per_channel(running_mean, shape)) / np.sqrt(_per_channel(running_var, shape) + EPS)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(layer.buffers["running_mean"]), running_mean, rtol=1e-12)
    np.testing.assert_allclose(to_host(layer.buffers["running_var"]), running_var, rtol=1e-12)


def test_batchnorm_batch_of_one_errors(backend):
    layer = BatchNorm1d(3, dtype=np.float64, backend=backend)
    x = to_device(np.random.default_rng(0).standard_normal((1, 3)), backend)

    with pytest.raises(ValueError) as info:
        layer.forward(x, training=True)

    message = str(info.value)
    assert "BatchNorm1d" in message and "(1, 3)" in message
    assert "training=False" in message  # says how to get around it
    # the failed call left the running statistics untouched, and evaluation works
    np.testing.assert_array_equal(to_host(layer.buffers["running_mean"]), np.zeros(3))
    np.testing.assert_array_equal(to_host(layer.buffers["running_var"]), np.ones(3))
    assert layer.forward(x, training=False).shape == (1, 3)
