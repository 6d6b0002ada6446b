"""Where the tests (and the lessons) find MNIST: where ``python -m scratchvae.train`` looks,
then the CI copy, then a download through scratchvae's own loader.

In order: ``SCRATCHVAE_DATA`` and the user cache (scratchvae's ``locate``, without
downloading); the copy beside the repository, ``../shared/data/mnist``, for CI (the
variable ``SCRATCHVAE_TEST_SHARED_MNIST`` names another folder instead, or, set empty,
hides it); then ``locate`` with downloading, into the user cache. ``mnist_dir()`` resolves
once per process, when the first test that needs MNIST asks (never at collection), and
under the environment the process started with, so a test that has monkeypatched
``XDG_CACHE_HOME`` cannot send the download into its tmp_path. When every way fails the
test skips with one line that says how to enable it.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

import pytest

from scratchvae.data import DataNotFoundError, locate
from scratchvae.data.sources import missing_files

SHARED_VARIABLE = "SCRATCHVAE_TEST_SHARED_MNIST"
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
ENABLE = "run `python -m scratchvae.data download` to enable the tests that need it"
# what locate() and shared_mnist() read, as they were when the test process started
_STARTING_ENVIRONMENT = {name: os.environ.get(name) for name in
                         ("SCRATCHVAE_DATA", "XDG_CACHE_HOME", "HOME", "LOCALAPPDATA", SHARED_VARIABLE)}


def shared_mnist():
    """The CI copy's folder, or None where ``SCRATCHVAE_TEST_SHARED_MNIST`` is set empty."""
    value = os.environ.get(SHARED_VARIABLE)
    if value is None:
        return SHARED_MNIST
    return Path(value) if value else None


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


def find_mnist():
    """``(folder, "")`` or ``(None, reason)``, looked up now, in the current environment."""
    why = []
    try:
        return locate("mnist", download=False), ""
    except DataNotFoundError as exc:
        if os.environ.get("SCRATCHVAE_DATA"):  # else the download's error says the cache lacks it
            why.append(_one_line(exc))
    shared = shared_mnist()
    if shared is not None:
        missing = missing_files(shared)
        if not missing:
            return shared, ""
        why.append(f"the CI copy {shared} lacks {', '.join(missing)}")
    if not os.environ.get("SCRATCHVAE_DATA"):  # locate never downloads into an explicit folder
        try:
            return locate("mnist", download=True), ""
        except DataNotFoundError as exc:
            why.append(_one_line(exc).split(". To place the files by hand", 1)[0])
    return None, f"MNIST unavailable; {ENABLE} ({'; '.join(why)})"


def _set_environment(values):
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def _starting_environment():
    """The variables that locate the data as they were at import; the current ones after."""
    now = {name: os.environ.get(name) for name in _STARTING_ENVIRONMENT}
    _set_environment(_STARTING_ENVIRONMENT)
    try:
        yield
    finally:
        _set_environment(now)


@functools.lru_cache(maxsize=None)
def mnist_dir_or_reason():
    """``(Path, "")`` or ``(None, one-line reason)``: ``find_mnist()`` once per process, in the
    starting environment. Never skips (for ``lessons/conftest.py``)."""
    with _starting_environment():
        return find_mnist()


def mnist_dir() -> Path:
    """The MNIST folder for a test; skips the test, saying how to enable it, where there is none."""
    folder, reason = mnist_dir_or_reason()
    if folder is None:
        pytest.skip(reason)
    return folder
