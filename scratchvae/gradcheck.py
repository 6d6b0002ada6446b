"""Finite-difference gradient checks, in float64, for layers and for any function of arrays.

The scalar being differentiated is ``L = sum(y * dy)`` for a fixed random
upstream gradient ``dy`` (never all ones: a ones vector hides transposition
and broadcasting bugs). Its exact gradient with respect to any input ``a`` is
what a backward pass returns when fed ``dy``. Each entry is compared with the
central difference

    dL/da_i  ~  (L(a + h e_i) - L(a - h e_i)) / (2 h),

whose truncation error is O(h^2) and whose rounding error is about
eps_machine * |L| / h. With float64 (eps_machine ~ 2.2e-16) and the default
h = 1e-6 both stay near 1e-10 for the O(1) values used in tests, far below the
1e-6 tolerance; float32 would drown the difference in rounding noise, so the
checks refuse it.

The error reported for a tensor is the largest absolute difference divided by
the largest gradient magnitude in that tensor:

    err = max_i |a_i - n_i| / max(max_i |a_i|, max_i |n_i|, 1e-12)

An entrywise relative error would be meaningless where a true gradient is 0
(a dead ReLU, a zero-padded border); scaling by the tensor keeps a wrong entry
visible without dividing by zero. Derivation and use: docs/gradcheck.md.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .backend import get_array_module, to_host
from .layers.base import iter_layers

DEFAULT_STEP = 1e-6
DEFAULT_TOLERANCE = 1e-6


@dataclass
class TensorCheck:
    """Result for one tensor: the error and the worst entry."""

    name: str
    error: float
    worst_index: tuple
    analytic: float
    numeric: float
    entries_checked: int


@dataclass
class GradCheckReport:
    """All tensors of one check; ``max_error`` is the worst of them."""

    checks: dict = field(default_factory=dict)
    step: float = DEFAULT_STEP

    @property
    def max_error(self) -> float:
        # np.max, not max(): a NaN error must propagate wherever it sits
        return float(np.max([c.error for c in self.checks.values()], initial=0.0))

    @property
    def errors(self) -> dict:
        return {name: c.error for name, c in self.checks.items()}

    def ok(self, tol: float = DEFAULT_TOLERANCE) -> bool:
        return self.max_error <= tol

    def assert_ok(self, tol: float = DEFAULT_TOLERANCE):
        """Raise ``AssertionError`` naming the tensor, index, both values and the step."""
        bad = [c for c in self.checks.values() if not c.error <= tol]
        if bad:
            lines = [
                f"{c.name}: error {c.error:.3g} > {tol:g} at index {c.worst_index}: "
                f"analytic {c.analytic:.10g}, numeric {c.numeric:.10g} (h={self.step:g}, "
                f"{c.entries_checked} entries checked)"
                for c in bad
            ]
            raise AssertionError("gradient check failed\n  " + "\n  ".join(lines))

    def __str__(self) -> str:
        rows = [f"{name:>16s}  {c.error:.2e}" for name, c in self.checks.items()]
        return "max relative error per tensor\n" + "\n".join(rows)


def _require_float64(name, a):
    if np.dtype(a.dtype) != np.float64:
        raise ValueError(
            f"gradient check needs float64 arrays, {name!r} is {a.dtype}: "
            "build layers with dtype=np.float64 and cast inputs with .astype(np.float64)"
        )


def _entries(shape, max_entries, rng):
    """All flat indices, or a random subset of ``max_entries`` of them."""
    size = int(np.prod(shape))
    if max_entries is None or max_entries >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_entries, replace=False))


def numerical_gradient(loss, array, step=DEFAULT_STEP, indices=None):
    """Central-difference gradient of ``loss()`` with respect to ``array``.

    ``array`` is perturbed in place one entry at a time and restored exactly,
    so ``loss`` must read it (not a copy). Returns a host array of the same
    shape, filled at ``indices`` (flat; all entries by default) and NaN elsewhere.
    """
    _require_float64("array", array)
    if not array.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous array it can perturb in place")
    flat = array.reshape(-1)  # a view, so writing into it perturbs ``array``
    indices = np.arange(array.size) if indices is None else np.asarray(indices)
    out = np.full(array.size, np.nan)
    for i in indices:
        i = int(i)
        original = flat[i].item()
        try:
            flat[i] = original + step
            up = float(loss())
            flat[i] = original - step
            down = float(loss())
        finally:
            flat[i] = original
        out[i] = (up - down) / (2 * step)
    return out.reshape(array.shape)


def compare(name, analytic, numeric, indices):
    a = to_host(analytic).reshape(-1)[indices].astype(np.float64)
    n = numeric.reshape(-1)[indices]
    diff = np.abs(a - n)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0), 1e-12)
    worst = int(np.argmax(diff)) if diff.size else 0
    flat_index = int(indices[worst]) if diff.size else 0
    return TensorCheck(
        name=name,
        error=float(diff.max(initial=0.0) / scale),
        worst_index=tuple(int(i) for i in np.unravel_index(flat_index, analytic.shape)),
        analytic=float(a[worst]) if diff.size else 0.0,
        numeric=float(n[worst]) if diff.size else 0.0,
        entries_checked=int(len(indices)),
    )


def check_function(forward, backward, inputs, dy=None, seed=0, step=DEFAULT_STEP, max_entries=None):
    """Check a hand-written backward against finite differences.

    Parameters
    ----------
    forward : callable ``() -> y``; must read the arrays in ``inputs`` each call
    backward : callable ``dy -> {name: gradient}``, for the names to check
    inputs : {name: float64 array}, perturbed in place and restored
    dy : upstream gradient, same shape as ``y``; default: seeded standard normal
    max_entries : check at most this many random entries per tensor (all if None)

    Returns
    -------
    GradCheckReport
    """
    for name, a in inputs.items():
        _require_float64(name, a)
    rng = np.random.default_rng(seed)
    y = forward()
    xp = get_array_module(y)
    if dy is None:
        dy = xp.asarray(rng.standard_normal(y.shape))
    _require_float64("dy", dy)
    analytic = {k: xp.array(g, copy=True) for k, g in backward(dy).items()}

    def loss():
        return xp.sum(forward() * dy)

    report = GradCheckReport(step=step)
    for name, g in analytic.items():
        if name not in inputs:
            raise KeyError(f"backward returned a gradient for {name!r}, which is not an input")
        if g.shape != inputs[name].shape:
            raise ValueError(f"gradient {name!r} has shape {g.shape}, input has {inputs[name].shape}")
        idx = _entries(g.shape, max_entries, rng)
        numeric = numerical_gradient(loss, inputs[name], step, idx)
        report.checks[name] = compare(name, g, numeric, idx)
    return report


def check_layer(layer, x, dy=None, training=True, seed=0, step=DEFAULT_STEP, max_entries=None):
    """Check a layer's input gradient and every parameter gradient.

    The layer and ``x`` must be float64. The layer must be deterministic for a
    fixed input in the chosen mode (Dropout is, with ``training=False``; check
    its training mode through ``functional.dropout_forward`` with a fixed mask).

    Returns a ``GradCheckReport`` with entries ``"x"`` and every parameter name.
    """
    inputs = {"x": x, **layer.params}

    def forward():
        return layer.forward(x, training=training)

    def backward(g):
        dx = layer.backward(g)
        return {"x": dx, **layer.grads}

    return check_function(forward, backward, inputs, dy=dy, seed=seed, step=step, max_entries=max_entries)


@contextmanager
def frozen_patterns(model):
    """Within the block, piecewise-linear activations (ReLU, LeakyReLU) and Dropout
    reuse the on/off pattern of the first forward pass made inside the block.

    The loss is then a smooth function near the checked point with the same
    gradient there, so a finite-difference step that would cross a ReLU kink (or
    redraw a dropout mask) no longer spoils the comparison. This is "stay away
    from the kinks" for whole models, where no input can keep every unit away.
    """
    layers = [layer for layer in iter_layers(model) if hasattr(type(layer), "freeze_pattern")]
    for layer in layers:
        layer._cache, layer._out_shape = None, None
        layer.freeze_pattern = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.freeze_pattern = False
