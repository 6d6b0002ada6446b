"""``check(name, forward=..., backward=...)``: grade a learner's forward/backward pair.

Parts, each reported on its own:

* forward: equals the exercise's definition (``definitions.py``) on ``shapes`` drawn cases,
  float64, every axis a different size;
* backward dX, one per gradient: equals the central finite differences of the learner's own
  forward (never the engine's backward) for a random upstream gradient, float64, at up to
  ``MAX_ENTRIES`` random entries of each input, with ``scratchvae.gradcheck``'s step and
  error measure;
* inputs unchanged: neither function writes into its arguments or the upstream gradient;
* float32: float32 inputs give float32 results that agree with the float64 ones;
* batch of one: forward and backward on N = 1;
* one part per numerical safeguard of the exercise (overflow, log(0), division by zero,
  each of which raises here instead of warning).
"""
from __future__ import annotations

import numpy as np

from ..gradcheck import DEFAULT_STEP, DEFAULT_TOLERANCE, compare, numerical_gradient
from . import hints
from .catalog import exercise
from .learner_code import LearnerError, call
from .report import Part, Result

FORWARD_TOLERANCE = 1e-8  # float64 against the definition: rounding only
BACKWARD_TOLERANCE = DEFAULT_TOLERANCE  # a right backward reaches ~1e-9 (docs/gradcheck.md)
FLOAT32_TOLERANCE = 1e-4  # float32 against float64, relative to each array's largest entry
SAFEGUARD_TOLERANCE = 1e-6
MAX_ENTRIES = 30
SIZES = np.arange(2, 8)  # axis sizes are drawn without replacement from these


def check(name, forward, backward, *, shapes=3, seed=0, source=""):
    """Grade ``forward``/``backward`` as exercise ``name``; returns a ``Result``.

    ``shapes`` cases are drawn by a generator seeded with ``seed``; the same seed gives the
    same cases and the same report.
    """
    spec = exercise(name)
    grader = _Grader(spec, forward, backward, seed)
    result = Result(name, source=source)
    rng = np.random.default_rng(seed)
    cases = [_distinct_case(spec, rng, k) for k in range(shapes)]
    single = spec.make(rng, 1, [int(v) for v in rng.permutation(SIZES)], shapes)
    # forward and backward must run before anything else can be judged; an error there ends
    # the grading. The later parts fail one by one.
    for k, stage in enumerate([lambda: [grader.forward_part(cases)],
                               lambda: grader.backward_parts(cases)]):
        try:
            result.parts += stage()
        except LearnerError as exc:
            result.not_written = exc.not_written
            result.parts.append(Part(_STAGE_TITLES[k], False, [str(exc)]))
            result.parts += [Part(t, None, ["not run: fix the error above first"])
                             for t in _STAGE_TITLES[k + 1:]]
            return result
    for title, part in [("inputs unchanged", lambda: grader.unchanged_part(cases[0])),
                        ("float32", lambda: grader.float32_part(cases[0])),
                        ("batch of one", lambda: grader.single_part(single))]:
        try:
            result.parts.append(part())
        except LearnerError as exc:
            result.parts.append(Part(title, False, [str(exc)]))
    result.parts += [grader.safeguard_part(s) for s in spec.safeguards]
    return result


_STAGE_TITLES = ("forward", "backward", "inputs unchanged", "float32", "batch of one")


def _distinct_case(spec, rng, k):
    sizes = [int(v) for v in rng.permutation(SIZES)]
    return spec.make(rng, sizes[0], sizes[1:], k)


def _float64(args):
    return {k: np.array(v, dtype=np.float64, order="C") if _is_float(v) else v
            for k, v in args.items()}


def _is_float(v):
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def _shape(a):
    return tuple(getattr(a, "shape", ()))


def _describe_case(case):
    shapes = ", ".join(f"{k} {_shape(v)}" for k, v in case.args.items() if isinstance(v, np.ndarray))
    others = ", ".join(f"{k}={v}" for k, v in case.args.items() if not isinstance(v, np.ndarray))
    return f"on {shapes}" + (f", {others}" if others else "")


class _Grader:
    def __init__(self, spec, forward, backward, seed):
        self.spec, self.fwd, self.bwd = spec, forward, backward
        self.fname = getattr(forward, "__name__", "forward")
        self.bname = getattr(backward, "__name__", "backward")
        self.rng = np.random.default_rng(seed + 1)

    # -- calling the learner's code ------------------------------------------------
    def forward(self, args):
        result = call(self.fwd, self.fname, *args.values())
        if not (isinstance(result, tuple) and len(result) == 2):
            raise LearnerError(f"{self.fname} must return (out, cache), a pair; it returned "
                               f"{_kind(result)}")
        out = result[0]
        if not isinstance(out, np.ndarray):
            raise LearnerError(f"{self.fname}: out must be a NumPy array, got {_kind(out)}")
        return result

    def backward(self, dy, cache, wrt):
        grads = call(self.bwd, self.bname, dy, cache)
        if len(wrt) == 1 and not isinstance(grads, (tuple, list)):
            grads = (grads,)
        names = ", ".join("d" + w for w in wrt)
        if not isinstance(grads, (tuple, list)) or len(grads) != len(wrt):
            got = len(grads) if isinstance(grads, (tuple, list)) else 1
            raise LearnerError(f"{self.bname} must return {names}: {len(wrt)} array(s), it "
                               f"returned {got}")
        for w, g in zip(wrt, grads):
            if not isinstance(g, np.ndarray):
                raise LearnerError(f"{self.bname}: d{w} must be a NumPy array, got {_kind(g)}")
        return tuple(grads)

    # -- the parts -----------------------------------------------------------------
    def forward_part(self, cases, title="forward"):
        worst = 0.0
        for case in cases:
            args = _float64(case.args)
            out, _ = self.forward(args)
            right = self.spec.definition(*_float64(case.args).values())
            problem = self._compare_forward(out, right, case)
            if problem:
                return Part(title, False, problem)
            worst = max(worst, compare("y", out, right, np.arange(right.size)).error)
        return Part(title, True, [f"equals the definition on {len(cases)} shape(s) (relative "
                                  f"error {worst:.1e}, limit {FORWARD_TOLERANCE:g})"])

    def _compare_forward(self, out, right, case):
        where = _describe_case(case)
        if out.shape != right.shape:
            hint = hints.shape_hint("out", out, right, np.arange(right.size), case.sizes)
            return [f"wrong shape {where}: yours {out.shape}, expected {right.shape}"] + (
                [f"hint: {hint}"] if hint else [])
        c = compare("out", out, right, np.arange(right.size))
        if not c.error <= FORWARD_TOLERANCE:
            lines = [f"relative error {c.error:.2g} {where}",
                     f"worst at index {c.worst_index}: yours {c.analytic:.6g}, the definition "
                     f"{c.numeric:.6g}"]
            flat = np.asarray(out, float).ravel()
            hint = (hints.value_hint("out", flat, right.ravel(), case.sizes, self.spec.factor_hints)
                    or hints.offset_hint("out", flat, right.ravel()))
            return lines + ([f"hint: {hint}"] if hint else [])
        return None

    def _gradients(self, case):
        """Per input of ``case.wrt``: None or the failure lines, and the error reached."""
        args = _float64(case.args)
        out, cache = self.forward(args)
        dy = self.rng.standard_normal(out.shape)
        grads = self.backward(dy.copy(), cache, case.wrt)
        out_of = {}
        for w, g in zip(case.wrt, grads):
            x = args[w]
            idx = np.sort(self.rng.permutation(x.size)[:MAX_ENTRIES])

            def loss():
                return float(np.sum(self.forward(args)[0] * dy))

            numeric = numerical_gradient(loss, x, DEFAULT_STEP, idx)
            out_of[w] = self._judge(w, g, numeric, idx, case, dy, args)
        return out_of

    def _judge(self, w, g, numeric, idx, case, dy, args):
        where, name = _describe_case(case), "d" + w
        if g.shape != numeric.shape:
            hint = hints.shape_hint(name, g, numeric, idx, case.sizes)
            return [f"wrong shape {where}: yours {g.shape}, expected {numeric.shape} (the "
                    f"shape of {w})"] + ([f"hint: {hint}"] if hint else []), np.inf
        c = compare(name, g, numeric, idx)
        if c.error <= BACKWARD_TOLERANCE:
            return None, c.error
        lines = [f"relative error {c.error:.2g} {where} (limit {BACKWARD_TOLERANCE:g}; a right "
                 "backward reaches about 1e-9)",
                 f"worst at index {c.worst_index}: yours {c.analytic:.6g}, finite differences of "
                 f"your forward {c.numeric:.6g}"]
        hint = self._hint(name, g, numeric, idx, case, dy, args)
        return lines + ([f"hint: {hint}"] if hint else []), c.error

    def _hint(self, name, g, numeric, idx, case, dy, args):
        flat_g = np.asarray(g, float).reshape(-1)[idx]
        other = self.rng.standard_normal(dy.shape)
        fresh = _float64(case.args)
        again = self.backward(other, self.forward(fresh)[1], case.wrt)[case.wrt.index(name[1:])]
        if np.array_equal(again, g):
            return hints.ignores_upstream(name)
        if self.spec.elementwise and g.shape == dy.shape and np.allclose(g, dy, rtol=1e-12):
            return hints.missing_derivative(name)
        return hints.value_hint(name, flat_g, numeric.reshape(-1)[idx], case.sizes,
                                self.spec.factor_hints)

    def backward_parts(self, cases, prefix="backward "):
        failures, worst = {}, {}
        for case in cases:
            for w, (lines, error) in self._gradients(case).items():
                worst[w] = max(worst.get(w, 0.0), error)
                if lines and w not in failures:
                    failures[w] = lines
        return [Part(prefix + "d" + w, False, failures[w]) if w in failures else
                Part(prefix + "d" + w, True, [f"equals finite differences of your forward on "
                                              f"{len(cases)} shape(s) (relative error "
                                              f"{worst[w]:.1e})"])
                for w in cases[0].wrt]

    def unchanged_part(self, case):
        args = _float64(case.args)
        before = {k: np.copy(v) for k, v in args.items() if isinstance(v, np.ndarray)}
        out, cache = self.forward(args)
        changed = [k for k, v in before.items() if not np.array_equal(v, args[k], equal_nan=True)]
        if changed:
            return Part("inputs unchanged", False, [
                f"{self.fname} changed {', '.join(changed)} in place",
                "hint: x[...] = , x += or np.maximum(x, 0, out=x) write into the caller's array; "
                "compute into a new one"])
        dy = self.rng.standard_normal(out.shape)
        dy_before = dy.copy()
        self.backward(dy, cache, case.wrt)
        changed = [k for k, v in before.items() if not np.array_equal(v, args[k], equal_nan=True)]
        changed += ["the upstream gradient"] if not np.array_equal(dy, dy_before) else []
        if changed:
            return Part("inputs unchanged", False, [
                f"{self.bname} changed {', '.join(changed)} in place",
                "hint: dy *= ... or dy[mask] = 0 write into the caller's array; "
                "compute into a new one"])
        return Part("inputs unchanged", True, ["forward and backward leave their arguments alone"])

    def float32_part(self, case):
        args64 = _float64(case.args)
        args32 = {k: v.astype(np.float32) if _is_float(v) else v for k, v in args64.items()}
        out64, cache64 = self.forward(args64)
        out32, cache32 = self.forward(args32)
        dy = self.rng.standard_normal(out64.shape)
        grads64 = self.backward(dy, cache64, case.wrt)
        grads32 = self.backward(dy.astype(np.float32), cache32, case.wrt)
        for name, a32, a64 in [("out", out32, out64)] + [
                ("d" + w, g32, g64) for w, g32, g64 in zip(case.wrt, grads32, grads64)]:
            if a32.dtype != np.float32:
                return Part("float32", False, [
                    f"{name} is {a32.dtype} for float32 inputs: training runs in float32",
                    "hint: a float64 array (np.zeros(shape) without dtype=) or NumPy scalar "
                    "(np.log(2 * np.pi * c); math.log gives a Python float) mixed in"])
            if a32.shape != a64.shape:
                return Part("float32", False, [f"{name} has shape {a32.shape} in float32, "
                                               f"{a64.shape} in float64"])
            c = compare(name, a32, a64, np.arange(a64.size))
            if not c.error <= FLOAT32_TOLERANCE:
                return Part("float32", False, [
                    f"{name} in float32 differs from float64 by {c.error:.2g} (limit "
                    f"{FLOAT32_TOLERANCE:g}) at index {c.worst_index}: {c.analytic:.6g} against "
                    f"{c.numeric:.6g}"])
        return Part("float32", True, ["float32 in, float32 out, agreeing with float64"])

    def single_part(self, case):
        forward = self.forward_part([case], "batch of one")
        if not forward.passed:
            return forward
        broken = [p for p in self.backward_parts([case], "batch of one ") if not p.passed]
        if broken:
            return Part("batch of one", False, [f"{broken[0].title[13:]}: {broken[0].lines[0]}",
                                                *broken[0].lines[1:]])
        return Part("batch of one", True, ["forward and backward right for N = 1"])

    def safeguard_part(self, safeguard):
        title = "safeguard: " + safeguard.title.split(":")[0]
        base = safeguard.make(np.random.default_rng(0))
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise"):
                for dtype in (np.float64, np.float32):
                    args = {k: v.astype(dtype) if _is_float(v) else v for k, v in base.args.items()}
                    out, cache = self.forward(args)
                    grads = self.backward(np.ones_like(out), cache, base.wrt)
                    for name, a in [("out", out)] + [("d" + w, g) for w, g in zip(base.wrt, grads)]:
                        if not np.all(np.isfinite(a)):
                            return Part(title, False, [f"{name} is not finite in {np.dtype(dtype)}",
                                                       f"inputs: {safeguard.title}"])
                    if safeguard.reference is not None and dtype == np.float64:
                        right = safeguard.reference(*base.args.values())
                        c = compare("out", out, right, np.arange(right.size))
                        if not c.error <= SAFEGUARD_TOLERANCE:
                            return Part(title, False, [
                                f"out is wrong at index {c.worst_index}: yours {c.analytic:.6g}, "
                                f"right {c.numeric:.6g}", f"inputs: {safeguard.title}"])
        except LearnerError as exc:
            return Part(title, False, [str(exc), f"inputs: {safeguard.title}"])
        return Part(title, True, [f"finite and right for {safeguard.title.split(': ', 1)[1]}"])


def _kind(value):
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"
