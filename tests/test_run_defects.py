"""The last ways a run folder could lose data or say too much, each reproduced through the real
command line (issue 23): a resume whose checkpoint is gone, a damaged .npy header, a signal
while the imports load, the exit code of a full disk, a position past its epoch, a temporary
file named instead of the target, a resume's target, figures replaced half-way, and runs
started together under default names."""
import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scratchvae import atomic
from scratchvae.runs.checkpoint import read_checkpoint
from scratchvae.runs.schema import dumps_strict

from test_run_folder import (AS_ROOT, SETPRIV, WITHOUT_ROOTS_OVERRIDE, cli, copy_run, finished,  # noqa: F401 (a fixture)
                             one_line, tiny)


def files_of(folder):
    """Every regular file's bytes (a folder or link standing where a file was is left out)."""
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file() and p.name != ".scratchvae.lock"}


# -- 1. a resume whose checkpoint is not a readable file -----------------------------------------

@pytest.mark.parametrize("damage", ["missing", "folder", "dangling link"])
def test_a_resume_without_its_checkpoint_is_refused_and_changes_nothing(tmp_path, finished, damage):
    run = copy_run(finished, tmp_path / "run")
    checkpoint = run / "checkpoint.npz"
    checkpoint.unlink()
    if damage == "folder":
        checkpoint.mkdir()
    elif damage == "dangling link":
        checkpoint.symlink_to(tmp_path / "elsewhere.npz")
    before = files_of(run)
    assert before["metrics.csv"].count(b"\n") == 2  # the header and epoch 1: history to keep
    done = cli(tiny("--resume", str(run), "--epochs", "2"))
    assert done.returncode == 2
    line = one_line(done.stderr)
    said = {"missing": "is missing", "folder": "is a folder", "dangling link": "is a dangling symbolic link"}
    assert f"{checkpoint} {said[damage]}" in line and "1 finished epoch" in line and "nothing was changed" in line
    assert files_of(run) == before
    assert damage != "folder" or checkpoint.is_dir()


def test_a_run_that_died_before_its_first_checkpoint_still_resumes(tmp_path, finished):
    """The one case where no checkpoint is right: no epoch recorded, no session."""
    fresh = tmp_path / "fresh"
    assert cli(tiny("--out", str(fresh)), limit_bytes=2**20).returncode == 1
    assert not (fresh / "checkpoint.npz").exists()
    done = cli(tiny("--resume", str(fresh)))
    assert done.returncode == 0, done.stderr


# -- 2. a damaged .npy header inside the checkpoint ---------------------------------------------

def _with_broken_header(src, dst):
    """``src`` rewritten with one parameter's .npy header dict followed by "[" (a syntax error
    for the Python-literal parser numpy reads headers with)."""
    with zipfile.ZipFile(src) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in members if n.startswith("param/"))
    data = bytearray(members[name])
    end = data.index(b"}")
    data[end + 1] = ord("[")
    members[name] = bytes(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, payload in members.items():
            archive.writestr(member, payload)
    dst.write_bytes(buffer.getvalue())


def test_a_syntax_error_in_an_npy_header_is_one_line_everywhere(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    _with_broken_header(finished / "checkpoint.npz", run / "checkpoint.npz")
    before = files_of(run)
    for module, args in (("scratchvae.evaluate", [str(run), "--k", "2", "--limit", "4"]),
                         ("scratchvae.plot", [str(run), "--limit", "4"]),
                         ("scratchvae.train", tiny("--resume", str(run), "--epochs", "2"))):
        done = cli(args, module=module)
        assert done.returncode == 2, (module, done.stderr)
        line = one_line(done.stderr)
        assert "not a readable scratchvae checkpoint" in line and str(run / "checkpoint.npz") in line
        assert "TokenError" in line or "unreadable" in line
    assert files_of(run) == before


# -- 3. Ctrl-C or SIGTERM while the imports load ------------------------------------------------

TRIP = '''import os, signal, sys
class _Trip:
    """Sends this process the signal as the first import of numpy begins: inside the imports."""
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, os.environ["TRIP_SIGNAL"]))
        return None
sys.meta_path.insert(0, _Trip())
'''


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("module, args", [("scratchvae.train", ["--epochs", "1"]),
                                          ("scratchvae.evaluate", ["RUN"]), ("scratchvae.plot", ["RUN"]),
                                          ("scratchvae.data", ["download"])])
def test_a_signal_during_the_imports_is_one_line_and_exit_130(tmp_path, sig, module, args):
    (tmp_path / "trip").mkdir()
    (tmp_path / "trip" / "sitecustomize.py").write_text(TRIP)
    env = dict(os.environ, TRIP_SIGNAL=sig, PYTHONPATH=os.pathsep.join(
        [str(tmp_path / "trip")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 130, done.stderr
    assert one_line(done.stderr) == "interrupted during start-up; nothing was saved"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trip"]  # nothing written


def test_a_background_job_keeps_ignoring_ctrl_c(tmp_path):
    """A shell's background job starts with SIGINT ignored; the start-up handler keeps that."""
    code = ("import signal, sys; sys.orig_argv[1:3] = ['-m', 'scratchvae.train']; import scratchvae; "
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "
            "signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.stdout.split() == ["True", "True"], done.stderr


@pytest.mark.parametrize("users, seen", [(None, "4"), ("30", "30")])
def test_a_command_lets_openblas_threads_sleep_soon_and_keeps_a_users_setting(users, seen):
    """docs/performance.md: the commands set OPENBLAS_THREAD_TIMEOUT=4 before NumPy loads
    OpenBLAS, unless the user set it; a library import leaves the environment alone."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if users is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = users
    code = ("import os, sys; sys.orig_argv[1:3] = ['-m', 'scratchvae.train']; import scratchvae; "
            "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.split() == [seen, "False"], done.stderr  # set before NumPy is imported
    done = subprocess.run([sys.executable, "-c", "import os, scratchvae; "
                           "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip() == str(users)


def test_the_start_up_handler_is_only_for_the_commands():
    done = subprocess.run([sys.executable, "-c", "import signal, scratchvae; "
                           "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr  # a library import installs nothing


# -- 4. a full disk while saving the checkpoint: an OS fault, exit 1 ----------------------------

def test_a_full_disk_while_saving_exits_1_as_the_docs_say(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    done = cli(tiny("--resume", str(run), "--epochs", "2"), limit_bytes=2**20)
    assert done.returncode == 1
    assert "could not save the checkpoint" in one_line(done.stderr)
    table = (Path(__file__).resolve().parent.parent / "docs" / "training.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| full disk"))
    assert "exit 1" in row


# -- 5. a position past the end of its epoch ----------------------------------------------------

def test_a_checkpoint_whose_step_lies_past_its_epoch_is_refused(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    meta, arrays = read_checkpoint(run / "checkpoint.npz")
    meta["position"]["step"] = 10**12
    arrays["meta"] = np.array(dumps_strict(meta))
    atomic.write_npz_atomically(run / "checkpoint.npz", arrays)
    before = files_of(run)
    done = cli(tiny("--resume", str(run), "--epochs", "2"))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "step 1,000,000,000,000 of epoch 2" in line and "past the epoch's 1 steps" in line
    assert files_of(run) == before  # no metrics row for an epoch that trained no step


# -- 6. evaluate and plot in a folder they cannot write name their own file ----------------------

@pytest.mark.skipif(AS_ROOT and not SETPRIV, reason="as root, a read-only folder needs util-linux's "
                    "setpriv to drop root's permission override (apt-get install util-linux)")
def test_evaluate_and_plot_in_a_read_only_folder_name_the_file_they_write(tmp_path, finished):
    run = copy_run(finished, tmp_path / "run")
    run.chmod(0o555)
    try:
        for module, args, target in (("scratchvae.evaluate", [str(run), "--k", "2", "--limit", "4", "--no-progress"],
                                      "evaluation.json"),
                                     ("scratchvae.plot", [str(run), "--limit", "4"], "latent_scatter.png")):
            done = cli(args, module=module, prefix=WITHOUT_ROOTS_OVERRIDE)
            assert done.returncode == 1, done.stderr
            line = one_line(done.stderr)
            assert f"({run / target})" in line and ".tmp" not in line, line
    finally:
        run.chmod(0o755)


# -- 7. --resume without --epochs goes to the run's own target -----------------------------------

def test_a_resume_without_epochs_trains_to_the_runs_own_target(tmp_path):
    run = tmp_path / "run"
    # a Ctrl-C inside the first checkpoint's write: epoch 1 of 2 saved, then the run stops
    done = cli(tiny("--out", str(run), "--epochs", "2"), env={atomic.CRASH_ENV: "checkpoint.npz:written:1:INT"})
    assert done.returncode == 130, done.stderr
    done = cli(["--resume", str(run), "--no-progress", "--no-figures"])
    assert done.returncode == 0, done.stderr
    meta, _ = read_checkpoint(run / "checkpoint.npz")
    assert meta["position"] == dict(epoch=2, step=0, loss_sum=0.0)  # 2, not the default 10
    done = cli(["--resume", str(run), "--no-progress", "--no-figures"])
    assert done.returncode == 2 and "already has 2 epochs" in one_line(done.stderr)


# -- 9. figures: all replaced, or none --------------------------------------------------------------

def test_plot_under_a_file_size_limit_leaves_the_previous_figures_whole(tmp_path, finished):
    pytest.importorskip("matplotlib", reason="the figures need matplotlib: pip install -e '.[plot]'")
    run = copy_run(finished, tmp_path / "run")
    assert cli([str(run), "--limit", "500"], module="scratchvae.plot").returncode == 0
    figures = {p.name: p.read_bytes() for p in run.glob("*.png")}
    assert len(figures) == 6
    largest = max(len(b) for b in figures.values())
    smallest = min(len(b) for b in figures.values())
    assert smallest < largest // 2  # a limit between them: some new figures fit, one does not
    done = cli([str(run), "--limit", "40"], module="scratchvae.plot", limit_bytes=largest - 1)
    assert done.returncode == 1
    assert "File too large" in one_line(done.stderr)
    assert {p.name: p.read_bytes() for p in run.glob("*.png")} == figures
    assert not list(run.glob(".*.tmp"))


# -- 10. runs started together under default names ---------------------------------------------

def test_runs_started_together_get_their_own_folders_named_by_what_differs(tmp_path):
    args = ["--train-limit", "64", "--val-limit", "16", "--epochs", "1", "--no-progress", "--no-figures",
            "--data-dir", tiny()[-1]]
    variants = [["--beta", "1"], ["--beta", "2"], ["--beta", "4"], ["--beta", "4"], []]
    procs = [subprocess.Popen([sys.executable, "-m", "scratchvae.train", *args, *v], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for v in variants]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, [err for _, err in results]
    folders = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(folders) == 5
    beta4 = [f for f in folders if f.startswith("paper-mlp-z2-beta4-limit64-")]
    assert len(beta4) == 2 and len([f for f in folders if "-beta2-" in f]) == 1
    assert len([f for f in folders if "-beta" not in f]) == 2  # beta 1 is the default: not named
    said = sorted(out.strip().splitlines()[-1] for out, _ in results)
    assert said == sorted(f"done: runs/{f}" for f in folders)
    for f in folders:
        assert json.loads((tmp_path / "runs" / f / "config.json").read_text())["epochs"] == 1
