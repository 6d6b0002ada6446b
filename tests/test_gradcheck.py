"""Tests of the finite-difference gradient checker itself (not of engine gradients)."""
import re

import numpy as np
import pytest

from scratchvae.backend import get_xp, to_device, to_host
from scratchvae.gradcheck import (
    DEFAULT_STEP,
    GradCheckReport,
    TensorCheck,
    check_function,
    check_layer,
    numerical_gradient,
)
from scratchvae.layers import Dense

FLOAT_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _floats_in(msg):
    return [float(s) for s in FLOAT_RE.findall(msg)]


def _arrays(backend, seed, **shapes):
    rng = np.random.default_rng(seed)
    return {k: to_device(rng.standard_normal(s), backend) for k, s in shapes.items()}


def test_gradcheck_accepts_correct_gradient(backend):
    xp = get_xp(backend)
    inputs = _arrays(backend, 0, a=(3, 4), b=(3, 4))
    a, b = inputs["a"], inputs["b"]

    def forward():
        return xp.sin(a) * b

    def backward(dy):
        return {"a": dy * xp.cos(a) * b, "b": dy * xp.sin(a)}

    report = check_function(forward, backward, inputs)
    assert set(report.checks) == {"a", "b"}
    assert report.max_error < 1e-8
    assert all(c.entries_checked == 12 for c in report.checks.values())
    assert report.ok()
    report.assert_ok()
    assert report.step == DEFAULT_STEP

    # a matrix product with broadcasting bias, non-square, correct backward
    m = _arrays(backend, 1, x=(5, 3), W=(3, 2), c=(2,))
    x, W, c = m["x"], m["W"], m["c"]
    rep = check_function(
        lambda: xp.tanh(x @ W + c),
        lambda dy: {
            "x": (dy * (1 - xp.tanh(x @ W + c) ** 2)) @ W.T,
            "W": x.T @ (dy * (1 - xp.tanh(x @ W + c) ** 2)),
            "c": (dy * (1 - xp.tanh(x @ W + c) ** 2)).sum(axis=0),
        },
        m,
    )
    assert rep.max_error < 1e-8
    assert {k: c.entries_checked for k, c in rep.checks.items()} == {"x": 15, "W": 6, "c": 2}


def test_gradcheck_accepts_correct_layer(backend):
    layer = Dense(4, 3, dtype=np.float64, seed=0, backend=backend)
    x = _arrays(backend, 2, x=(5, 4))["x"]
    report = check_layer(layer, x)
    assert set(report.checks) == {"x", "W", "b"}
    assert report.max_error < 1e-8


@pytest.mark.parametrize("bug", ["sign_flip_one_entry", "transposed_factor"])
def test_gradcheck_catches_wrong_gradient(backend, bug):
    step = 1e-5  # not the default, so the message must report the step it used
    inputs = _arrays(backend, 3, X=(4, 3), W=(3, 3))
    X, W = inputs["X"], inputs["W"]
    dy = _arrays(backend, 4, dy=(4, 3))["dy"]

    def backward(g):
        if bug == "sign_flip_one_entry":
            dX = g @ W.T
            dX[1, 2] = -dX[1, 2]
        else:
            dX = g @ W  # should be g @ W.T
        return {"X": dX, "W": X.T @ g}

    report = check_function(lambda: X @ W, backward, inputs, dy=dy, step=step)
    assert not report.ok()
    assert report.checks["W"].error < 1e-8  # the correct tensor passes
    assert report.checks["X"].error > 1e-3

    true_dX = to_host(dy) @ to_host(W).T
    wrong_dX = to_host(backward(dy)["X"])
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(wrong_dX - true_dX)), true_dX.shape))
    if bug == "sign_flip_one_entry":
        assert worst == (1, 2)
    assert report.checks["X"].worst_index == worst

    with pytest.raises(AssertionError) as info:
        report.assert_ok()
    msg = str(info.value)
    assert re.search(r"\bX\b", msg)
    assert not re.search(r"\bW\b", msg), "a passing tensor is reported as failing"
    assert str(worst) in msg
    numbers = _floats_in(msg)
    for value in (wrong_dX[worst], true_dX[worst]):  # analytic and numeric
        assert any(np.isclose(n, value, rtol=1e-6, atol=1e-9) for n in numbers), (value, msg)
    assert step in numbers


def test_gradcheck_catches_ones_blind_bug(backend):
    """y = x @ W. The buggy backward uses row/column means of dy instead of the full
    matrix products; it equals the truth exactly when dy is all ones."""
    xp = get_xp(backend)
    inputs = _arrays(backend, 5, x=(4, 3), W=(3, 5))
    x, W = inputs["x"], inputs["W"]

    def buggy_backward(dy):
        dx = dy.mean(axis=1, keepdims=True) * W.sum(axis=1)[None, :]  # truth: dy @ W.T
        dW = x.sum(axis=0)[:, None] * dy.mean(axis=0)[None, :]  # truth: x.T @ dy
        return {"x": dx, "W": dW}

    ones = xp.ones((4, 5), dtype=np.float64)
    blind = check_function(lambda: x @ W, buggy_backward, inputs, dy=ones)
    assert blind.max_error < 1e-8  # the ones vector hides the bug ...
    blind.assert_ok()

    report = check_function(lambda: x @ W, buggy_backward, inputs)  # ... random dy does not
    assert not report.ok()
    assert report.checks["x"].error > 1e-2 and report.checks["W"].error > 1e-2
    with pytest.raises(AssertionError, match="gradient check failed"):
        report.assert_ok()

    # the default dy is seeded: same seed, same report; another seed, another dy
    again = check_function(lambda: x @ W, buggy_backward, inputs)
    assert again.errors == report.errors
    other = check_function(lambda: x @ W, buggy_backward, inputs, seed=1)
    assert other.errors != report.errors


def test_gradcheck_refuses_float32(backend):
    xp = get_xp(backend)
    a32 = xp.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="float64"):
        check_function(lambda: a32 * 2, lambda dy: {"a": 2 * dy}, {"a": a32})
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: float(a32.sum()), a32)

    a64 = xp.ones((2, 3), dtype=np.float64)
    with pytest.raises(ValueError, match="'dy'.*float32"):
        check_function(lambda: a64 * 2, lambda dy: {"a": 2 * dy}, {"a": a64}, dy=xp.ones((2, 3), dtype=np.float32))

    layer = Dense(3, 2, seed=0, backend=backend)  # float32 by default
    with pytest.raises(ValueError, match="float64"):
        check_layer(layer, xp.ones((4, 3), dtype=np.float32))

    # control: the same float64 function is accepted
    assert check_function(lambda: a64 * 2, lambda dy: {"a": 2 * dy}, {"a": a64}).max_error < 1e-8


def test_numerical_gradient_restores_input(backend):
    xp = get_xp(backend)
    host = np.random.default_rng(6).uniform(-3, 3, size=(4, 5))
    host[0, 0], host[0, 1], host[0, 2] = 0.1, 1e-20, -0.0
    # control: a naive "add h, then subtract h" restore would not be exact for some entries
    assert np.any((host + DEFAULT_STEP) - DEFAULT_STEP != host)
    a = to_device(host.copy(), backend)
    before = to_host(a).tobytes()
    original = host.copy()
    changed_per_call = []

    def loss():
        now = to_host(a)
        changed_per_call.append(int(np.sum(now != original)))
        return xp.sum(a**3)

    num = numerical_gradient(loss, a)
    assert to_host(a).tobytes() == before  # bit for bit, -0.0 included
    assert np.signbit(to_host(a)[0, 2])
    assert isinstance(num, np.ndarray) and num.shape == (4, 5)
    np.testing.assert_allclose(num, 3 * host**2, rtol=1e-6, atol=1e-8)
    # it perturbed the caller's array in place, one entry at a time
    assert len(changed_per_call) == 2 * host.size
    assert all(c == 1 for c in changed_per_call)

    # a subset of indices: NaN elsewhere, input still restored
    part = numerical_gradient(lambda: xp.sum(a**3), a, indices=[3, 7])
    assert to_host(a).tobytes() == before
    flat = part.reshape(-1)
    assert np.isnan(np.delete(flat, [3, 7])).all()
    np.testing.assert_allclose(flat[[3, 7]], 3 * host.reshape(-1)[[3, 7]] ** 2, rtol=1e-6)

    # check_function leaves every input as it found it
    inputs = _arrays(backend, 7, p=(3, 3), q=(3,))
    saved = {k: to_host(v).tobytes() for k, v in inputs.items()}
    p, q = inputs["p"], inputs["q"]
    check_function(lambda: xp.exp(p) * q, lambda dy: {"p": dy * xp.exp(p) * q, "q": (dy * xp.exp(p)).sum(0)}, inputs)
    assert {k: to_host(v).tobytes() for k, v in inputs.items()} == saved

    # an array it cannot perturb in place is refused
    with pytest.raises(ValueError, match="C-contiguous"):
        numerical_gradient(lambda: 0.0, to_device(host, backend).T)


def test_max_entries_subset(backend):
    inputs = _arrays(backend, 8, a=(6, 7), b=(6, 7))
    a, b = inputs["a"], inputs["b"]
    snap = {k: to_host(v).copy() for k, v in inputs.items()}
    perturbed = {"a": [], "b": []}

    def forward():
        for k, arr in (("a", a), ("b", b)):
            diff = np.flatnonzero(to_host(arr) != snap[k])
            perturbed[k].extend(int(i) for i in diff)
        return a * b

    def backward(dy):
        return {"a": dy * b, "b": dy * a}

    report = check_function(forward, backward, inputs, max_entries=5)
    for k in ("a", "b"):
        assert report.checks[k].entries_checked == 5
        touched = set(perturbed[k])
        assert len(touched) == 5, touched  # exactly five distinct entries were perturbed
        assert len(perturbed[k]) == 10  # each twice (+h and -h)
        assert np.ravel_multi_index(report.checks[k].worst_index, (6, 7)) in touched
    assert report.max_error < 1e-8
    assert "5 entries checked" in _failing_message(report)

    # the subset is random but seeded: same seed, same entries; another seed, others
    first_a = set(perturbed["a"])
    perturbed = {"a": [], "b": []}
    check_function(forward, backward, inputs, max_entries=5)
    assert set(perturbed["a"]) == first_a
    perturbed = {"a": [], "b": []}
    check_function(forward, backward, inputs, max_entries=5, seed=3)
    assert set(perturbed["a"]) != first_a

    # max_entries at or above the size, or None, checks everything
    for limit in (42, 1000, None):
        perturbed = {"a": [], "b": []}
        rep = check_function(forward, backward, inputs, max_entries=limit)
        assert {k: c.entries_checked for k, c in rep.checks.items()} == {"a": 42, "b": 42}
        assert set(perturbed["a"]) == set(range(42)) and set(perturbed["b"]) == set(range(42))

    # a wrong entry outside the checked subset goes unseen; inside it, it is caught
    def backward_bad_at(flat_index):
        def bw(dy):
            g = dy * b
            g.reshape(-1)[flat_index] += 1.0
            return {"a": g}
        return bw

    perturbed = {"a": [], "b": []}
    check_function(forward, backward, inputs, max_entries=5)
    checked = sorted(set(perturbed["a"]))
    unchecked = sorted(set(range(42)) - set(checked))
    inside = check_function(forward, backward_bad_at(checked[0]), inputs, max_entries=5)
    outside = check_function(forward, backward_bad_at(unchecked[0]), inputs, max_entries=5)
    assert not inside.ok()
    assert np.ravel_multi_index(inside.checks["a"].worst_index, (6, 7)) == checked[0]
    assert outside.ok()
    for k, v in inputs.items():
        np.testing.assert_array_equal(to_host(v), snap[k])


def test_gradcheck_nan_gradient_fails():
    """A NaN gradient must fail the check whatever tensor it is in and in whatever order."""
    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    w = np.linspace(0.5, 1.5, 6).reshape(2, 3)
    for nan_in in ("x", "w"):
        def backward(dy, nan_in=nan_in):
            grads = {"x": dy * w, "w": dy * x}
            grads[nan_in] = grads[nan_in].copy()
            grads[nan_in][0, 1] = np.nan
            return grads

        report = check_function(lambda: x * w, backward, {"x": x, "w": w})
        assert np.isnan(report.checks[nan_in].error)
        assert not report.ok()
        assert np.isnan(report.max_error)
        with pytest.raises(AssertionError, match=nan_in):
            report.assert_ok()

    # and a report built by hand, with the NaN tensor after a passing one
    r = GradCheckReport()
    r.checks["good"] = TensorCheck("good", 0.0, (0,), 1.0, 1.0, 1)
    r.checks["bad"] = TensorCheck("bad", float("nan"), (0,), float("nan"), 1.0, 1)
    assert not r.ok()
    with pytest.raises(AssertionError, match="bad"):
        r.assert_ok()


def _failing_message(report):
    """assert_ok's message at a tolerance every tensor fails (to read what it reports)."""
    with pytest.raises(AssertionError) as info:
        report.assert_ok(tol=-1.0)
    return str(info.value)


def test_report_tolerance():
    r = GradCheckReport(step=1e-6)
    r.checks["a"] = TensorCheck("a", 3e-9, (0, 1), 1.0, 1.0, 4)
    r.checks["b"] = TensorCheck("b", 2e-7, (2,), 0.5, 0.5000001, 3)
    assert r.max_error == 2e-7
    assert r.errors == {"a": 3e-9, "b": 2e-7}
    assert r.ok()  # default tolerance 1e-6
    r.assert_ok()
    assert r.ok(tol=2e-7)  # the bound is inclusive
    assert not r.ok(tol=1e-7)
    with pytest.raises(AssertionError) as info:
        r.assert_ok(tol=1e-7)
    msg = str(info.value)
    assert "b" in msg and "(2,)" in msg and not re.search(r"\ba:", msg)
    assert not r.ok(tol=1e-9)
    assert GradCheckReport().max_error == 0.0 and GradCheckReport().ok()
