"""Dense layer: gradients by finite differences, the forward formula, parameters and init."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.gradcheck import check_layer
from scratchvae.layers import Dense


def _dense(backend, n_in, n_out, seed=0):
    return Dense(n_in, n_out, dtype=np.float64, seed=seed, backend=backend)


def _affine_reference(x, W, b):
    """y[n, o] = sum_i x[n, i] W[i, o] + b[o], by broadcasting (no matmul)."""
    return (x[:, :, None] * W[None, :, :]).sum(axis=1) + b[None, :]


@pytest.mark.gradcheck
@given(n=st.integers(1, 4), n_in=st.integers(1, 5), n_out=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_dense_gradients(backend, n, n_in, n_out, seed):
    layer = _dense(backend, n_in, n_out, seed=seed)
    x = to_device(np.random.default_rng(seed).standard_normal((n, n_in)), backend)

    report = check_layer(layer, x, seed=seed)

    assert set(report.checks) == {"x", "W", "b"}
    report.assert_ok(1e-6)


def _assert_pytorch_init(W, b, n_in):
    """Entries of U(-a, a) with a = 1/sqrt(in): inside the bound, filling it, with
    the uniform's mean 0 and second moment a^2/3 (within 5 standard errors)."""
    bound = 1.0 / math.sqrt(n_in)
    assert W.dtype == np.float64 and b.dtype == np.float64
    assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(W).max() > 0.9 * bound
    size = W.size
    assert abs(W.mean()) < 5 * bound / math.sqrt(3 * size)
    assert abs((W**2).mean() - bound**2 / 3) < 5 * bound**2 * math.sqrt(4 / 45 / size)


def test_dense_forward_matches_formula(backend):
    n_in, n_out = 50, 40
    layer = _dense(backend, n_in, n_out, seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, n_in))

    # parameter names and shapes
    assert set(layer.params) == {"W", "b"}
    assert set(layer.grads) == {"W", "b"}
    assert layer.params["W"].shape == (n_in, n_out)
    assert layer.params["b"].shape == (n_out,)
    assert layer.num_params() == n_in * n_out + n_out

    # PyTorch's Linear init; the same seed gives the same weights, another seed others
    W, b = to_host(layer.params["W"]).copy(), to_host(layer.params["b"]).copy()
    _assert_pytorch_init(W, b, n_in)
    twin, other = _dense(backend, n_in, n_out, seed=3), _dense(backend, n_in, n_out, seed=4)
    np.testing.assert_array_equal(to_host(twin.params["W"]), W)
    np.testing.assert_array_equal(to_host(twin.params["b"]), b)
    assert not np.array_equal(to_host(other.params["W"]), W)

    # the forward is the affine map
    y = to_host(layer.forward(to_device(x, backend)))
    assert y.shape == (6, n_out)
    np.testing.assert_allclose(y, _affine_reference(x, W, b), rtol=1e-12, atol=1e-12)

    # writing into the parameter arrays changes the next forward
    W_new, b_new = rng.standard_normal((n_in, n_out)), rng.standard_normal(n_out)
    layer.params["W"][...] = to_device(W_new, backend)
    layer.params["b"][...] = to_device(b_new, backend)
    y_new = to_host(layer.forward(to_device(x, backend)))
    np.testing.assert_allclose(y_new, _affine_reference(x, W_new, b_new), rtol=1e-12, atol=1e-12)


def test_dense_backward_overwrites_grads(backend):
    """Two backward passes give the second batch's gradient, not the sum."""
    layer = _dense(backend, 3, 2, seed=1)
    rng = np.random.default_rng(5)
    for _ in range(2):
        x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
        layer.forward(to_device(x, backend))
        dx = to_host(layer.backward(to_device(dy, backend)))
    W = to_host(layer.params["W"])
    np.testing.assert_allclose(to_host(layer.grads["W"]), np.einsum("ni,no->io", x, dy), rtol=1e-12)
    np.testing.assert_allclose(to_host(layer.grads["b"]), dy.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dx, np.einsum("no,io->ni", dy, W), rtol=1e-12)


def test_sequential_without_input_gradient_skips_leading_shape_layers(backend):
    """Flatten before the first Dense: with input_grad=False neither runs its dx, the result
    is None and the parameter gradients equal the full backward's."""
    from scratchvae.layers import Flatten, ReLU, Sequential

    kw = dict(dtype=np.float64, backend=backend)
    net = Sequential(Flatten(**kw), Dense(12, 5, seed=1, **kw), ReLU(**kw), Dense(5, 2, seed=2, **kw))
    x = to_device(np.random.default_rng(0).standard_normal((3, 1, 3, 4)), backend)
    dy = to_device(np.random.default_rng(1).standard_normal((3, 2)), backend)
    net.forward(x)
    assert net.backward(dy).shape == x.shape
    full = {k: to_host(g).copy() for k, g in net.grads.items()}
    net.forward(x)
    net.layers[0].take_cache = None  # Flatten.backward must not run: calling it would fail
    assert net.backward(dy, input_grad=False) is None
    for k, g in net.grads.items():
        np.testing.assert_array_equal(to_host(g), full[k])


def test_nested_sequential_passes_input_grad_false_on(backend):
    """A Sequential whose first layer is a Sequential hands input_grad=False down to it."""
    from scratchvae.layers import Flatten, ReLU, Sequential

    kw = dict(dtype=np.float64, backend=backend)
    inner = Sequential(Flatten(**kw), Dense(6, 4, seed=1, **kw))
    net = Sequential(inner, ReLU(**kw), Dense(4, 2, seed=2, **kw))
    x = to_device(np.random.default_rng(0).standard_normal((3, 2, 3)), backend)
    dy = to_device(np.random.default_rng(1).standard_normal((3, 2)), backend)
    net.forward(x)
    net.backward(dy)
    full = {k: to_host(g).copy() for k, g in net.grads.items()}
    net.forward(x)
    calls = []
    original = inner.layers[1].backward
    inner.layers[1].backward = lambda d, input_grad=True: calls.append(input_grad) or original(d, input_grad)
    assert net.backward(dy, input_grad=False) is None
    assert calls == [False]
    for k, g in net.grads.items():
        np.testing.assert_array_equal(to_host(g), full[k])
