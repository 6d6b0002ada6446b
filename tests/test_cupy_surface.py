"""CuPy's API surface, checked without a GPU: what scratchvae calls exists in the installed
CuPy with the keywords used, and the cupy backend runs end to end on a strict NumPy-backed
stand-in that refuses what CuPy refuses (tests/cupy_standin.py).

These are API-surface checks, not GPU verification: no kernel runs on a GPU here, and a
number computed here says nothing about CuPy's numbers (benchmarks/gpu_check.py checks
those on a GPU). Every test skips, saying why, where CuPy is not installed; .ci/run
installs the CuPy wheel (it imports without a driver) so that they run in CI.
"""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cupy_standin
from cupy_calls import check_source

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scratchvae"
TESTS = Path(__file__).resolve().parent

@pytest.fixture(scope="module")
def cupy():
    real = cupy_standin.real_cupy()
    if real is None:
        pytest.skip(cupy_standin.SKIP_REASON)
    return real


@pytest.fixture
def standin(cupy, monkeypatch):
    return cupy_standin.install(monkeypatch)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
    return env


# ---------------------------------------------------------------- static: the calls in the source

def test_every_array_module_call_in_scratchvae_exists_in_cupy(cupy):
    findings, checked = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        found, n = check_source(path.read_text(), str(path.relative_to(ROOT)), cupy)
        findings += found
        checked += n
    assert checked > 150, f"only {checked} array-module calls found: the scanner lost track"
    assert not findings, "calls the installed CuPy refuses:\n  " + "\n  ".join(map(str, findings))


PLANTED_SOURCE = textwrap.dedent('''
    import numpy as np
    from .backend import get_array_module

    def missing_function(x):
        xp = get_array_module(x)
        return xp.nanquantile(x, 0.5)            # 1: a function CuPy lacks

    def unknown_keyword(x):
        xp = get_array_module(x)
        return xp.sum(x, where=x > 0)            # 2: a keyword cupy.sum lacks

    def missing_submodule_function(x):
        xp = get_array_module(x)
        return xp.lib.scimath.sqrt(x)            # 3: a cupy.lib member CuPy lacks

    def ndarray_keyword(x):
        return x.max(axis=0, initial=0.0)        # 4: a keyword cupy.ndarray.max lacks

    class Generator:
        def permutation(self, n):
            return self._rng.permutation(n)      # 5: a Generator method CuPy lacks

        def numpy_only(self, n):
            if self.xp is np:
                return self._rng.permutation(n)  # not counted: runs on NumPy only
            return self.xp.argsort(self._rng.random(size=n))
''')


def test_static_check_finds_each_planted_violation(cupy):
    assert not hasattr(cupy, "nanquantile") and not hasattr(cupy.random.Generator, "permutation")
    findings, _ = check_source(PLANTED_SOURCE, "scratchvae/backend.py", cupy)
    lines = {int(f.where.rsplit(":", 1)[1]): f.problem for f in findings}
    source_lines = PLANTED_SOURCE.splitlines()
    planted = {i + 1: line for i, line in enumerate(source_lines) if "# " in line and line.split("# ")[1][:1].isdigit()}
    assert sorted(lines) == sorted(planted), (lines, planted)
    problems = [lines[n] for n in sorted(lines)]
    assert "no cupy.nanquantile" in problems[0]
    assert "unexpected keyword argument 'where'" in problems[1]
    assert "no cupy.lib.scimath" in problems[2]
    assert "cupy.ndarray.max" in problems[3] and "'initial'" in problems[3]
    assert "cupy.random.Generator has no method 'permutation'" in problems[4]


# ---------------------------------------------------------------- the stand-in refuses what CuPy refuses

def test_standin_refuses_what_cupy_refuses(standin):
    from scratchvae.backend import Generator, get_xp

    xp = get_xp("cupy")
    assert xp is standin
    a = xp.arange(6, dtype=np.float32).reshape(2, 3)
    # control: what CuPy allows works, and stays on the device
    b = xp.exp(a) + 1.0
    assert isinstance(b, standin.ndarray) and isinstance(np.exp(a), standin.ndarray)
    np.testing.assert_allclose(b.get(), np.exp(np.arange(6.0).reshape(2, 3)) + 1, rtol=1e-6)
    # implicit conversion of a device array
    for convert in (np.asarray, np.array, lambda d: np.concatenate([np.zeros((1, 3)), d])):
        with pytest.raises(TypeError):
            convert(a)
    # NumPy arrays mixed into device operations
    for mix in (lambda: a + np.ones(3), lambda: np.ones(3) * a, lambda: xp.maximum(a, np.zeros(3)),
                lambda: xp.concatenate([a, np.zeros((1, 3))]), lambda: a.dot(np.ones(3))):
        with pytest.raises(TypeError, match="Unsupported type"):
            mix()
    # unknown keywords, against CuPy's own signatures
    with pytest.raises(TypeError, match="like"):
        xp.zeros(3, like=a)
    with pytest.raises(TypeError, match="where"):
        a.sum(where=a > 0)
    with pytest.raises(TypeError, match="where"):
        xp.exp(a, where=a > 0)
    # names CuPy lacks, and Generator methods CuPy's Generator lacks
    with pytest.raises(AttributeError, match="nanquantile"):
        xp.nanquantile
    rng = xp.random.Generator(xp.random.Philox4x3210(0))
    with pytest.raises(AttributeError, match="permutation"):
        rng.permutation(5)
    with pytest.raises(AttributeError, match="bytes"):
        rng.bytes(8)
    assert Generator(0, "cupy").normal((2, 2)).shape == (2, 2)


PLANTED_TESTS = textwrap.dedent('''
    """Four real scratchvae paths, each with one planted violation of CuPy's rules."""
    import numpy as np
    import scratchvae.backend as backend
    from scratchvae.backend import Generator


    def test_implicit_conversion(backend, monkeypatch):
        monkeypatch.setattr(backend_module(), "to_host", lambda a: np.asarray(a))
        assert backend_module().to_host(Generator(0, backend).normal((3,))).shape == (3,)


    def test_numpy_mixed_in(backend, monkeypatch):
        def uniform(self, shape, low=0.0, high=1.0, dtype=None):
            return self._rng.random(size=tuple(shape)) * np.full(tuple(shape), high - low) + low
        monkeypatch.setattr(Generator, "uniform", uniform)
        assert Generator(0, backend).uniform((3,), high=2.0).shape == (3,)


    def test_unknown_keyword(backend, monkeypatch):
        def normal(self, shape, dtype=None, loc=0.0, scale=1.0):
            return self.xp.zeros(tuple(shape), dtype=np.float32, like=None)
        monkeypatch.setattr(Generator, "normal", normal)
        assert Generator(0, backend).normal((3,)).shape == (3,)


    def test_generator_method_cupy_lacks(backend, monkeypatch):
        monkeypatch.setattr(Generator, "permutation", lambda self, n: self._rng.permutation(n))
        assert sorted(backend_module().to_host(Generator(0, backend).permutation(4))) == [0, 1, 2, 3]


    def backend_module():
        return backend
''')


def test_each_planted_violation_fails_the_suite_on_the_standin(cupy, tmp_path):
    """The planted test file passes on NumPy (so each test is sound) and fails on the stand-in,
    once per violation, with CuPy's refusal as the reason."""
    (tmp_path / "test_planted.py").write_text(PLANTED_TESTS)
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())

    def run(*options):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
                               "test_planted.py", *options], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=300)

    on_numpy = run("--backend", "numpy")
    assert on_numpy.returncode == 0 and "4 passed" in on_numpy.stdout, on_numpy.stdout + on_numpy.stderr
    on_standin = run("--backend", "cupy", "--cupy-standin")
    out = on_standin.stdout
    assert on_standin.returncode == 1 and "4 failed" in out, out + on_standin.stderr
    for name, reason in [("test_implicit_conversion", "TypeError: Implicit conversion to a NumPy array"),
                         ("test_numpy_mixed_in", "TypeError: cupy.ndarray.__mul__: Unsupported type"),
                         ("test_unknown_keyword", "got an unexpected keyword argument 'like'"),
                         ("test_generator_method_cupy_lacks",
                          "AttributeError: 'cupy.random.Generator' object has no attribute 'permutation'")]:
        assert f"FAILED test_planted.py::{name}[cupy]" in out, out
        assert reason in out, (reason, out)


# ---------------------------------------------------------------- the suite and train on the stand-in

def test_backend_tests_pass_on_the_cupy_standin(cupy):
    """Every test that takes a backend, run with --backend cupy against the stand-in, less the
    finite-difference gradient checks (-m "not gradcheck"): they repeat the calls of the
    forward/backward tests thousands of times (9 of the run's 13 minutes on a loaded 2-core
    machine) and prove the calculus, which the NumPy run does."""
    out = subprocess.run([sys.executable, "-m", "pytest", "tests", "--backend", "cupy", "--cupy-standin",
                          "-q", "-p", "no:cacheprovider", "-x", "-m", "not gradcheck"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1500)
    tail = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, tail
    summary = out.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed > 150 and " failed" not in summary and "error" not in summary, tail


def _mnist_or_skip():
    from mnist_data import mnist_dir
    return mnist_dir()


def test_train_cli_on_the_cupy_standin(cupy, tmp_path):
    data = _mnist_or_skip()
    run_dir = tmp_path / "run"
    code = textwrap.dedent(f"""
        import sys
        import cupy_standin
        sys.modules["cupy"] = cupy_standin.Standin(cupy_standin.real_cupy())
        from scratchvae.train import main
        code = main(["--backend", "cupy", "--data-dir", {str(data)!r}, "--train-limit", "256",
                     "--val-limit", "128", "--batch-size", "64", "--epochs", "1", "--no-progress",
                     "--no-figures", "--out", {str(run_dir)!r}])
        print("TRANSFERS", len(sys.modules["cupy"].d2h))
        sys.exit(code)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # header + epoch 1
    test_loss = float(rows[1].split(",")[rows[0].split(",").index("test_loss")])
    assert math.isfinite(test_loss) and 0 < test_loss < 800  # 784 pixels: below log 2 per pixel


def test_train_without_a_working_gpu_prints_the_reason_and_exits_2(cupy, tmp_path):
    from scratchvae.backend import cupy_available

    ok, why = cupy_available()
    if ok:
        pytest.skip("this machine has a working GPU: nothing to refuse")
    out = subprocess.run([sys.executable, "-m", "scratchvae.train", "--backend", "cupy", "--epochs", "1",
                          "--out", str(tmp_path / "run"), "--no-progress"],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: {why}", out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- host syncs per step

def test_one_host_read_per_sync_interval_in_training(standin, tmp_path):
    """Device-to-host transfers per training step under the stand-in: none, except the
    running-loss read every SYNC_EVERY steps (and at the epoch's last step)."""
    from scratchvae.training import SYNC_EVERY, TrainConfig, train

    data = _mnist_or_skip()
    steps = SYNC_EVERY + 5
    counts = []
    cfg = TrainConfig(backend="cupy", data_dir=str(data), train_limit=64 * steps, val_limit=64,
                      batch_size=64, epochs=1)
    train(cfg, out=tmp_path / "run", log=lambda *a, **k: None, progress=False, figures=False,
          step_hook=lambda epoch, step, vae: counts.append(len(standin.d2h)))
    assert len(counts) == steps
    per_step = np.diff(counts)  # transfers between the hooks of steps s-1 and s
    # the read after step s-1 falls between hooks s-1 and s when s is a multiple of SYNC_EVERY
    expected = [1 if s % SYNC_EVERY == 0 else 0 for s in range(1, steps)]
    assert per_step.tolist() == expected, (per_step.tolist(), standin.d2h[counts[0]:counts[-1]])


def test_no_host_read_per_classifier_step(standin):
    from scratchvae.backend import get_xp
    from scratchvae.classifier import train_classifier

    get_xp("cupy")  # the one-time health check reads its results back: not a step's transfer
    rng = np.random.default_rng(0)
    totals = []
    for n in (32 * 2, 32 * 5):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        standin.reset_counts()
        train_classifier(images, labels, epochs=1, batch_size=32, backend="cupy")
        totals.append(len(standin.d2h))
    # 2 and 5 steps, the same transfers: the epoch's loss and accuracy reads only
    assert totals[0] == totals[1] == 2, (totals, standin.d2h)
