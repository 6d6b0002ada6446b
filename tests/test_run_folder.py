"""The run folder's promises under faults, through the real command line (subprocesses where a
second process, a signal or a resource limit matters): a foreign --out, a full disk, a
read-only folder, two writers, Ctrl-C twice, Ctrl-C at start-up, out of memory, a run that
died before its first checkpoint. Each fault gives one line (no traceback), a non-zero exit,
and the files that were there are unchanged (compared by hash)."""
import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scratchvae import atomic
from scratchvae.runs.checkpoint import read_checkpoint
from scratchvae.runs.folder import LOCK_NAME, RunFolder
from scratchvae.train import main

from mnist_data import mnist_dir

TINY = ["--train-limit", "64", "--val-limit", "16", "--epochs", "1", "--no-progress", "--no-figures"]


def tiny(*extra):
    return TINY + ["--data-dir", str(mnist_dir())] + list(extra)


def cli(args, module="scratchvae.train", limit_bytes=None, env=None, prefix=()):
    def preexec():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([*prefix, sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=300, preexec_fn=preexec, env=dict(os.environ, **(env or {})))


# Root passes permission checks through its capabilities; without them from its bounding set
# (util-linux's setpriv) a root process meets a folder's mode bits as any user does.
SETPRIV = shutil.which("setpriv")
AS_ROOT = os.geteuid() == 0
WITHOUT_ROOTS_OVERRIDE = (SETPRIV, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--") \
    if AS_ROOT and SETPRIV else ()


def hashes(folder):
    """sha256 of every file (the lock file holds only the last holder's pid: left out)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in Path(folder).iterdir() if p.name != LOCK_NAME}


def one_line(stderr):
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def params(run):
    return {k: v for k, v in read_checkpoint(Path(run) / "checkpoint.npz")[1].items()}


def assert_same_weights(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 1-epoch run, the reference for the others (copied, never written)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    done = cli(tiny("--out", str(out)))
    assert done.returncode == 0, done.stderr
    return out


def copy_run(src, dst):
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_a_foreign_folder_is_refused_and_untouched(tmp_path):
    user = tmp_path / "u"
    user.mkdir()
    (user / "samples.png").write_text("mine")
    (user / "metrics.csv").write_text("my own,columns\n1,2\n")
    before = hashes(user)
    done = cli(tiny("--out", str(user)))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "not empty" in line and "metrics.csv, samples.png" in line and "--out" in line
    assert hashes(user) == before and sorted(os.listdir(user)) == ["metrics.csv", "samples.png"]
    (tmp_path / "f").write_text("a file")
    done = cli(tiny("--out", str(tmp_path / "f")))
    assert done.returncode == 2 and "is a file, not a folder" in one_line(done.stderr)


def test_a_full_disk_keeps_the_last_checkpoint_and_a_dead_run_resumes_from_step_0(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    before = hashes(run)
    # RLIMIT_FSIZE: any file past 1 MiB fails with EFBIG, as a full disk fails with ENOSPC
    done = cli(tiny("--resume", str(run), "--epochs", "2"), limit_bytes=2**20)
    assert done.returncode != 0
    line = one_line(done.stderr)
    assert "File too large" in line and "The last good checkpoint" in line
    assert hashes(run) == before  # nothing saved changed, no session recorded
    assert not list(run.glob(".*.tmp"))

    fresh = tmp_path / "fresh"  # a new run whose first checkpoint cannot be written
    done = cli(tiny("--out", str(fresh)), limit_bytes=2**20)
    assert done.returncode != 0
    line = one_line(done.stderr)
    assert "No checkpoint was written yet" in line and "last good checkpoint" not in line
    assert not (fresh / "checkpoint.npz").exists()
    config = (fresh / "config.json").read_bytes()
    done = cli(tiny("--resume", str(fresh)))  # resumes from step 0 ...
    assert done.returncode == 0, done.stderr
    assert_same_weights(finished, fresh)  # ... to exactly the run that never failed
    assert (fresh / "config.json").read_bytes() == config
    sessions = json.loads((fresh / "sessions.json").read_text())["sessions"]
    assert [(s["kind"], s["from_epoch"]) for s in sessions] == [("resumed", 0)]

    dead = tmp_path / "dead"  # ... or is reused by a new run
    assert cli(tiny("--out", str(dead)), limit_bytes=2**20).returncode != 0
    done = cli(tiny("--out", str(dead)))
    assert done.returncode == 0, done.stderr
    assert_same_weights(finished, dead)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_unwritable_folder_is_one_line(tmp_path, finished, monkeypatch, capsys, code):
    """A read-only file system, no permission, a full disk: injected where files are created
    (root ignores permissions, so a chmod alone proves nothing here)."""
    run = copy_run(finished, tmp_path / "run")
    before = hashes(run)

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    assert main(tiny("--resume", str(run), "--epochs", "2")) != 0
    line = one_line(capsys.readouterr().err)
    assert os.strerror(code) in line and str(run) in line
    assert hashes(run) == before
    assert main(tiny("--out", str(tmp_path / "new"))) != 0
    assert os.strerror(code) in one_line(capsys.readouterr().err)


@pytest.mark.skipif(AS_ROOT and not SETPRIV, reason="as root, a read-only folder needs util-linux's "
                    "setpriv to take root's permission override away: install util-linux, or run the "
                    "tests as another user")
def test_a_read_only_folder_is_refused(tmp_path, finished):
    """A real chmod 555 (as root, the training runs without root's permission override)."""
    run = copy_run(finished, tmp_path / "run")
    before = hashes(run)
    run.chmod(0o555)
    try:
        done = cli(tiny("--resume", str(run), "--epochs", "2"), prefix=WITHOUT_ROOTS_OVERRIDE)
    finally:
        run.chmod(0o755)
    assert done.returncode == 1 and "permission denied" in one_line(done.stderr).lower()
    assert hashes(run) == before


def start_long_run(out, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "scratchvae.train", *tiny("--epochs", "500", "--out",
                             str(out), *extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # training has begun once a checkpoint exists
        if (out / "checkpoint.npz").exists():
            return proc
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(proc.communicate()[1])


def test_a_second_writer_is_refused_with_the_holders_pid_and_sigterm_saves(tmp_path, capsys):
    out = tmp_path / "run"
    proc = start_long_run(out)
    try:
        for args in (tiny("--out", str(out)), tiny("--resume", str(out), "--epochs", "600")):
            assert main(args) == 2
            line = one_line(capsys.readouterr().err)
            assert f"in use by another training (pid {proc.pid})" in line
        proc.send_signal(signal.SIGTERM)  # like a first Ctrl-C: finish the step, save, exit 130
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    line = one_line(err)
    assert line.startswith("interrupted") and f"--resume {out} --epochs 500" in line
    meta, _ = read_checkpoint(out / "checkpoint.npz")
    assert f"epoch {meta['position']['epoch'] + (meta['position']['step'] > 0)}" in line
    assert json.loads((out / "config.json").read_text())["epochs"] == 500


def test_ctrl_c_twice_inside_the_save_waits_for_it_and_exits_130(tmp_path):
    out = tmp_path / "run"
    # both Ctrl-Cs arrive inside the first checkpoint's write (the test hook sends them)
    hook = "checkpoint.npz:written:1:INT,checkpoint.npz:synced:1:INT"
    done = cli(tiny("--out", str(out), "--epochs", "3"), env={atomic.CRASH_ENV: hook})
    assert done.returncode == 130
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("interrupted after epoch 1") and "--resume" in lines[-1]
    assert all("still saving" in line for line in lines[:-1]) and len(lines) == 2
    meta, _ = read_checkpoint(out / "checkpoint.npz")  # the save finished
    assert meta["position"] == dict(epoch=1, step=0, loss_sum=0.0) and len(meta["metrics"]) == 1
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_at_start_up_and_out_of_memory_are_one_line(tmp_path, monkeypatch, capsys):
    import scratchvae.training as training

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "load_split", interrupt)
    assert main(tiny("--out", str(tmp_path / "a"))) == 130
    assert one_line(capsys.readouterr().err) == "interrupted during start-up; nothing was saved"
    assert not (tmp_path / "a").exists()

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.undo()
    monkeypatch.setattr(training, "build_vae", no_memory)
    assert main(tiny("--out", str(tmp_path / "b"))) == 1
    line = one_line(capsys.readouterr().err)
    assert "out of memory" in line and "--batch-size" in line
    assert not (tmp_path / "b").exists()


def test_flags_are_refused_at_parse_time_naming_the_flag(tmp_path, capsys):
    for flag, value in (("--lr", "nan"), ("--lr", "inf"), ("--beta", "nan"), ("--variance", "nan"),
                        ("--lr-decay", "inf"), ("--seed", "-1")):
        with pytest.raises(SystemExit) as info:
            main(tiny(flag, value, "--out", str(tmp_path / "x")))
        assert info.value.code == 2
        line = one_line(capsys.readouterr().err)
        assert f"argument {flag}:" in line and value in line
    assert main(tiny("--resume", str(tmp_path / "r"), "--out", str(tmp_path / "x"))) == 2
    assert "drop --out" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_a_nan_before_the_first_checkpoint_claims_none_and_the_folder_is_reused(tmp_path):
    from scratchvae.training import TrainConfig, TrainingError, train

    settings = dict(train_limit=64, val_limit=16, epochs=1, data_dir=str(mnist_dir()))

    def poison(epoch, step, vae):
        vae.params["decoder.2.b"][...] = np.nan

    out = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        train(TrainConfig(**settings), out=out, log=lambda *a: None, progress=False, figures=False,
              step_hook=poison)
    message = str(info.value)
    assert "No checkpoint was written yet" in message and "last good checkpoint" not in message
    train(TrainConfig(**settings), out=out, log=lambda *a: None, progress=False, figures=False)
    assert (out / "checkpoint.npz").is_file()


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_files_honour_the_umask(tmp_path, mask):
    previous = os.umask(mask)
    try:
        atomic.write_atomically(tmp_path / "a.txt", "x")
        folder = RunFolder.create(tmp_path / "run", dict(model="paper-mlp", latent_dim=2,
                                                         likelihood="bernoulli"))
        folder.release()
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.txt", tmp_path / "run" / "config.json", tmp_path / "run" / "metrics.csv",
                 tmp_path / "run" / LOCK_NAME):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path.name


def test_evaluation_json_is_strict_and_a_non_finite_evaluation_fails(tmp_path, finished, monkeypatch,
                                                                      capsys):
    from scratchvae import evaluate

    run = copy_run(finished, tmp_path / "run")
    quiet = [f for f in ["--no-progress"] if f in evaluate.build_parser().format_help()]  # no bar
    assert evaluate.main([str(run), "--k", "2", "--limit", "1", *quiet]) == 0
    text = (run / "evaluation.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in evaluation.json"))
    assert json.loads(text)["iwae_nll_stderr"] is None  # one image: no standard error
    before = hashes(run)
    monkeypatch.setattr(evaluate, "importance_weighted_log_likelihood",
                        lambda *a, **k: np.full(2, np.nan))
    assert evaluate.main([str(run), "--k", "2", "--limit", "2", *quiet]) == 2
    assert "not finite" in one_line(capsys.readouterr().err)
    assert hashes(run) == before
    with pytest.raises(SystemExit):
        evaluate.main([str(run), "--seed", "-1"])
    assert "argument --seed" in one_line(capsys.readouterr().err)


def test_experiments_name_the_file_with_bad_json(tmp_path, capsys):
    from scratchvae.experiments.__main__ import main as experiments

    out = tmp_path / "nll"
    out.mkdir()
    (out / "nll.json").write_text("{not json")
    assert experiments(["nll", "--quick", "--out", str(out), "--data-dir", str(mnist_dir())]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(out / "nll.json") in line and "not valid JSON" in line
    paper = tmp_path / "paper" / "paper-mlp-z2"
    paper.mkdir(parents=True)
    (paper / "config.json").write_text('{"model": "paper-mlp", "lr": NaN}')
    assert experiments(["paper", "--quick", "--out", str(tmp_path / "paper"), "--no-figures"]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(paper / "config.json") in line and "NaN is not JSON" in line


def test_a_damaged_metrics_csv_is_rewritten_from_the_checkpoint(tmp_path, finished, capsys):
    """The checkpoint is the truth: a truncated metrics.csv (a crash of an older scratchvae, or a
    hand edit) neither blocks a resume nor leaks into it; the resume rewrites it whole."""
    from scratchvae.runs import read_metrics

    run = copy_run(finished, tmp_path / "run")
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text[: len(text) - 9])  # the last row cut short
    assert [r["epoch"] for r in read_metrics(run / "metrics.csv")] == ["1"]  # from the checkpoint
    assert main(tiny("--resume", str(run), "--epochs", "2")) == 0
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[1] == text.splitlines()[1] and [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    assert "None" not in (run / "metrics.csv").read_text()


def test_a_format_1_run_resumes_and_is_saved_as_format_2(tmp_path, finished):
    """A run folder written before the metrics rows moved into the checkpoint (format 1, no lock
    file, no sessions.json) resumes; its rows come from metrics.csv and the new save is format 2."""
    import io
    import zipfile

    run = copy_run(finished, tmp_path / "old")
    for name in (LOCK_NAME, "sessions.json"):
        (run / name).unlink()
    with np.load(run / "checkpoint.npz", allow_pickle=False) as data:
        members = {k: data[k] for k in data.files}
    meta = json.loads(str(members["meta"]))
    meta["format"] = 1
    del meta["metrics"]
    members["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **members)
    (run / "checkpoint.npz").write_bytes(buf.getvalue())
    assert zipfile.is_zipfile(run / "checkpoint.npz")
    row_1 = (run / "metrics.csv").read_text().splitlines()[1]
    assert main(tiny("--resume", str(run), "--epochs", "2")) == 0
    meta2, _ = read_checkpoint(run / "checkpoint.npz")
    assert meta2["format"] == 2 and [r["epoch"] for r in meta2["metrics"]] == ["1", "2"]
    assert ",".join(meta2["metrics"][0].values()) == row_1
