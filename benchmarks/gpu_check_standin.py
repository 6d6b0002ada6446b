"""Rehearse benchmarks/gpu_check.py's cupy code paths on the CPU (``gpu_check.py --standin``).

tests/cupy_standin.py's strict NumPy-backed stand-in for CuPy (its namespace and signatures
read from the installed CuPy wheel, which imports without a GPU), plus the few CUDA objects
the check itself calls and the stand-in does not emulate: a stream to synchronize
(``cuda.Stream``, ``cuda.get_current_stream``), the memory pool (``get_default_memory_pool``,
whose counts here are zeros) and ``cuda.MemoryHook`` (CuPy's own class). Each is added only
where the installed CuPy has it under that name. An API-surface rehearsal, never GPU
verification: nothing runs on a GPU and no number it prints describes one.

    python benchmarks/gpu_check_standin.py MODULE ARGS...   # python -m MODULE ARGS, on the stand-in
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


class _Stream:
    """A stream whose work is always done (NumPy computes eagerly)."""

    def synchronize(self):
        return None


_Stream.null = _Stream()


class _MemoryPool:
    """CuPy's pool interface (the calls gpu_check makes); no device memory exists here."""

    def free_all_blocks(self, stream=None):
        return None

    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0


def install():
    """Put the stand-in in ``sys.modules["cupy"]`` (before anything imports CuPy); return it."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import cupy_standin

    real = cupy_standin.real_cupy()
    if real is None:
        raise SystemExit(f"error: --standin: {cupy_standin.SKIP_REASON}")
    standin = cupy_standin.Standin(real)
    pool = _MemoryPool()
    extra_cuda = dict(Stream=_Stream, get_current_stream=lambda: _Stream.null, MemoryHook=real.cuda.MemoryHook)
    for name, value in extra_cuda.items():
        if hasattr(real.cuda, name):  # never a name the real CuPy lacks
            setattr(standin.cuda, name, value)
    if hasattr(real, "get_default_memory_pool"):
        standin.get_default_memory_pool = lambda: pool
    sys.modules["cupy"] = standin
    return standin


if __name__ == "__main__":
    install()
    module = sys.argv[1]
    sys.argv = [module] + sys.argv[2:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
