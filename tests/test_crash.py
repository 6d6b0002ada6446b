"""kill -9 at random moments and inside every write: a training subprocess is SIGKILLed again
and again (at random times and, through the test hook of ``scratchvae.atomic``, inside the
checkpoint's, metrics.csv's, config.json's and sessions.json's writes; a Ctrl-C or two among
them saves mid-epoch), resumed after each kill, and after
each kill the folder must load, its files must agree, config.json must be the one written at
creation, and the run finished through all the kills must equal an uninterrupted one bit for
bit."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scratchvae.runs.checkpoint import read_checkpoint
from scratchvae.runs.folder import LOCK_NAME, RunFolder
from scratchvae.runs.schema import parse_metrics_csv

from mnist_data import mnist_dir

EPOCHS = 6
SETTINGS = ["--train-limit", "32", "--val-limit", "16", "--batch-size", "16", "--seed", "3",
            "--no-progress", "--no-figures"]
LOSSES = ("epoch", "train_loss", "test_loss", "test_recon", "test_kl")
# kills inside a write: (file, phase, which write of that file in the launch)
HOOKS = [("checkpoint.npz", "written", 1), ("checkpoint.npz", "synced", 1),
         ("checkpoint.npz", "renamed", 1), ("metrics.csv", "written", 2),
         ("metrics.csv", "synced", 1), ("metrics.csv", "renamed", 2),
         ("checkpoint.npz", "synced", 2), ("sessions.json", "written", 1),
         ("checkpoint.npz", "renamed", 3), ("metrics.csv", "written", 1)]


def launch(args, env_extra=None):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))  # its lines arrive as printed
    return subprocess.Popen([sys.executable, "-m", "scratchvae.train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_training(proc, timeout=60):
    """Read stdout until the line that says training starts (the folder is written from then on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("parameters:"):
            return bool(line)
    raise AssertionError("the training subprocess did not start")


def identity(path):
    """A file's bytes and inode: an atomic rewrite with the same bytes changes the inode."""
    return path.read_bytes(), path.stat().st_ino


def check_folder(run):
    """What must hold after any kill: the folder loads, metrics.csv is the checkpoint's rows
    (or one row behind, when the kill fell between the two renames) and config.json parses."""
    folder = RunFolder(run)
    if not folder.has_checkpoint():
        if (run / "config.json").exists():
            folder.read_config()
        folder.check_free()  # a run dead before its first checkpoint may be reused
        return None
    meta, _ = read_checkpoint(run / "checkpoint.npz")
    rows = meta["metrics"]
    assert len(rows) == meta["position"]["epoch"]
    on_disk = parse_metrics_csv((run / "metrics.csv").read_bytes(), "metrics.csv")
    assert on_disk == rows[: len(on_disk)] and len(rows) - len(on_disk) <= 1
    folder.read_config()
    return meta["position"]


def finish(run, data):
    """Resume ``run`` to the end (or start it when it died before writing its config)."""
    args = SETTINGS + data + ["--epochs", str(EPOCHS)]
    has_run = (run / "checkpoint.npz").exists() or (
        (run / "config.json").exists() and (run / LOCK_NAME).exists())
    done = subprocess.run([sys.executable, "-m", "scratchvae.train", *args,
                           *(["--resume", str(run)] if has_run else ["--out", str(run)])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 2), done.stderr  # 2: the last kill came after the last save
    if done.returncode == 2:
        assert f"already has {EPOCHS} epochs" in done.stderr, done.stderr


def assert_same_run(straight, run):
    assert check_folder(run) == dict(epoch=EPOCHS, step=0, loss_sum=0.0)
    assert not list(run.glob(".*.tmp"))  # a later writer removed every dead writer's temporary file
    meta_a, a = read_checkpoint(straight / "checkpoint.npz")
    meta_b, b = read_checkpoint(run / "checkpoint.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [[r[k] for k in LOSSES] for r in meta_a["metrics"]] == \
        [[r[k] for k in LOSSES] for r in meta_b["metrics"]]
    assert (run / "metrics.csv").read_text().count("\n") == EPOCHS + 1


def test_sigkill_anywhere_then_resume_equals_a_straight_run(tmp_path):
    data = ["--data-dir", str(mnist_dir())]
    straight = tmp_path / "straight"
    done = subprocess.run([sys.executable, "-m", "scratchvae.train", *SETTINGS, *data, "--epochs",
                           str(EPOCHS), "--out", str(straight)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr

    rng = random.Random(20261202)
    plan = [("hook", h) for h in HOOKS] + [("time", rng.uniform(0.0, 1.5)) for _ in range(4)]
    plan += [("ctrl-c", rng.uniform(0.0, 1.0)) for _ in range(2)]  # saves mid-epoch, exits 130
    rng.shuffle(plan)
    plan.insert(0, ("hook", ("config.json", "synced", 1)))  # fires only when a run is created
    kills, hook_kills, interrupts, chains, positions = 0, 0, 0, 0, []
    run, config_bytes = None, None
    for kind, what in plan:
        if run is not None and check_folder(run) == dict(epoch=EPOCHS, step=0, loss_sum=0.0):
            finish(run, data)  # the kill came after the last save: a resume is refused, and repairs
            assert_same_run(straight, run)
            run = None
        if run is None:
            chains += 1
            run, config_bytes = tmp_path / f"killed-{chains}", None
        has_run = (run / "checkpoint.npz").exists() or (
            (run / "config.json").exists() and (run / LOCK_NAME).exists())
        args = SETTINGS + data + ["--epochs", str(EPOCHS)]
        args += ["--resume", str(run)] if has_run else ["--out", str(run)]
        env = {"SCRATCHVAE_CRASH_AT": ":".join(map(str, what))} if kind == "hook" else None
        proc = launch(args, env)
        if kind in ("time", "ctrl-c") and wait_for_training(proc):
            time.sleep(what)
            proc.send_signal(signal.SIGKILL if kind == "time" else signal.SIGINT)
        proc.wait(timeout=300)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode == 0:  # it finished before the kill came: compare, start a new chain
            assert_same_run(straight, run)
            run = None
            continue
        if kind == "ctrl-c":
            assert proc.returncode == 130 and "Traceback" not in err, err
            interrupts += 1
            positions.append(check_folder(run))
            continue
        assert proc.returncode == -signal.SIGKILL, err
        kills += 1
        hook_kills += kind == "hook"
        positions.append(check_folder(run))
        if config_bytes is None and (run / "config.json").exists():
            config_bytes = identity(run / "config.json")
        if config_bytes is not None:  # written once, never again (not even with the same bytes)
            assert identity(run / "config.json") == config_bytes
    if run is not None:
        finish(run, data)
        assert_same_run(straight, run)
    assert kills >= 10 and hook_kills >= 8, (kills, hook_kills)
    print(f"kills: {kills} ({hook_kills} inside writes), Ctrl-C: {interrupts}, in {chains} runs; "
          f"positions: {positions}")
