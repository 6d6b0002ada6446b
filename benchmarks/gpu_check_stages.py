"""The measurements of ``benchmarks/gpu_check.py``: one function per stage.

``gpu_check.py`` runs each stage in a child process of its own (``--stage NAME``), so that a
stage that hangs or crashes is killed at its time budget and the report goes on. A stage
function takes the parsed arguments and returns a dict: ``status`` ("PASSED", "FAILED" or
"SKIPPED"), ``reason`` (one line; empty when passed), ``summary`` (one line), ``markdown``
(the body of its section in report.md) and ``details`` (the numbers, for report.json).

On ``--backend numpy`` every stage runs the same code on NumPy (what CI exercises with
``--quick``); the parts that only exist on a GPU say SKIPPED with the reason.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
for _path in (str(ROOT), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from scratchvae.backend import Generator, get_xp, to_device, to_host  # noqa: E402
from scratchvae.layers.base import iter_layers  # noqa: E402
from scratchvae.models import ARCHITECTURES, build_vae  # noqa: E402
from scratchvae.optim import Adam  # noqa: E402

TOLERANCE = {"float64": 1e-10, "float32": 1e-4}  # parity: largest relative error allowed
SMALL_OPTIONS = dict(widths=(4, 8, 8, 8), image_size=16)  # --quick: a reduced resnet18-vae
TRAIN_RUNS = (("paper-mlp", 2), ("paper-conv", 1))  # stage 3: (model, epochs)
STEP_CONFIGS = [(m, b) for m in ("paper-mlp", "paper-conv") for b in (64, 256)]  # stages 5, 8
ELBO_AGREEMENT = 0.05  # stage 3: test -ELBO of the two backends within 5 % (different seeds' spread)


def result(status, summary, markdown, details=None, reason=""):
    return dict(status=status, summary=summary, markdown=markdown, details=details or {}, reason=reason)


def synchronize(xp):
    """Wait for the device's queued work (a no-op on NumPy)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def one_line(exc):
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def child_env(threads=None):
    """The environment of a child process: the tree on PYTHONPATH (absolute), and optionally
    the BLAS/OpenMP threads of a NumPy run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    if threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def python_module(args, module):
    """The command that runs ``python -m module`` as this check runs its backend (on the CuPy
    stand-in for ``--standin``, see gpu_check_standin.py)."""
    if getattr(args, "standin", False):
        return [sys.executable, str(BENCHMARKS / "gpu_check_standin.py"), module]
    return [sys.executable, "-m", module]


# ---------------------------------------------------------------- 2. parity of one training step

def relative_error(a, b):
    """max|a - b| / max(max|a|, max|b|) over all entries, in float64: the largest difference
    relative to the largest magnitude of either array (max-norm). 0 when both are all zero or
    equal; infinity when the shapes differ or a value is not finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.inf
    diff = float(np.abs(a - b).max(initial=0.0))
    if diff == 0.0:
        return 0.0
    return diff / max(float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))


def compare_snapshots(reference, candidate, tolerance):
    """Every array of two step snapshots (dicts name -> host array) compared by
    ``relative_error``. Returns ``(errors by name, names above tolerance or missing)``."""
    errors = {name: relative_error(reference[name], candidate[name]) if name in candidate else math.inf
              for name in reference}
    missing = sorted(set(candidate) - set(reference))
    errors.update({name: math.inf for name in missing})
    failures = sorted(name for name, err in errors.items() if not err <= tolerance)
    return errors, failures


def feed_host_noise(vae, seed):
    """Make every draw of ``vae``'s generators (dropout masks, eps, binarization) come from a
    host NumPy stream seeded by ``seed``, copied to the model's backend: the two backends'
    own streams differ, this makes both models see the same numbers. Patches the generator
    instances only (no scratchvae code changes)."""
    generators = {}
    for g in [vae.rng] + [layer.rng for layer in iter_layers(vae)]:
        generators.setdefault(id(g), g)
    for index, g in enumerate(generators.values()):
        host = [np.random.default_rng([seed, index])]

        def normal(shape, dtype=None, loc=0.0, scale=1.0, g=g, host=host):
            z = host[0].standard_normal(tuple(shape)) * scale + loc
            return to_device(z, g.backend, dtype=dtype or vae.dtype)

        def uniform(shape, low=0.0, high=1.0, dtype=None, g=g, host=host):
            u = host[0].random(tuple(shape)) * (high - low) + low
            return to_device(u, g.backend, dtype=dtype or vae.dtype)

        def bernoulli(shape, p_one, dtype=None, g=g, host=host):
            return to_device(host[0].random(tuple(shape)) < p_one, g.backend, dtype=dtype or vae.dtype)

        def reseed(*parts, g=g, host=host, index=index):
            host[0] = np.random.default_rng([seed, index, *map(int, parts)])
            return g

        g.normal, g.uniform, g.bernoulli, g.reseed = normal, uniform, bernoulli, reseed
    return len(generators)


def step_snapshot(vae, opt, x, eps):
    """One full training step (forward in training mode, backward, Adam); host copies of the
    loss terms, every gradient, every parameter after the update, the update itself (after -
    before, in float64) and every buffer after the step."""
    before = {k: to_host(v).astype(np.float64) for k, v in vae.params.items()}
    terms = vae.forward(x, eps=eps, training=True)
    vae.backward()
    snap = {f"loss.{name}": to_host(getattr(terms, name)) for name in ("loss", "recon", "kl")}
    snap.update({f"grad {k}": to_host(g).copy() for k, g in vae.grads.items()})
    opt.step()
    for k, p in vae.params.items():
        after = to_host(p).copy()
        snap[f"param {k}"] = after
        snap[f"update {k}"] = after.astype(np.float64) - before[k]
    snap.update({f"buffer {k}": to_host(b).copy() for k, b in vae.buffers.items()})
    return snap


def architecture_options(name, quick):
    """``build_vae`` options: a reduced width where the architecture takes one, for --quick."""
    if not quick:
        return {}
    accepted = inspect.signature(ARCHITECTURES[name]["build"]).parameters
    return {k: v for k, v in SMALL_OPTIONS.items() if k in accepted}


def parity_of(name, dtype, backend, batch, quick, seed=0):
    """One training step of architecture ``name`` on NumPy and on ``backend`` from the same
    weights, batch, eps and dropout masks; ``(errors by name, failures, seconds)``."""
    spec = ARCHITECTURES[name]
    options = architecture_options(name, quick)
    image_shape = spec["image_shape"]
    if "image_size" in options:
        image_shape = (image_shape[0], options["image_size"], options["image_size"])
    host = np.random.default_rng([seed, 1])
    low, high = spec["data_range"]
    x_host = low + (high - low) * host.random((batch,) + tuple(image_shape))
    snaps, seconds, initial = [], {}, None
    for role, side in (("reference", "numpy"), ("candidate", backend)):
        t0 = time.perf_counter()
        vae = build_vae(name, dtype=dtype, seed=seed, backend=side, options=options)
        if initial is None:  # host copies of the reference's weights and buffers before its step
            initial = ({k: to_host(p).copy() for k, p in vae.params.items()},
                       {k: to_host(b).copy() for k, b in vae.buffers.items()})
        else:  # start the candidate from exactly those
            for k, p in vae.params.items():
                p[...] = to_device(initial[0][k], side, dtype=p.dtype)
            for k, b in vae.buffers.items():
                b[...] = to_device(initial[1][k], side, dtype=b.dtype)
        feed_host_noise(vae, seed)
        opt = Adam(vae.params, vae.grads, lr=spec["defaults"].get("lr", 1e-3))
        x = to_device(x_host, side, dtype=dtype)
        eps = to_device(host_eps(seed, batch, vae.latent_dim), side, dtype=dtype)
        snaps.append(step_snapshot(vae, opt, x, eps))
        synchronize(vae.rng.xp)
        seconds[f"{role} ({side})"] = time.perf_counter() - t0
    errors, failures = compare_snapshots(snaps[0], snaps[1], TOLERANCE[dtype])
    return errors, failures, seconds


def host_eps(seed, batch, latent_dim):
    return np.random.default_rng([seed, 2]).standard_normal((batch, latent_dim))


def stage_parity(args):
    names = list(ARCHITECTURES)  # every architecture scratchvae.models offers, read from the code
    batch = 4 if args.quick else 8
    rows, details, failed = [], {}, []
    for name in names:
        for dtype in ("float64", "float32"):
            key = f"{name} {dtype}"
            try:
                errors, failures, seconds = parity_of(name, dtype, args.backend, batch, args.quick)
            except Exception as exc:  # noqa: BLE001 - one architecture's crash is its row, not the stage's end
                traceback.print_exc()
                details[key] = dict(error=one_line(exc))
                failed.append(key)
                rows.append(f"| {name} | {dtype} | - | - | - | FAILED: {one_line(exc)} |")
                continue
            worst = max(errors, key=lambda k: errors[k])
            groups = {kind: max((e for n, e in errors.items() if n.startswith(kind)), default=0.0)
                      for kind in ("loss.", "grad ", "update ", "param ", "buffer ")}
            details[key] = dict(architecture=name, dtype=dtype, arrays=len(errors), tolerance=TOLERANCE[dtype],
                                worst=worst, worst_error=errors[worst], failures=failures,
                                max_error_by_kind={k.strip(" ."): v for k, v in groups.items()},
                                seconds={k: round(v, 3) for k, v in seconds.items()})
            status = "ok" if not failures else f"FAILED: {len(failures)} above {TOLERANCE[dtype]:g} ({', '.join(failures[:3])})"
            if failures:
                failed.append(key)
            rows.append(f"| {name} | {dtype} | {len(errors)} | {groups['grad ']:.2e} | "
                        f"{groups['update ']:.2e} / {groups['param ']:.2e} | {status} |")
    architectures = len(names)
    compared = len({d["architecture"] for d in details.values() if "architecture" in d})
    md = [f"Reference: NumPy float64/float32; candidate: `{args.backend}`. Batch {batch} "
          f"{'(reduced resnet widths, --quick)' if args.quick else ''}; the same initial weights "
          "(copied from the NumPy model), the same batch, eps and dropout masks (drawn on the host "
          "and copied to each backend). Error of an array: max|a - b| / max(max|a|, max|b|) "
          f"(max-norm relative). Tolerance: float64 {TOLERANCE['float64']:g}, float32 "
          f"{TOLERANCE['float32']:g}, for every loss term, gradient, Adam update, updated "
          "parameter and buffer." + (" On --backend numpy the candidate is NumPy itself, so every "
                                     "error is 0: such a run exercises the code, not a GPU."
                                     if args.backend == "numpy" else ""), "",
          "| architecture | dtype | arrays | worst gradient | worst update / parameter | result |",
          "|---|---|---|---|---|---|", *rows]
    details = dict(architectures=names, compared=compared, batch=batch, tolerance=TOLERANCE, cases=details)
    summary = f"{compared} of {architectures} architectures compared in float64 and float32; {len(failed)} case(s) failed"
    status = "FAILED" if failed or compared != architectures else "PASSED"
    reason = f"above tolerance or crashed: {', '.join(failed)}" if failed else ""
    return result(status, summary, "\n".join(md), details, reason)


# ---------------------------------------------------------------- 3. train on full MNIST

ROLES = ("candidate", "reference")  # stage 3: the backend under test, and NumPy beside it


def train_plan(args):
    """``{(role, model): (backend, epochs, run folder)}`` of stage 3: every model on the backend
    under test (the candidate) and on NumPy (the reference; on ``--backend numpy`` the same
    configuration twice, which must agree exactly)."""
    backends = dict(candidate=args.backend, reference="numpy")
    return {(role, model): (backends[role], epochs, Path(args.runs) / f"{role}-{model}")
            for model, epochs in TRAIN_RUNS for role in ROLES}


def stage_train(args):
    budget = float(args.budget) - 5  # leave time to report the runs that finished
    threads = max(1, (os.cpu_count() or 2) // 4)
    plan = train_plan(args)
    jobs = {}
    for (role, model), (backend, epochs, folder) in plan.items():
        cmd = python_module(args, "scratchvae.train") + [
            "--backend", backend, "--model", model, "--epochs", str(epochs), "--data-dir", str(args.data),
            "--out", str(folder), "--no-progress", "--no-figures"]
        if args.quick:
            cmd += ["--train-limit", "256" if model == "paper-mlp" else "128", "--val-limit", "128"]
        log_path = Path(args.runs) / f"train-{role}-{model}.log"
        with open(log_path, "w") as log:
            # in this stage's process group, so that killing the stage at its budget kills them too
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                    env=child_env(threads if backend == "numpy" else None))
        jobs[(role, model)] = (proc, log_path, time.perf_counter())
    deadline = time.perf_counter() + budget
    runs, failed = {}, []
    for key, (proc, log_path, t0) in jobs.items():
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        backend, epochs, folder = plan[key]
        rows = read_rows(folder)
        tail = (log_path.read_text().strip().splitlines() or [""])[-1][:200]
        runs[key] = dict(backend=backend, epochs=epochs, exit=code, seconds=round(time.perf_counter() - t0, 1),
                         rows=rows)
        if code != 0 or len(rows) != epochs:
            why = "ran past the stage's budget (killed)" if code is None else f"exit {code}: {tail}"
            failed.append(f"{key[0]} {backend} {key[1]} ({why})")
    md = [f"`python -m scratchvae.train --model M --epochs E --backend B --no-figures` on "
          f"{'a tiny subset (--quick: 256 or 128 training images)' if args.quick else 'the 60,000 MNIST training images'}, "
          f"the test negative ELBO on {'the first 128' if args.quick else 'the 10,000'} test images after "
          f"each epoch (nats per image). All {len(plan)} runs start at once; each NumPy run has "
          f"{threads} BLAS thread(s), so the seconds are those of a shared machine. The backends draw "
          "different initial weights and noise (their generators' streams differ), so the two "
          "losses agree to a seed's spread, not exactly: the check is |difference| <= "
          f"{ELBO_AGREEMENT:.0%} of the NumPy loss (on --backend numpy: equal; with --quick on "
          "another backend: not checked).", "",
          f"| model | epoch | {args.backend} (tested) test -ELBO | s | numpy (reference) test -ELBO | s | difference |",
          "|---|---|---|---|---|---|---|"]
    for model, epochs in TRAIN_RUNS:
        ours, theirs = runs[("candidate", model)]["rows"], runs[("reference", model)]["rows"]
        for epoch in range(max(len(ours), len(theirs))):
            a = ours[epoch] if epoch < len(ours) else None
            b = theirs[epoch] if epoch < len(theirs) else None
            diff = float(a["test_loss"]) - float(b["test_loss"]) if a and b else math.nan
            if a and b and not agree(args, float(a["test_loss"]), float(b["test_loss"])):
                failed.append(f"{model} epoch {epoch + 1}: {a['test_loss']} vs {b['test_loss']}")
            md.append(f"| {model} | {epoch + 1} | {a['test_loss'] if a else '-'} | {a['seconds'] if a else '-'} "
                      f"| {b['test_loss'] if b else '-'} | {b['seconds'] if b else '-'} | {diff:+.2f} |")

    def last(key):
        rows = runs[key]["rows"]
        return rows[-1]["test_loss"] if rows else "-"
    summary = "; ".join(f"{m} {args.backend} {last(('candidate', m))} vs numpy {last(('reference', m))}"
                        for m, _ in TRAIN_RUNS) + " nats (last epoch's test -ELBO)"
    details = {f"{role} {model}": run for (role, model), run in runs.items()}
    if failed:
        return result("FAILED", summary, "\n".join(md), details, "; ".join(failed))
    return result("PASSED", summary, "\n".join(md), details)


def agree(args, ours, numpy_loss):
    """Stage 3's check: on NumPy, the same configuration twice gives the same loss exactly; on
    another backend, within ELBO_AGREEMENT of NumPy's (full runs only: --quick's tiny runs
    differ by more between seeds, so they are reported, not checked)."""
    if args.backend == "numpy":
        return ours == numpy_loss
    return args.quick or abs(ours - numpy_loss) <= ELBO_AGREEMENT * abs(numpy_loss)


def read_rows(folder):
    import csv

    path = Path(folder) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- 4. the importance-weighted bound

def stage_iwae(args):
    from scratchvae.runs.checkpoint import load_model
    from scratchvae.data import load_split
    from scratchvae.estimators import importance_weighted_log_likelihood, preprocess_test_images

    k, images = (16, 20) if args.quick else (5000, 1000)
    folder = Path(args.runs) / "candidate-paper-mlp"
    note = f"the paper-mlp trained in stage 3 ({folder.name})"
    if (folder / "checkpoint.npz").is_file():
        vae, config = load_model(folder, backend=args.backend)
        preprocess, seed = config.get("preprocess", "unit"), config.get("seed", 0)
    else:
        vae, preprocess, seed = build_vae("paper-mlp", seed=0, backend=args.backend), "unit", 0
        note = "an UNTRAINED paper-mlp (stage 3 left no checkpoint): the time holds, the NLL does not"
    test_u8, _ = load_split("test", "mnist", args.data, download=False)
    x = to_device(preprocess_test_images(test_u8[:images], preprocess, seed), args.backend)
    xp = vae.rng.xp
    t0 = time.perf_counter()
    importance_weighted_log_likelihood(vae, x[: min(images, 100)], k=64)  # compiles the kernels
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    log_px = importance_weighted_log_likelihood(vae, x, k=k)  # returns host numbers: synchronized
    synchronize(xp)
    seconds = time.perf_counter() - t0
    nll = float(-log_px.mean())
    codes = k * images
    md = (f"`scratchvae.estimators.importance_weighted_log_likelihood` (K = {k:,}, batch 100, the "
          f"default codes per decoder call) on the first {images:,} MNIST test images, {note}: "
          f"**{seconds:.2f} s** ({codes / seconds:,.0f} codes/s; {seconds * 10_000 / images:.1f} s "
          f"for the 10,000 test images at this rate), IWAE NLL {nll:.3f} nats. A first call "
          f"(K = 64, {min(images, 100)} images, compiles the kernels) took {warm:.2f} s and is not counted.")
    details = dict(k=k, images=images, seconds=round(seconds, 3), warmup_seconds=round(warm, 3),
                   codes_per_second=codes / seconds, iwae_nll=nll, model=note)
    if not math.isfinite(nll):
        return result("FAILED", f"NLL {nll}", md, details, f"the IWAE NLL is {nll}")
    return result("PASSED", f"K = {k:,} on {images:,} images: {seconds:.2f} s, NLL {nll:.2f} nats", md, details)


# ---------------------------------------------------------------- 5. step times against PyTorch

def graph_step_class():
    """``TorchStep`` with the whole step (forward, backward, Adam) captured in one CUDA graph."""
    from step_time import TorchStep

    class TorchGraphStep(TorchStep):
        """PyTorch's whole-network capture: static input, capturable Adam, warm-up on a side
        stream, gradients set to None before capture; a step is one ``graph.replay()``."""

        def __init__(self, model, batch):
            super().__init__(model, batch, "cuda")
            torch = self.torch
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, capturable=True)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    TorchStep.__call__(self)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            self.opt.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                recon, kl = self.model(self.x)
                self.loss = (recon + kl).mean()
                self.loss.backward()
                self.opt.step()

        def __call__(self):
            self.graph.replay()

    return TorchGraphStep


def stage_step_times(args):
    from step_time import ScratchStep, TorchStep, time_alternating

    steps, warmup, block = (4, 1, 2) if args.quick else (200, 10, 50)
    batches = (4, 8) if args.quick else (64, 256)
    configs = [(m, b) for m in ("paper-mlp", "paper-conv") for b in batches]
    try:
        import torch
    except ImportError as exc:
        torch, torch_why = None, f"PyTorch is not installed ({exc})"
    device = "cuda" if args.backend != "numpy" else "cpu"
    graph_why = ""
    if torch is not None:
        torch.set_num_threads(2 if args.quick else max(1, (os.cpu_count() or 2) // 2))
        for flag in ("matmul", "cudnn"):  # TF32 off: both sides compute in full float32
            with contextlib.suppress(Exception):
                getattr(torch.backends, flag).allow_tf32 = False
        if device == "cuda" and not torch.cuda.is_available():
            torch, torch_why = None, f"torch {torch.__version__} sees no CUDA device"
    if torch is None:
        graph_why = torch_why
    elif device != "cuda":
        graph_why = "CUDA graphs need a CUDA device (this run is on the CPU)"
    rows, details, graph_errors = [], {}, []
    for model, batch in configs:
        ours = ScratchStep(model, batch, args.backend)
        ours.sync = lambda xp=ours.xp: synchronize(xp)
        entry = {}
        if torch is None:
            t_ours, _ = time_alternating(ours, ours, steps, warmup, block)
            entry.update(scratchvae_ms=t_ours * 1e3)
        else:
            eager = TorchStep(model, batch, device)
            t_ours, t_eager = time_alternating(ours, eager, steps, warmup, block)
            entry.update(scratchvae_ms=t_ours * 1e3, torch_eager_ms=t_eager * 1e3)
            if not graph_why:
                try:  # a capture that fails costs its column, not the eager numbers
                    graphed = graph_step_class()(model, batch)
                    t_ours2, t_graph = time_alternating(ours, graphed, steps, warmup, block)
                    entry.update(scratchvae_ms_second_pairing=t_ours2 * 1e3, torch_graph_ms=t_graph * 1e3)
                except Exception as exc:  # noqa: BLE001 - reported in the table and the details
                    traceback.print_exc()
                    entry["torch_graph_error"] = one_line(exc)
                    graph_errors.append(f"{model} {batch}: {one_line(exc)}")
        details[f"{model} {batch}"] = entry
        cells = [f"{entry['scratchvae_ms']:.3f}" + (f" / {entry['scratchvae_ms_second_pairing']:.3f}"
                                                    if "scratchvae_ms_second_pairing" in entry else "")]
        for key, ours_key in (("torch_eager_ms", "scratchvae_ms"), ("torch_graph_ms", "scratchvae_ms_second_pairing")):
            cells.append(f"{entry[key]:.3f} ({entry[ours_key] / entry[key]:.2f})" if key in entry else "-")
        rows.append(f"| {model} | {batch} | " + " | ".join(cells) + " |")
    versions = f"torch {torch.__version__} (CUDA {torch.version.cuda})" if torch is not None else torch_why
    md = [f"Milliseconds per full training step (forward, backward, Adam), median of {steps} steps "
          f"after {warmup} warm-up, each synchronized; scratchvae `{args.backend}` and PyTorch on "
          f"`{device}` ({versions}) alternate in blocks of {block} steps in one process "
          "(`benchmarks/step_time.py`'s `ScratchStep`, `TorchStep`, `time_alternating`; "
          "`torch_reference.py`'s models). TF32 is off in PyTorch, so both compute in float32. "
          "The CUDA-graph column captures PyTorch's whole step (static input, "
          "`Adam(capturable=True)`) and replays it. In brackets: scratchvae / PyTorch "
          "(below 1: scratchvae is faster), each against scratchvae's median in that pairing "
          "(the two scratchvae numbers).",
          "", "| model | batch | scratchvae ms | torch eager ms (ratio) | torch CUDA graph ms (ratio) |",
          "|---|---|---|---|---|", *rows]
    if graph_why:
        md += ["", f"CUDA graph: SKIPPED ({graph_why})."]
    if torch is None:
        md += ["", f"PyTorch: SKIPPED ({torch_why})."]
    if graph_errors:
        md += ["", "CUDA graph capture FAILED: " + "; ".join(graph_errors) + " (logs/steps.log)."]
    details.update(torch=versions, graph_skipped=graph_why or None)
    summary = "; ".join(f"{k}: {v['scratchvae_ms']:.2f} ms" + (f" (torch eager {v['torch_eager_ms']:.2f})"
                                                              if "torch_eager_ms" in v else "")
                        for k, v in details.items() if isinstance(v, dict))
    if graph_errors:
        return result("FAILED", summary, "\n".join(md), details, "CUDA graph capture failed: " + graph_errors[0])
    return result("PASSED", summary, "\n".join(md), details)


# ---------------------------------------------------------------- 6. the cost of a reseed

def median_time(fn, xp, repeats):
    times = []
    for i in range(repeats):
        synchronize(xp)
        t0 = time.perf_counter()
        fn(i)
        synchronize(xp)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def stage_reseed(args):
    from step_time import ScratchStep

    repeats = 20 if args.quick else 500
    g = Generator(0, args.backend)
    xp = g.xp
    for i in range(3):  # compile and warm every kernel involved
        g.reseed(0, 1, i).normal((64, 2))
    timings = dict(
        sync_alone=median_time(lambda i: None, xp, repeats),
        reseed=median_time(lambda i: g.reseed(0, 1, i), xp, repeats),
        reseed_and_draw=median_time(lambda i: g.reseed(0, 1, i).normal((64, 2)), xp, repeats),
        draw_alone=median_time(lambda i: g.normal((64, 2)), xp, repeats),
    )
    if xp is not np:  # what a reseed cost before: cupy.random.default_rng (XORWOW, set up by skip-ahead)
        timings["default_rng_xorwow"] = median_time(
            lambda i: xp.random.default_rng(i).standard_normal(size=(64, 2), dtype=np.float32), xp,
            3 if args.quick else 10)
    step = ScratchStep("paper-mlp", 64, args.backend)
    for _ in range(3):
        step()
    timings["paper_mlp_step_64"] = median_time(lambda i: step(), xp, 10 if args.quick else 200)
    labels = dict(sync_alone="synchronize alone (the floor of every row)",
                  reseed="`Generator.reseed(seed, epoch, step)`",
                  reseed_and_draw="reseed + normal((64, 2)) (the first draw after it)",
                  draw_alone="normal((64, 2)) alone",
                  default_rng_xorwow="`cupy.random.default_rng(i)` + a draw (XORWOW: what the reseed replaced)",
                  paper_mlp_step_64="one paper-mlp training step, batch 64 (forward, backward, Adam)")
    md = [f"Wall milliseconds per call on `{args.backend}`, each call followed by a synchronize "
          f"of the current stream (median, min, max over {repeats} calls; fewer for the slow ones).",
          "", "| what | median ms | min ms | max ms |", "|---|---|---|---|"]
    md += [f"| {labels[k]} | {m * 1e3:.4f} | {lo * 1e3:.4f} | {hi * 1e3:.4f} |" for k, (m, lo, hi) in timings.items()]
    ratio = timings["reseed"][0] / timings["paper_mlp_step_64"][0]
    md += ["", f"A reseed costs {ratio:.1%} of a paper-mlp step."]
    details = {k: dict(median_ms=m * 1e3, min_ms=lo * 1e3, max_ms=hi * 1e3) for k, (m, lo, hi) in timings.items()}
    details["reseed_over_step"] = ratio
    if xp is not np:  # what docs/performance.md ("Noise on the GPU") reads from CuPy's source, as found
        bitgen = xp.random.Philox4x3210(12345)
        states, key = getattr(bitgen, "_size", None), getattr(bitgen, "_seed", None)
        key_dtype = str(np.asarray(key).dtype) if key is not None else None
        md += ["", f"A `Philox4x3210` as this CuPy builds it: {states if states is not None else 'unknown'} "
                   f"states set up, key kept from the seed: {key_dtype or 'unknown'} "
                   "(docs/performance.md, \"Noise on the GPU\", reads 32768 and uint32 from CuPy 14's source)."]
        details.update(philox_states=states, philox_key_dtype=key_dtype)
    return result("PASSED", f"reseed {timings['reseed'][0] * 1e3:.3f} ms = {ratio:.1%} of a paper-mlp "
                  f"step ({timings['paper_mlp_step_64'][0] * 1e3:.3f} ms)", "\n".join(md), details)


# ---------------------------------------------------------------- 7. device-to-host syncs per step

NDARRAY_SYNCS = ("get", "item", "tolist", "__float__", "__int__", "__bool__", "__complex__", "__index__")


class TransferCounter:
    """Counts device-to-host transfers and host waits by wrapping CuPy's entry points:
    ``ndarray.get/item/tolist/__float__/__int__/__bool__/__complex__/__index__``,
    ``cupy.asnumpy``, ``cuda.Stream.synchronize``, ``cuda.Event.synchronize``,
    ``cuda.runtime.deviceSynchronize`` and ``cuda.Device.synchronize`` (through a subclass,
    its type being immutable). Nested calls (``float(a)`` calling ``a.get()``) count once.
    ``wrapped`` and ``not_wrapped`` say which entry points were reached."""

    def __init__(self, xp):
        self.xp, self.calls, self.depth = xp, [], 0
        self.wrapped, self.not_wrapped, self._undo = [], [], []

    def _counting(self, name, original):
        counter = self

        def wrapper(*args, **kwargs):
            if counter.depth == 0:
                counter.calls.append(name)
            counter.depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                counter.depth -= 1
        wrapper.__name__ = getattr(original, "__name__", name)
        return wrapper

    def _patch(self, owner, attr, label):
        original = _lookup(owner, attr)
        if original is None:
            self.not_wrapped.append(f"{label} (absent)")
            return
        own = owner.__dict__.get(attr, _MISSING) if isinstance(owner, type) else original
        try:
            setattr(owner, attr, self._counting(label, original))
        except (TypeError, AttributeError) as exc:
            self.not_wrapped.append(f"{label} ({one_line(exc)})")
            return
        self._undo.append((owner, attr, own))
        self.wrapped.append(label)

    def __enter__(self):
        xp = self.xp
        for attr in NDARRAY_SYNCS:
            self._patch(xp.ndarray, attr, f"ndarray.{attr}")
        self._patch(xp, "asnumpy", "cupy.asnumpy")
        cuda = xp.cuda
        for name in ("Stream", "Event"):
            owner = _lookup(cuda, name)
            if owner is None:
                self.not_wrapped.append(f"cuda.{name}.synchronize (absent)")
            else:
                self._patch(owner, "synchronize", f"cuda.{name}.synchronize")
        runtime = _lookup(cuda, "runtime")
        if runtime is not None:
            self._patch(runtime, "deviceSynchronize", "cuda.runtime.deviceSynchronize")
        device = _lookup(cuda, "Device")
        if device is None:
            self.not_wrapped.append("cuda.Device.synchronize (absent)")
        else:
            try:
                counting = self._counting("cuda.Device.synchronize", device.synchronize)
                cuda.Device = type("Device", (device,), {"synchronize": lambda s: counting(s)})
                self._undo.append((cuda, "Device", device))
                self.wrapped.append("cuda.Device.synchronize (through a subclass)")
            except Exception as exc:  # noqa: BLE001 - reported as not wrapped
                self.not_wrapped.append(f"cuda.Device.synchronize ({one_line(exc)})")
        return self

    def __exit__(self, *exc):
        for owner, attr, original in reversed(self._undo):
            if original is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)
        self._undo.clear()
        return False


_MISSING = object()


def _lookup(owner, attr):
    """``getattr(owner, attr)``, or None where it is absent (or refused, as the stand-in does)."""
    try:
        return getattr(owner, attr)
    except Exception:  # noqa: BLE001 - AttributeError, or the stand-in's StandinUnsupported
        return None


def stage_syncs(args):
    import tempfile

    from scratchvae.training import SYNC_EVERY, TrainConfig, train

    steps = SYNC_EVERY + 6
    xp = get_xp(args.backend)
    cfg = TrainConfig(backend=args.backend, data_dir=str(args.data), train_limit=64 * steps, val_limit=64,
                      batch_size=64, epochs=1)
    marks = []
    with tempfile.TemporaryDirectory() as tmp:
        if xp is np:
            counter = None
            train(cfg, out=Path(tmp) / "run", log=lambda *a, **k: None, progress=False, figures=False,
                  step_hook=lambda epoch, step, vae: marks.append(0))
        else:
            with TransferCounter(xp) as counter:
                train(cfg, out=Path(tmp) / "run", log=lambda *a, **k: None, progress=False, figures=False,
                      step_hook=lambda epoch, step, vae: marks.append(len(counter.calls)))
    if counter is None:
        md = (f"NumPy has no device: nothing crosses to the host. The training loop ran {len(marks)} steps "
              "with the counting hook in place (the code path the GPU run takes).")
        return result("SKIPPED", f"numpy: {len(marks)} steps, no device", md,
                      dict(steps=len(marks)), "the numpy backend has no device-to-host transfers")
    per_step = np.diff(marks).tolist()  # transfers between the hooks of steps s-1 and s
    expected = [1 if s % SYNC_EVERY == 0 else 0 for s in range(1, len(marks))]
    between = counter.calls[marks[0]:marks[-1]]
    md = [f"`scratchvae.training.train` as `python -m scratchvae.train` runs it ({len(marks)} steps of "
          f"64 images, backend `{args.backend}`), with CuPy's transfer entry points wrapped: "
          f"{', '.join(counter.wrapped)}." + (f" Not wrapped: {', '.join(counter.not_wrapped)}."
                                                 if counter.not_wrapped else ""),
          "", f"Transfers between the step hooks of steps s-1 and s (s = 1..{len(marks) - 1}): "
          f"`{per_step}`; expected `{expected}` (the documented running-loss read, every "
          f"SYNC_EVERY = {SYNC_EVERY} steps, falls between hooks s-1 and s when s is a multiple of it).",
          f"What they were: {dict(Counter(between))}. The whole run (start-up, health check, the "
          f"epoch's test pass, the checkpoint) made {len(counter.calls)}."]
    details = dict(per_step=per_step, expected=expected, sync_every=SYNC_EVERY, kinds=dict(Counter(between)),
                   total=len(counter.calls), wrapped=counter.wrapped, not_wrapped=counter.not_wrapped)
    steady = sum(per_step) / len(per_step)
    summary = f"{steady:.3f} transfers per step over {len(per_step)} steps (expected {sum(expected) / len(expected):.3f})"
    if per_step != expected:
        return result("FAILED", summary, "\n".join(md), details,
                      f"per-step transfers {per_step} differ from the expected {expected}")
    return result("PASSED", summary, "\n".join(md), details)


# ---------------------------------------------------------------- 8. peak GPU memory per step

def peak_hook_class(xp):
    class PeakHook(xp.cuda.MemoryHook):
        """High-water of the bytes handed out by CuPy's memory pool while the hook is on,
        relative to its start (malloc adds the rounded block size, free subtracts it)."""
        name = "GpuCheckPeakHook"

        def __init__(self):
            super().__init__()
            self.current = self.peak = 0

        def malloc_postprocess(self, **kwargs):
            self.current += kwargs["mem_size"]
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, **kwargs):
            self.current -= kwargs["mem_size"]
    return PeakHook


def stage_memory(args):
    from step_time import ScratchStep, scratch_peak_mib

    batches = (4, 8) if args.quick else (64, 256)
    configs = [(m, b) for m in ("paper-mlp", "paper-conv") for b in batches]
    xp = get_xp(args.backend)
    rows, details = [], {}
    mib = 2**20
    for model, batch in configs:
        step = ScratchStep(model, batch, args.backend)
        for _ in range(2):  # the first steps allocate what every step then reuses
            step()
        synchronize(xp)
        if xp is np:
            peak = scratch_peak_mib(step)
            details[f"{model} {batch}"] = dict(tracemalloc_peak_mib=peak)
            rows.append(f"| {model} | {batch} | - | {peak:.2f} | - |")
            continue
        pool = xp.get_default_memory_pool()
        pool.free_all_blocks()  # the pool now holds only live arrays (model, Adam, batch)
        resident = pool.used_bytes()
        hook = peak_hook_class(xp)()
        with hook:
            step()
            synchronize(xp)
        reserved = pool.total_bytes()  # grows from the emptied pool to what the step needed at once
        details[f"{model} {batch}"] = dict(resident_mib=resident / mib, step_peak_mib=hook.peak / mib,
                                           pool_total_after_step_mib=reserved / mib,
                                           used_after_step_mib=pool.used_bytes() / mib)
        rows.append(f"| {model} | {batch} | {resident / mib:.2f} | {hook.peak / mib:.2f} | {reserved / mib:.2f} |")
    if xp is np:
        what = ("NumPy: the peak of bytes allocated during one step above those held before it "
                "(`tracemalloc`, `step_time.scratch_peak_mib`); no GPU here.")
    else:
        what = ("CuPy's default memory pool only (cuBLAS/cuRAND workspaces and the CUDA context are "
                "outside it). Resident: `used_bytes()` after two warm-up steps and `free_all_blocks()` "
                "(parameters, gradients, Adam's m, v and scratch, the batch). Step peak: the high-water, "
                "during one step, of pool bytes handed out minus returned (a `cupy.cuda.MemoryHook` on "
                "malloc/free, block sizes rounded to 512 B), above resident. Pool total: `total_bytes()` "
                "after that step, starting from the emptied pool (what the pool had to reserve).")
    md = [what, "", "| model | batch | resident MiB | step peak MiB (above resident) | pool total after step MiB |",
          "|---|---|---|---|---|", *rows]
    key = "step_peak_mib" if xp is not np else "tracemalloc_peak_mib"
    summary = "; ".join(f"{k}: {v[key]:.1f} MiB" for k, v in details.items())
    return result("PASSED", "peak per step " + summary, "\n".join(md), details)


STAGE_FUNCTIONS = dict(parity=stage_parity, train=stage_train, iwae=stage_iwae, steps=stage_step_times,
                       reseed=stage_reseed, syncs=stage_syncs, memory=stage_memory)
