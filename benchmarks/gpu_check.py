"""The prepared GPU check: one command, at most 8 minutes on one H100/H200, a Markdown report.

    PYTHONPATH=. python benchmarks/gpu_check.py --data .device-data/mnist --out $OUT/gpu_check
    python benchmarks/gpu_check.py --backend numpy --quick --data ../shared/data/mnist --out /tmp/gq

It writes ``report.md`` and ``report.json`` into ``--out`` (and each stage's log under
``--out/logs``) and never overwrites a report already there. Eight stages, each timed, each
in a child process with its own time budget, so one slow or crashing stage cannot take the
others' time; a failing stage is recorded as FAILED with its one-line reason and the run goes
on. Exit code: 0 when no stage failed, 1 when one did, 2 when it could not start (a report
already in --out, no MNIST, or the backend's health check failed: its one-line reason).

1. the test suite on ``--backend cupy`` (``pytest tests --backend cupy -p no:cacheprovider``, with
   ``-v`` so each test's outcome is logged), split by file across parallel processes; without
   tests/test_gpu_check.py, which runs this script on NumPy, and the stand-in re-run of the
   suite, an API-surface check for CPU-only CI;
2. numpy/cupy parity of one full training step of every architecture in
   ``scratchvae.models.ARCHITECTURES``, float64 (1e-10) and float32 (1e-4);
3. ``python -m scratchvae.train`` on full MNIST, 2 epochs of paper-mlp and 1 of paper-conv, on
   the backend and on NumPy (the machine's CPU cores), test negative ELBO side by side;
4. the K = 5000 importance-weighted bound on 1,000 test images of stage 3's paper-mlp, timed;
5. step times of paper-mlp and paper-conv at batch 64 and 256 beside PyTorch eager and PyTorch
   with the whole step in a CUDA graph;
6. the cost of one ``Generator.reseed`` next to one paper-mlp step;
7. device-to-host transfers per training step;
8. peak GPU memory per step (CuPy's memory pool).
Stages 1-3 run at the same time (2 and 3 one after the other, beside 1); the timed stages 4-8
run alone after them.

On a machine lent through the device tool (it copies the working tree, not .git; no network;
nothing installable), carry MNIST in a folder that git ignores through .git/info/exclude::

    mkdir -p .device-data && cp -r ../shared/data/mnist .device-data/mnist  # or ~/.cache/scratchvae/mnist
    mkdir -p .git/info && touch .git/info/exclude
    grep -qx '/.device-data/' .git/info/exclude || echo '/.device-data/' >> .git/info/exclude
    # the device tool: carry [".device-data/mnist"], command:
    PYTHONPATH=. python benchmarks/gpu_check.py --data .device-data/mnist --out $OUT/gpu_check --commit <sha>

``--commit`` records the tree's commit where the copy has no .git (``git rev-parse HEAD``
here); without either the report says "unknown". ``--data`` defaults to SCRATCHVAE_DATA, then
scratchvae's usual places (never a download). ``--quick`` runs every stage with tiny sizes
(seconds; CI runs ``--backend numpy --quick``, so a typo never costs GPU minutes).
``--standin`` rehearses the cupy code paths on tests/cupy_standin.py's NumPy-backed stand-in
for CuPy (an API-surface rehearsal on the CPU, never GPU verification; implies --quick).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
for _path in (str(ROOT), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402

from scratchvae import __version__  # noqa: E402
from scratchvae.atomic import write_atomically  # noqa: E402
from scratchvae.backend import BackendUnavailableError, get_xp  # noqa: E402

# (key, title, budget on a GPU in s, budget with --quick in s)
STAGES = [
    ("suite", "Test suite on the backend", 240, 60),
    ("parity", "NumPy/backend parity of one training step, every architecture", 90, 60),
    ("train", "Training on MNIST beside NumPy", 150, 60),
    ("iwae", "K = 5000 importance-weighted bound", 45, 30),
    ("steps", "Step times beside PyTorch (eager, CUDA graph)", 90, 45),
    ("reseed", "Cost of one Generator.reseed", 20, 20),
    ("syncs", "Device-to-host transfers per training step", 40, 30),
    ("memory", "Peak GPU memory per step", 25, 20),
]
TOTAL_BUDGET = {False: 460, True: 115}  # seconds for the whole check (8 minutes less start-up)
RESERVE = 3  # seconds kept back for every stage still to come
REPORTS = ("report.md", "report.json")
# the suite on a GPU without: this check's own CI test (it runs this script on NumPy), and the
# API-surface re-run of the whole suite on the NumPy stand-in (CPU-only CI, ~13 min)
SUITE_EXCLUDED_FILES = ("tests/test_gpu_check.py",)
SUITE_DESELECTED = ("tests/test_cupy_surface.py::test_backend_tests_pass_on_the_cupy_standin",)
QUICK_SUITE_FILES = ("tests/test_backend.py", "tests/test_optim.py")
OUTCOME = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "SKIPPED": "skipped",
           "XFAIL": "xfailed", "XPASS": "xpassed"}


class CheckError(Exception):
    """The check cannot start; the message says why and what to do."""


def build_parser():
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("cupy", "numpy"), default="cupy", help="backend under test (default cupy)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: every stage in seconds (for CI)")
    p.add_argument("--data", default=None, help="MNIST folder as scratchvae.data reads it (default: "
                   "SCRATCHVAE_DATA, then the cache; never downloaded)")
    p.add_argument("--out", required=False, help="folder for report.md, report.json and logs/ (never overwritten)")
    p.add_argument("--commit", default=None, help="the tree's git commit, for a copy without .git")
    p.add_argument("--standin", action="store_true", help="rehearse --backend cupy on the NumPy-backed "
                   "CuPy stand-in of tests/cupy_standin.py (API surface only; implies --quick)")
    for name in ("--stage", "--result", "--runs", "--budget"):  # a stage's child process (internal)
        p.add_argument(name, help=argparse.SUPPRESS)
    return p


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.standin:
        args.backend, args.quick = "cupy", True
        import gpu_check_standin

        gpu_check_standin.install()
    if args.stage:
        return child_main(args)
    if not args.out:
        return fail("give --out FOLDER for report.md and report.json")
    try:
        out = Path(args.out)
        refuse_existing(out)
        args.data = str(find_data(args.data))
        xp = get_xp(args.backend)  # the backend's one-time health check: one line if it fails
    except (CheckError, BackendUnavailableError) as exc:
        return fail(str(exc))
    return run_check(args, out, xp)


def refuse_existing(out: Path):
    for name in REPORTS + ("logs",):
        path = out / name
        if path.is_dir() and any(path.iterdir()) or path.is_file() and path.stat().st_size > 0:
            raise CheckError(f"{path} already exists; nothing was overwritten: give another --out")
    if out.exists() and not out.is_dir():
        raise CheckError(f"--out {out} is a file, not a folder")


def find_data(given):
    from scratchvae.data import DataNotFoundError, locate

    try:
        return locate("mnist", given or os.environ.get("SCRATCHVAE_DATA") or None, download=False)
    except DataNotFoundError as exc:
        raise CheckError(f"{' '.join(str(exc).split())} (the check never downloads: carry MNIST and "
                         "give --data, see this script's docstring)") from None


# ---------------------------------------------------------------- the run

def run_check(args, out: Path, xp):
    t_start = time.perf_counter()
    deadline = t_start + TOTAL_BUDGET[args.quick]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report = dict(title=f"GPU check, backend {args.backend}" + (" (--quick)" if args.quick else "")
                  + (" on the CuPy stand-in (no GPU)" if args.standin else ""),
                  machine=machine_facts(args, xp), stages={}, total_budget_s=TOTAL_BUDGET[args.quick])
    for key, title, *_ in STAGES:
        report["stages"][key] = dict(number=1 + [k for k, *_ in STAGES].index(key), title=title,
                                     status="NOT RUN", reason="", summary="", seconds=None, budget_s=None)
    write_report(out, report, time.perf_counter() - t_start)
    runs = Path(tempfile.mkdtemp(prefix="gpu_check_runs_"))
    try:
        def budget_of(key):
            nominal = dict((k, q if args.quick else g) for k, _, g, q in STAGES)[key]
            later = len(STAGES) - list(report["stages"]).index(key) - 1
            return min(nominal, deadline - time.perf_counter() - RESERVE * later)

        def record(key, outcome):
            report["stages"][key].update(outcome)
            write_report(out, report, time.perf_counter() - t_start)

        suite = Suite(args, logs, budget_of("suite"))  # runs beside stages 2 and 3
        report["stages"]["suite"]["budget_s"] = round(suite.budget)
        for key in ("parity", "train"):
            record(key, run_stage(key, args, budget_of(key), runs, logs))
        record("suite", suite.finish())
        for key in ("iwae", "steps", "reseed", "syncs", "memory"):
            record(key, run_stage(key, args, budget_of(key), runs, logs))
        for log in runs.glob("*.log"):
            shutil.copy(log, logs / log.name)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    failed = [k for k, s in report["stages"].items() if s["status"] != "PASSED" and s["status"] != "SKIPPED"]
    print(f"gpu_check: {len(STAGES) - len(failed)} of {len(STAGES)} stages passed or skipped"
          + (f"; failed: {', '.join(failed)}" if failed else "")
          + f"; {time.perf_counter() - t_start:.0f} s; report: {out / 'report.md'}")
    return 1 if failed else 0


def run_stage(key, args, budget, runs: Path, logs: Path):
    """One stage in a child process, killed at ``budget`` seconds."""
    if budget < 5:
        return dict(status="SKIPPED", reason="no time left in the check's total budget", seconds=0.0,
                    budget_s=round(max(budget, 0)))
    result_file = runs / f"{key}.result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", key, "--backend", args.backend,
           "--data", args.data, "--result", str(result_file), "--runs", str(runs), "--budget", str(int(budget))]
    cmd += ["--quick"] * args.quick + ["--standin"] * args.standin
    t0 = time.perf_counter()
    with open(logs / f"{key}.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env=stage_env(args),
                                start_new_session=True)
        killed = wait_or_kill(proc, budget)
    seconds = round(time.perf_counter() - t0, 2)
    base = dict(seconds=seconds, budget_s=round(budget))
    if killed:
        return dict(base, status="FAILED", reason=f"ran past its budget of {budget:.0f} s (killed; see logs/{key}.log)")
    if not result_file.is_file():
        tail = ((logs / f"{key}.log").read_text().strip().splitlines() or [""])[-1][:300]
        return dict(base, status="FAILED", reason=f"exit {proc.returncode} without a result: {tail}")
    return dict(json.loads(result_file.read_text()), **base)


def wait_or_kill(proc, timeout):
    """Wait for ``proc``; past ``timeout`` kill its whole process group. True if killed."""
    try:
        proc.wait(timeout=max(timeout, 0.1))
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def stage_env(args):
    from gpu_check_stages import child_env

    env = child_env()
    env["SCRATCHVAE_DATA"] = str(args.data)  # step_time's batches and every loader find MNIST
    return env


def child_main(args):
    """``--stage NAME``: run one stage, write its result as JSON to ``--result``."""
    import traceback

    from gpu_check_stages import STAGE_FUNCTIONS, one_line

    try:
        outcome = STAGE_FUNCTIONS[args.stage](args)
    except Exception as exc:  # noqa: BLE001 - the stage fails, the check goes on
        traceback.print_exc()
        outcome = dict(status="FAILED", reason=one_line(exc), summary="", markdown="", details={})
    write_atomically(Path(args.result), json.dumps(clean(outcome), indent=1, allow_nan=False))
    return 0


# ---------------------------------------------------------------- stage 1: the test suite

class Suite:
    """Stage 1: the suite in parallel pytest processes (test files split by size), started at
    once; ``finish()`` waits until the budget and parses their verbose output."""

    def __init__(self, args, logs: Path, budget):
        self.budget, self.logs, self.t0, self.quick = budget, logs, time.perf_counter(), args.quick
        self.cwd = Path(tempfile.mkdtemp(prefix="gpu_check_suite_"))  # hypothesis' database goes here, not the tree
        if args.quick:
            files, shards = list(QUICK_SUITE_FILES), 1
        else:
            files = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").glob("test_*.py"))
                     if str(p.relative_to(ROOT)) not in SUITE_EXCLUDED_FILES]
            shards = max(1, min(6, (os.cpu_count() or 2) // 2))
        groups = [[] for _ in range(shards)]
        for f in sorted(files, key=lambda f: -(ROOT / f).stat().st_size):  # largest first, to the lightest group
            min(groups, key=lambda g: sum((ROOT / x).stat().st_size for x in g)).append(f)
        self.groups = [g for g in groups if g]
        env = dict(stage_env(args), SCRATCHVAE_TEST_SHARED_MNIST=str(Path(args.data).resolve()))
        if "SCRATCHVAE_DATA" not in os.environ:
            env.pop("SCRATCHVAE_DATA")  # the tests see the environment the user gave
        self.command = ["-m", "pytest", "--backend", args.backend, "-p", "no:cacheprovider", "-v",
                        "--color=no", "--durations=5", "--rootdir", str(ROOT)]
        self.command += ["--cupy-standin"] * args.standin
        if not args.quick:
            self.command += [a for d in SUITE_DESELECTED for a in ("--deselect", d)]
        self.procs = []
        if self.budget < 5:
            return
        for i, group in enumerate(self.groups):
            log = open(logs / f"suite-{i + 1}.log", "w")
            proc = subprocess.Popen([sys.executable, *self.command, *[str(ROOT / f) for f in group]],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=str(self.cwd), env=env,
                                    start_new_session=True)
            self.procs.append((proc, log))

    def finish(self):
        base = dict(budget_s=round(self.budget))
        if not self.procs:
            return dict(base, status="SKIPPED", reason="no time left in the check's total budget", seconds=0.0)
        killed = []
        for i, (proc, log) in enumerate(self.procs):
            if wait_or_kill(proc, self.t0 + self.budget - time.perf_counter()):
                killed.append(i + 1)
            log.close()
        seconds = round(time.perf_counter() - self.t0, 2)
        shutil.rmtree(self.cwd, ignore_errors=True)
        outcomes, durations, codes = {}, [], []
        for i, (proc, _) in enumerate(self.procs):
            text = (self.logs / f"suite-{i + 1}.log").read_text(errors="replace")
            codes.append(proc.returncode)
            parse_pytest_verbose(text, outcomes, durations, self.cwd)
        counts = {v: 0 for v in OUTCOME.values()}
        for outcome, _ in outcomes.values():
            counts[outcome] += 1
        bad = sorted(t for t, (o, _) in outcomes.items() if o in ("failed", "error"))
        skips = {}
        for test, (outcome, why) in outcomes.items():
            if outcome == "skipped":
                skips[why] = skips.get(why, 0) + 1
        md = [f"`python -m pytest {' '.join(self.command[2:])}` over "
              f"{sum(len(g) for g in self.groups)} test files in {len(self.groups)} parallel processes "
              f"(logs/suite-N.log), from a temporary folder (so hypothesis writes nothing into the tree).",
              ("A few files only (--quick): " + ", ".join(QUICK_SUITE_FILES) + "." if self.quick else
               "Left out: " + ", ".join(f"`{x}`" for x in SUITE_EXCLUDED_FILES + SUITE_DESELECTED)
               + " (this check's own CI test, and the CPU-only stand-in re-run of the suite)."),
              "", " | ".join(f"{n} {k}" for k, n in counts.items() if n) or "no test finished"]
        if bad:
            md += ["", "Failing tests:", *[f"- `{t}`" for t in bad[:60]]]
            if len(bad) > 60:
                md.append(f"- ... {len(bad) - 60} more (logs/suite-N.log)")
        if skips:
            md += ["", "Skip reasons (count):", *[f"- {n} x {why[:200]}" for why, n in
                                                  sorted(skips.items(), key=lambda kv: -kv[1])[:8]]]
        if durations:
            md += ["", "Slowest (seconds, phase, test):", *[f"- {d}" for d in
                                                           sorted(durations, key=lambda d: -float(d.split('s')[0]))[:8]]]
        details = dict(counts=counts, failing=bad, skip_reasons=skips, exit_codes=codes, killed_shards=killed,
                       files=self.groups)
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no test finished"
        reason = ""
        if killed:
            reason = f"ran past its budget of {self.budget:.0f} s (killed {len(killed)} of {len(self.procs)} processes)"
        elif bad:
            reason = f"{len(bad)} failing: {', '.join(bad[:5])}" + (" ..." if len(bad) > 5 else "")
        elif any(c not in (0,) for c in codes):
            reason = f"pytest exit codes {codes}"
        elif counts["passed"] == 0:
            reason = "no test passed"
        return dict(base, status="FAILED" if reason else "PASSED", reason=reason, summary=summary,
                    markdown="\n".join(md), details=details, seconds=seconds)


def parse_pytest_verbose(text, outcomes, durations, cwd=ROOT):
    """Per-test outcomes from ``pytest -v`` lines (``tests/x.py::t[cupy] PASSED [ 5%]``) into
    ``outcomes`` (id -> (outcome, skip reason)); the ``--durations`` lines into ``durations``.
    A failure or error at teardown wins over the test's own pass. Paths, which pytest prints
    relative to its working folder ``cwd``, become relative to the repository root."""
    in_durations = False
    for line in text.splitlines():
        if "slowest" in line and "durations" in line:
            in_durations = True
            continue
        if in_durations:
            if line.startswith("=") or not line.strip():
                in_durations = "=" not in line and in_durations
                continue
            if line.split()[0].endswith("s") and line.split()[0][:-1].replace(".", "").isdigit():
                durations.append(line.strip())
            continue
        head, _, rest = line.partition(" ")
        if "::" not in head:
            continue
        path, _, test = head.partition("::")
        with contextlib.suppress(ValueError):
            path = str((Path(cwd) / path).resolve().relative_to(ROOT))
        head = f"{path}::{test}"
        word = rest.split()[0] if rest.split() else ""
        if word not in OUTCOME:
            continue
        outcome = OUTCOME[word]
        why = rest[len(word):].split("[")[0].strip(" ()") if outcome == "skipped" else ""
        previous = outcomes.get(head, ("", ""))[0]
        if previous not in ("failed", "error"):
            outcomes[head] = (outcome, why)


# ---------------------------------------------------------------- machine facts and the report

def machine_facts(args, xp):
    facts = dict(date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 commit=git_commit(args.commit), scratchvae=__version__, python=platform.python_version(),
                 numpy=np.__version__, platform=platform.platform(), cpu_cores=os.cpu_count(),
                 backend=args.backend, quick=args.quick, standin=args.standin)
    for package in ("torch", "pytest", "hypothesis"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            facts[package] = "not installed"
    if xp is np:
        facts["gpu"] = "none (backend numpy)"
        return facts
    facts["cupy"] = getattr(xp, "__version__", "?")
    runtime = xp.cuda.runtime
    for key, read in (("gpu", lambda: runtime.getDeviceProperties(0)),
                      ("cuda_driver", lambda: runtime.driverGetVersion()),
                      ("cuda_runtime", lambda: runtime.runtimeGetVersion())):
        try:
            value = read()
        except Exception as exc:  # noqa: BLE001 - a fact that cannot be read says so
            facts[key] = f"unknown ({type(exc).__name__})"
            continue
        if key == "gpu":
            name = value.get("name", b"?")
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory = value.get("totalGlobalMem", 0) / 2**30
            cc = f", compute capability {value['major']}.{value['minor']}" if "major" in value else ""
            facts[key] = f"{name} ({memory:.0f} GiB, {value.get('multiProcessorCount', '?')} SMs{cc})"
        else:
            facts[key] = f"{value // 1000}.{value % 1000 // 10} ({value})"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            facts["nvidia_smi"] = out.stdout.strip().splitlines()[0] if out.stdout.strip() else out.stderr.strip()[:200]
        except (OSError, subprocess.SubprocessError) as exc:
            facts["nvidia_smi"] = f"unknown ({type(exc).__name__})"
    return facts


def git_commit(given):
    if given:
        return f"{given} (given with --commit)"
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        return "unknown"
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + (" (with uncommitted changes)" if sha and dirty else "")


def clean(value):
    """JSON-safe: NumPy numbers to Python ones, infinities and NaN to strings."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(out: Path, report, seconds):
    report = dict(report, elapsed_s=round(seconds, 1))
    stages = report["stages"].values()
    failed = sum(s["status"] == "FAILED" for s in stages)
    done = sum(s["status"] != "NOT RUN" for s in stages)
    report["verdict"] = (f"{sum(s['status'] == 'PASSED' for s in stages)} passed, {failed} failed, "
                         f"{sum(s['status'] == 'SKIPPED' for s in stages)} skipped, "
                         f"{len(STAGES) - done} not run; {seconds:.0f} s of {report['total_budget_s']} s")
    write_atomically(out / "report.json", json.dumps(clean(report), indent=1, allow_nan=False) + "\n")
    write_atomically(out / "report.md", render_markdown(report))


def render_markdown(report):
    m = report["machine"]
    lines = [f"# {report['title']}", "", f"**{report['verdict']}**", "", "## Machine", "",
             "| fact | value |", "|---|---|"]
    for key in ("date", "commit", "gpu", "nvidia_smi", "cuda_driver", "cuda_runtime", "cupy", "numpy", "torch",
                "python", "scratchvae", "pytest", "hypothesis", "cpu_cores", "platform"):
        if key in m:
            lines.append(f"| {key.replace('_', ' ')} | {m[key]} |")
    lines += ["", "## Stages", "", "| # | stage | status | seconds | budget s | summary |", "|---|---|---|---|---|---|"]
    for s in report["stages"].values():
        lines.append(f"| {s['number']} | {s['title']} | {s['status']} | {s['seconds'] if s['seconds'] is not None else '-'} "
                     f"| {s['budget_s'] if s['budget_s'] is not None else '-'} | {s.get('summary', '')} |")
    for s in report["stages"].values():
        lines += ["", f"## {s['number']}. {s['title']}: {s['status']}", ""]
        if s.get("reason"):
            lines += [f"**{'Reason' if s['status'] != 'FAILED' else 'FAILED'}:** {s['reason']}", ""]
        if s.get("markdown"):
            lines.append(s["markdown"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
