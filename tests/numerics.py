"""Shared test helper: run a block with floating-point errors turned into exceptions."""
import contextlib
import warnings

import numpy as np


@contextlib.contextmanager
def strict_floats(backend):
    """On NumPy: overflow, invalid operations and division by zero raise, and any warning
    is an error. Underflow to 0 (exp(-1e4) in a saturated softplus or sigmoid) is the
    intended saturation; NumPy does not warn about it by default, so it stays ignored."""
    if backend != "numpy":
        yield
        return
    with np.errstate(all="raise", under="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
