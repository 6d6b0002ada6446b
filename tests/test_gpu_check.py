"""benchmarks/gpu_check.py, the prepared GPU check, run end to end on NumPy with --quick (and
rehearsed on the CuPy stand-in), so that the minutes on a lent GPU are never spent on a typo.
Nothing here is GPU verification: on NumPy the parity stage compares NumPy with itself."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_data import mnist_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_check_stages  # noqa: E402
from scratchvae.models import ARCHITECTURES  # noqa: E402


def run_check(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "report"
    done = run_check("--backend", "numpy", "--quick", "--data", mnist_dir(), "--out", out)
    return out, done


def test_quick_run_writes_every_stage(quick_report):
    out, done = quick_report
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    assert list(report["stages"]) == [key for key, *_ in gpu_check.STAGES]
    for key, title, *_ in gpu_check.STAGES:
        stage = report["stages"][key]
        assert stage["status"] in ("PASSED", "SKIPPED"), (key, stage.get("reason"))
        assert stage["seconds"] is not None and stage["seconds"] <= stage["budget_s"] + 5
        assert f"## {stage['number']}. {title}: {stage['status']}" in markdown
    assert report["stages"]["syncs"]["status"] == "SKIPPED"  # numpy has no device: says so
    assert report["stages"]["suite"]["details"]["counts"]["passed"] > 10
    assert report["machine"]["numpy"] == np.__version__ and report["machine"]["date"]


def test_quick_parity_compared_every_architecture(quick_report):
    out, _ = quick_report
    parity = json.loads((out / "report.json").read_text())["stages"]["parity"]["details"]
    assert parity["architectures"] == list(ARCHITECTURES) and parity["compared"] == len(ARCHITECTURES)
    cases = parity["cases"]
    assert sorted(cases) == sorted(f"{a} {d}" for a in ARCHITECTURES for d in ("float64", "float32"))
    for case in cases.values():
        assert case["arrays"] > 10 and case["failures"] == []
        assert 0 <= case["worst_error"] < gpu_check_stages.TOLERANCE["float64"]


def test_quick_training_and_timings_are_numbers(quick_report):
    out, _ = quick_report
    stages = json.loads((out / "report.json").read_text())["stages"]
    train = stages["train"]["details"]
    for model, epochs in gpu_check_stages.TRAIN_RUNS:
        for role in gpu_check_stages.ROLES:
            rows = train[f"{role} {model}"]["rows"]
            assert len(rows) == epochs and 0 < float(rows[-1]["test_loss"]) < 800
    assert math.isfinite(stages["iwae"]["details"]["iwae_nll"]) and stages["iwae"]["details"]["seconds"] > 0
    assert stages["reseed"]["details"]["reseed"]["median_ms"] > 0
    assert all(v["tracemalloc_peak_mib"] > 0 for v in stages["memory"]["details"].values())


def test_a_second_run_refuses_and_keeps_the_first_report(quick_report):
    out, _ = quick_report
    before = {name: (out / name).read_bytes() for name in gpu_check.REPORTS}
    again = run_check("--backend", "numpy", "--quick", "--data", mnist_dir(), "--out", out)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "already exists" in lines[0], again.stderr
    assert {name: (out / name).read_bytes() for name in gpu_check.REPORTS} == before


def test_cupy_without_a_gpu_fails_fast_with_the_health_check_reason(tmp_path):
    from scratchvae.backend import cupy_available

    ok, why = cupy_available()
    if ok:
        pytest.skip("this machine has a working GPU: nothing to refuse")
    done = run_check("--backend", "cupy", "--data", mnist_dir(), "--out", tmp_path / "out", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {why}"] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_missing_data_is_one_line(tmp_path):
    done = run_check("--backend", "numpy", "--quick", "--data", tmp_path / "nothing", "--out", tmp_path / "out")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "never downloads" in done.stderr and "Traceback" not in done.stderr


def test_parity_comparison_flags_a_gradient_off_by_more_than_the_tolerance():
    """The comparison on a real float64 step: one gradient entry moved by 1e-8 of the array's
    largest entry is flagged (and only that array); moved by 1e-12 it passes."""
    from scratchvae.models import build_vae
    from scratchvae.optim import Adam

    vae = build_vae("paper-mlp", dtype="float64", seed=0)
    gpu_check_stages.feed_host_noise(vae, 0)
    x = np.random.default_rng(0).random((4, 1, 28, 28))
    snap = gpu_check_stages.step_snapshot(vae, Adam(vae.params, vae.grads), x, gpu_check_stages.host_eps(0, 4, 2))
    tolerance = gpu_check_stages.TOLERANCE["float64"]
    name = "grad decoder.2.W"
    for shift, flagged in ((1e-8, [name]), (1e-12, [])):
        mutant = {k: v.copy() for k, v in snap.items()}
        mutant[name].flat[7] += shift * np.abs(snap[name]).max()
        errors, failures = gpu_check_stages.compare_snapshots(snap, mutant, tolerance)
        assert failures == flagged
        assert errors[name] == pytest.approx(shift, rel=1e-3)
        assert all(e == 0.0 for k, e in errors.items() if k != name)
    assert gpu_check_stages.relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert gpu_check_stages.relative_error(np.ones(3), np.ones(4)) == math.inf
    assert gpu_check_stages.relative_error(np.ones(3), np.array([1.0, np.nan, 1.0])) == math.inf
    _, failures = gpu_check_stages.compare_snapshots(snap, {k: v for k, v in snap.items() if k != name}, tolerance)
    assert failures == [name]  # an array the candidate lacks fails too


def test_rehearsal_on_the_cupy_standin(tmp_path):
    """The cupy code paths of every stage on tests/cupy_standin.py (an API-surface rehearsal, no
    GPU): the transfer counter sees the one running-loss read per SYNC_EVERY steps."""
    import cupy_standin

    if cupy_standin.real_cupy() is None:
        pytest.skip(cupy_standin.SKIP_REASON)
    out = tmp_path / "standin"
    done = run_check("--standin", "--data", mnist_dir(), "--out", out)
    report = json.loads((out / "report.json").read_text())
    statuses = {k: (s["status"], s.get("reason")) for k, s in report["stages"].items()}
    assert done.returncode == 0 and all(s == "PASSED" for s, _ in statuses.values()), (statuses, done.stderr)
    syncs = report["stages"]["syncs"]["details"]
    assert syncs["per_step"] == syncs["expected"] and sum(syncs["expected"]) == 1
    assert "ndarray.__float__" in syncs["wrapped"]
    assert report["stages"]["parity"]["details"]["compared"] == len(ARCHITECTURES)
    assert "stand-in" in report["machine"]["gpu"]
