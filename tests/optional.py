"""The optional dependencies some tests compare against, imported or skipped with how to get them."""
import pytest

TORCH_REASON = ("PyTorch is not installed; it is an optional outside reference, used by these tests "
                "and benchmarks/ only: pip install torch (the CPU build is enough)")


def torch_or_skip():
    """``import torch``, or skip the test saying how to install it."""
    return pytest.importorskip("torch", reason=TORCH_REASON)
