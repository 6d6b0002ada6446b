"""Softmax cross-entropy: values against the textbook formula written here, stability at
extreme logits, label validation, and the hand-derived gradient by central differences."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.functional import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from scratchvae.gradcheck import check_function

from numerics import strict_floats


def _host_cross_entropy(logits, labels):
    """-log(exp(l_y) / sum_k exp(l_k)) per row, computed directly (fine for small logits)."""
    e = np.exp(logits)
    return -np.log(e[np.arange(len(labels)), labels] / e.sum(axis=1))


@pytest.mark.gradcheck
@given(n=st.integers(1, 5), k=st.integers(1, 7), scale=st.sampled_from([0.1, 1.0, 5.0]),
       seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_gradients(backend, n, k, scale, seed):
    rng = np.random.default_rng(seed)
    logits = to_device(scale * rng.standard_normal((n, k)), backend)
    labels = to_device(rng.integers(0, k, n), backend)

    def forward():
        return softmax_cross_entropy_forward(logits, labels)[0]

    def backward(dloss):
        _, cache = softmax_cross_entropy_forward(logits, labels)
        return {"logits": softmax_cross_entropy_backward(dloss, cache)}

    report = check_function(forward, backward, {"logits": logits}, seed=seed)

    report.assert_ok(1e-6)


def test_softmax_cross_entropy_forward_matches_formula(backend):
    rng = np.random.default_rng(0)
    logits = 2.0 * rng.standard_normal((6, 4))
    labels = np.array([0, 3, 1, 2, 3, 0])

    loss, (probs, _) = softmax_cross_entropy_forward(to_device(logits, backend), to_device(labels, backend))

    np.testing.assert_allclose(to_host(loss), _host_cross_entropy(logits, labels), rtol=1e-12)
    np.testing.assert_allclose(to_host(probs).sum(axis=1), 1.0, rtol=1e-12)
    # hand-made cases: uniform logits give log K; a shift of every logit changes nothing
    uniform = to_device(np.zeros((2, 5)), backend)
    np.testing.assert_allclose(
        to_host(softmax_cross_entropy_forward(uniform, to_device(np.array([0, 4]), backend))[0]),
        np.log(5.0), rtol=1e-14)
    shifted = to_host(softmax_cross_entropy_forward(to_device(logits + 100.0, backend),
                                                    to_device(labels, backend))[0])
    np.testing.assert_allclose(shifted, _host_cross_entropy(logits, labels), rtol=1e-10)
    # one class: probability 1, loss 0; dtype follows the logits, uint8 labels accepted
    one = softmax_cross_entropy_forward(to_device(np.ones((3, 1), np.float32), backend),
                                        to_device(np.zeros(3, np.uint8), backend))[0]
    assert to_host(one).dtype == np.float32
    np.testing.assert_array_equal(to_host(one), 0.0)
    # the backward of the batch mean: rows of (softmax - onehot) / N, each summing to 0
    _, cache = softmax_cross_entropy_forward(to_device(logits, backend), to_device(labels, backend))
    dlogits = to_host(softmax_cross_entropy_backward(to_device(np.full(6, 1 / 6), backend), cache))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(dlogits, (p - np.eye(4)[labels]) / 6, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dlogits.sum(axis=1), 0.0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_extreme_logits(backend, dtype):
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype)
    labels = np.array([0, 2, 1])
    dloss = np.array([0.5, -1.0, 2.0], dtype=dtype)

    with strict_floats(backend):
        loss, cache = softmax_cross_entropy_forward(to_device(logits, backend), to_device(labels, backend))
        dlogits = softmax_cross_entropy_backward(to_device(dloss, backend), cache)
    loss, dlogits = to_host(loss), to_host(dlogits)

    assert loss.dtype == dtype and dlogits.dtype == dtype
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(dlogits))
    # right with certainty: 0; wrong by 1e4 beside a tie: 1e4 + log 2; three-way tie: log 3
    np.testing.assert_allclose(loss, [0.0, 1e4 + np.log(2.0), np.log(3.0)], rtol=1e-6)
    np.testing.assert_allclose(dlogits, dloss[:, None] * np.array(
        [[0.0, 0.0, 0.0], [0.5, 0.5, -1.0], [1 / 3, -2 / 3, 1 / 3]]), rtol=1e-6, atol=1e-7)


def test_softmax_cross_entropy_bad_labels(backend):
    logits = to_device(np.zeros((3, 4)), backend)

    for bad, message in [(np.array([0, 4, 1]), r"in \[0, 3\] for 4 classes.*from 0 to 4"),
                         (np.array([0, -1, 1]), r"from -1 to 1")]:
        with pytest.raises(ValueError, match=message):  # host labels: checked on the host
            softmax_cross_entropy_forward(logits, bad)
        if backend == "numpy":
            with pytest.raises(ValueError, match=message):
                softmax_cross_entropy_forward(logits, to_device(bad, backend))
        else:  # labels already on the GPU: no sync to check them; their rows' loss is NaN
            loss = to_host(softmax_cross_entropy_forward(logits, to_device(bad, backend))[0])
            np.testing.assert_array_equal(np.isnan(loss), [False, True, False])
            np.testing.assert_allclose(loss[[0, 2]], np.log(4.0), rtol=1e-12)
    for bad, message in [(np.array([0, 1]), r"labels must have shape \(3,\).*got shape \(2,\)"),
                         (np.zeros((3, 1), np.int64), r"labels must have shape \(3,\)"),
                         (np.array([0.0, 1.0, 2.0]), r"integer class indices, got dtype float64")]:
        with pytest.raises(ValueError, match=message):
            softmax_cross_entropy_forward(logits, to_device(bad, backend))
    with pytest.raises(ValueError, match=r"float array of shape \(N, K\)"):
        softmax_cross_entropy_forward(to_device(np.zeros(3), backend), to_device(np.zeros(3, int), backend))


def test_softmax_cross_entropy_backward_leaves_arguments_unchanged(backend):
    rng = np.random.default_rng(1)
    logits = to_device(rng.standard_normal((4, 3)), backend)
    dloss = to_device(rng.standard_normal(4), backend)
    _, cache = softmax_cross_entropy_forward(logits, to_device(np.array([2, 0, 1, 1]), backend))
    before = [to_host(a).copy() for a in (dloss, *cache)]

    softmax_cross_entropy_backward(dloss, cache)

    for old, new in zip(before, (dloss, *cache)):
        np.testing.assert_array_equal(to_host(new), old)
