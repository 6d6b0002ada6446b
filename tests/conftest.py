"""Shared fixtures: the backend under test, and hypothesis profiles.

Every test that takes the ``backend`` (or ``xp``) fixture runs once per
selected backend. ``--backend`` picks them: ``numpy``, ``cupy`` or ``all``
(default). Cupy cases skip, saying why, where CuPy or a GPU is missing (the
backend's health check gives the reason).

``--cupy-standin`` (an API-surface check without a GPU, never GPU verification) puts
tests/cupy_standin.py's strict NumPy-backed stand-in for CuPy in ``sys.modules["cupy"]``
and keeps only the tests that take a backend: with ``--backend cupy`` they run against
CuPy's real namespace and signatures. tests/test_cupy_surface.py runs it that way.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from scratchvae.backend import cupy_available, get_xp

settings.register_profile(
    "ci", deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    # on CI (CI=true) the same examples every run, so a landing never depends on luck;
    # locally each run explores new ones (HYPOTHESIS_PROFILE=thorough for 300 per test)
    derandomize=bool(os.environ.get("CI")),
)
settings.register_profile(
    "thorough", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        choices=("numpy", "cupy", "all"),
        default="all",
        help="array backend(s) to test: numpy, cupy or all (default; cupy skips without a GPU)",
    )
    parser.addoption(
        "--cupy-standin", action="store_true",
        help="run the backend tests against a strict NumPy-backed stand-in with the installed "
             "CuPy's API (an API-surface check, not a GPU test; needs the CuPy wheel)",
    )


def pytest_configure(config):
    if config.getoption("--cupy-standin"):
        import sys

        from cupy_standin import Standin, real_cupy, SKIP_REASON

        real = real_cupy()
        if real is None:
            raise pytest.UsageError(f"--cupy-standin: {SKIP_REASON}")
        sys.modules["cupy"] = Standin(real)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--cupy-standin"):  # only the tests that run on a backend
        keep = [item for item in items if "backend" in getattr(item, "fixturenames", ())]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--backend")
        names = ["numpy", "cupy"] if chosen == "all" else [chosen]
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request):
    """The backend name under test; skips cupy cases where CuPy cannot run."""
    name = request.param
    if name == "cupy":
        ok, why = cupy_available()
        if not ok and request.config.getoption("--cupy-standin"):
            pytest.fail(f"the CuPy stand-in failed the backend's health check: {why}")
        if not ok:
            pytest.skip(f"cupy backend unavailable: {why}")
    return name


@pytest.fixture
def xp(backend):
    """The array module (numpy or cupy) of the backend under test."""
    return get_xp(backend)


@pytest.fixture
def host_rng():
    """A seeded NumPy generator for test data (moved to the backend by the test)."""
    return np.random.default_rng(1234)
