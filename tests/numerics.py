"""Shared test helper: run a block with floating-point errors turned into exceptions."""
import contextlib
import sys
import warnings

import numpy as np


def _numpy_computes(backend):
    """True where NumPy does the arithmetic: the numpy backend, and the cupy backend when
    tests/cupy_standin.py's NumPy-backed stand-in is installed as ``cupy``."""
    if backend == "numpy":
        return True
    return type(sys.modules.get("cupy")).__name__ == "Standin"


@contextlib.contextmanager
def strict_floats(backend):
    """Where NumPy computes (the numpy backend, or the CuPy stand-in): overflow, invalid
    operations and division by zero raise, and any warning is an error. Underflow to 0
    (exp(-1e4) in a saturated softplus or sigmoid) is the intended saturation; NumPy does not
    warn about it by default, so it stays ignored.

    On a real GPU it checks nothing: CUDA kernels have no floating-point traps and CuPy
    exposes no IEEE exception flags, so an overflow there is silent. There the tests' own
    finiteness assertions on the results are the check, and the stand-in run proves that the
    same operations raise nothing when NumPy does them."""
    if not _numpy_computes(backend):
        yield
        return
    with np.errstate(all="raise", under="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
