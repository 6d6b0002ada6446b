"""Inverted dropout: gradients with a fixed mask, the keep rate and scaling, mask reuse
in backward, identity in evaluation, and seeding."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.functional.dropout import dropout_backward, dropout_forward
from scratchvae.gradcheck import check_function
from scratchvae.layers import Dropout

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def _dropout(backend, p, seed=0):
    return Dropout(p, dtype=np.float64, seed=seed, backend=backend)


def _nonzero(rng, shape):
    """Normal draws pushed away from 0, so a zero in the output can only be a dropped unit."""
    z = rng.standard_normal(shape)
    return z + np.where(z < 0, -0.1, 0.1)


@pytest.mark.gradcheck
@given(shape=shapes, p=st.sampled_from([0.0, 0.2, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_dropout_gradients(backend, shape, p, seed):
    rng = np.random.default_rng(seed)

    # the functional op, with a fixed 0/1 mask, against finite differences
    mask = to_device((rng.random(shape) >= p).astype(np.float64), backend)
    x = to_device(rng.standard_normal(shape), backend)
    _, scaled = dropout_forward(x, mask, p)
    report = check_function(
        lambda: dropout_forward(x, mask, p)[0],
        lambda dy: {"x": dropout_backward(dy, scaled)},
        {"x": x},
        seed=seed,
    )
    report.assert_ok(1e-6)

    # the layer: backward is dy * mask / (1 - p), with the mask its forward output implies
    layer = _dropout(backend, p, seed=seed)
    x_host, dy_host = _nonzero(rng, shape), rng.standard_normal(shape)
    y = to_host(layer.forward(to_device(x_host, backend), training=True))
    kept = (y != 0).astype(np.float64)
    dx = to_host(layer.backward(to_device(dy_host, backend)))
    np.testing.assert_allclose(y, x_host * kept / (1 - p), rtol=1e-15)
    np.testing.assert_allclose(dx, dy_host * kept / (1 - p), rtol=1e-15)


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_keep_rate(backend, p):
    n = 200_000
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=(400, 500))
    layer = _dropout(backend, p, seed=123)

    y = to_host(layer.forward(to_device(x, backend), training=True))

    kept = y != 0
    # kept fraction ~ Binomial(n, 1 - p) / n
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    # kept units are scaled by exactly 1 / (1 - p)
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    # E[y | x] = x: the output mean matches the input mean; given x, the sd of
    # mean(y) is sqrt(sum x^2 p / (1 - p)) / n
    sd = math.sqrt((x**2).sum() * p / (1 - p)) / n
    assert abs(y.mean() - x.mean()) < 5 * sd


def test_dropout_backward_reuses_mask(backend):
    rng = np.random.default_rng(4)
    shape = (50, 40)
    x, dy = _nonzero(rng, shape), _nonzero(rng, shape)
    layer = _dropout(backend, 0.5, seed=9)

    first = to_host(layer.forward(to_device(x, backend), training=True))
    second = to_host(layer.forward(to_device(x, backend), training=True))
    dx = to_host(layer.backward(to_device(dy, backend)))

    assert not np.array_equal(first == 0, second == 0)  # a fresh mask per forward
    np.testing.assert_array_equal(dx == 0, second == 0)  # backward uses the latest one
    assert 0 < (dx == 0).mean() < 1


def test_dropout_eval_identity(backend):
    rng = np.random.default_rng(5)
    x_host, dy_host = rng.standard_normal((6, 7)), rng.standard_normal((6, 7))
    layer = _dropout(backend, 0.5, seed=1)

    y = to_host(layer.forward(to_device(x_host, backend), training=False))
    dx = to_host(layer.backward(to_device(dy_host, backend)))

    np.testing.assert_array_equal(y, x_host)
    np.testing.assert_array_equal(dx, dy_host)


def test_dropout_seeded(backend):
    x = to_device(np.ones((30, 40)), backend)

    def mask(seed):
        return to_host(_dropout(backend, 0.5, seed=seed).forward(x, training=True)) != 0

    np.testing.assert_array_equal(mask(11), mask(11))
    assert not np.array_equal(mask(11), mask(12))


def test_dropout_rejects_bad_p(backend):
    for p in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="Dropout: p must be in"):
            Dropout(p, dtype=np.float64, backend=backend)
