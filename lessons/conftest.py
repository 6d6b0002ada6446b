"""Lessons run as doctests (``pytest lessons``): every ``>>>`` line executes in order,
and its printed output must match the text. They run from the repository root and
find MNIST through ``SCRATCHVAE_DATA`` or scratchvae's usual sources; the shared
copy beside the repository is used when present, so CI needs no network."""
import os
from pathlib import Path

import pytest

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def _lesson_environment(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    if "SCRATCHVAE_DATA" not in os.environ and SHARED_MNIST.is_dir():
        monkeypatch.setenv("SCRATCHVAE_DATA", str(SHARED_MNIST))
