"""scratchvae and the independent PyTorch reference, trained side by side in the paper's regime,
and a posterior-collapse study of ``paper-conv`` at z = 2.

    python benchmarks/side_by_side.py --jobs 2 --section      # the full study (CPU-hours)
    python benchmarks/side_by_side.py --quick                 # a smoke test (seconds)
    python benchmarks/side_by_side.py --report-only           # the tables from what has finished

Every run uses the same settings in both frameworks: the first 6,000 MNIST training images,
10 epochs, batch 64, Adam 1e-3, x / 255 with the Bernoulli likelihood, seed s (scratchvae:
``TrainConfig(seed=s)``; PyTorch: ``torch.manual_seed(s)`` and the shuffles of
``numpy.random.default_rng(s)``). Each is scored on all 10,000 test images in evaluation mode
with one noise sample per image: the test negative ELBO (nats per image), the test KL, the KL
of each latent dimension and the number of active units (Burda et al. 2015: dimension d is
active when Var_x(E_q[z_d | x]) = Var_x(mu_d(x)) > 0.01 over the test images).

Configurations: paper-mlp and paper-conv at z = 2 and 16, ``--seeds`` seeds each (default 5).
The collapse study trains paper-conv z = 2 with ``--collapse-seeds`` seeds (default 10) in
both frameworks, and scratchvae again with each ``--remedies`` entry (default: KL warm-up over 2
epochs, and free bits of 0.5 nats per dimension, one row each). A latent dimension has
*collapsed* when its test KL is under 1 nat or it is inactive; a run is *collapsed* when at
least one of its dimensions has, *fully collapsed* when all have.

Each run is its own process with one thread (OMP/OPENBLAS/MKL_NUM_THREADS=1,
``torch.set_num_threads(1)``); ``--jobs N`` runs N at once. Each finished run writes
``RESULTS/<run>.json`` (and its output to ``RESULTS/logs/<run>.log``), so a repeated command
skips the finished runs and a failed run loses only itself. scratchvae runs go through
``scratchvae.training.train`` and ``scratchvae.evaluate``; PyTorch runs through
``benchmarks/torch_reference.py``. PyTorch is needed by this script only (any CPU build);
``scratchvae/`` never imports it.

Output: a markdown report (median, min and max of the test negative ELBO over seeds for each
framework, the difference of the medians, active units, seconds per run; the collapse table
and every collapse-study run's per-dimension KL), printed, written to ``--markdown PATH``,
and with ``--section`` into ``docs/reproduction.md`` between ``<!-- side-by-side:begin -->``
and ``<!-- side-by-side:end -->``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
for _path in (str(REPO_ROOT), str(BENCHMARKS)):  # scratchvae, and torch_reference next to this file
    if _path not in sys.path:
        sys.path.insert(0, _path)

from scratchvae.atomic import write_atomically  # noqa: E402

SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_RESULTS = REPO_ROOT / "runs" / "side_by_side"
DEFAULT_DOC = REPO_ROOT / "docs" / "reproduction.md"
SECTION = "side-by-side"

BATCH_SIZE, LR = 64, 1e-3
PAPER = dict(train_limit=6000, epochs=10)  # the paper's regime
QUICK = dict(train_limit=300, epochs=1)  # the smoke test
VAL_LIMIT = 1000  # scratchvae's per-epoch monitoring (the paper's validation set); not reported
CONFIGS = (("paper-mlp", 2), ("paper-mlp", 16), ("paper-conv", 2), ("paper-conv", 16))
COLLAPSE_CONFIG = ("paper-conv", 2)
QUICK_CONFIG = ("paper-mlp", 2)  # --quick: the only configuration, and the collapse study's
DEFAULT_REMEDIES = ("kl_warmup=2", "free_bits=0.5")
REMEDY_KEYS = {"kl_warmup": "KL warm-up over {:g} epochs", "free_bits": "free bits {:g} nats/dim"}
ACTIVE_THRESHOLD = 0.01  # Burda et al. 2015: Var_x(mu_d) above this makes dimension d active
COLLAPSED_KL = 1.0  # nats: a dimension with less KL than this carries almost no information
FRAMEWORKS = ("scratchvae", "torch")
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                     "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}


# -- what to run --------------------------------------------------------------------------
def parse_remedy(text: str) -> dict:
    """``"kl_warmup=2,free_bits=0.5"`` -> ``{"kl_warmup": 2.0, "free_bits": 0.5}`` ("" -> {})."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in REMEDY_KEYS:
            raise ValueError(f"remedy {part!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(REMEDY_KEYS)}, e.g. kl_warmup=2 or free_bits=0.5")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"remedy {part!r}: {value!r} is not a number") from None
        if not out[key] > 0:
            raise ValueError(f"remedy {part!r}: the value must be positive")
    return out


def canonical_remedy(text: str) -> str:
    values = parse_remedy(text)
    return ",".join(f"{k}={values[k]:g}" for k in REMEDY_KEYS if k in values)


def describe_remedy(remedy: str) -> str:
    values = parse_remedy(remedy)
    return " + ".join(REMEDY_KEYS[k].format(values[k]) for k in REMEDY_KEYS if k in values)


@dataclass(frozen=True)
class Run:
    """One training run; its name is its results file's."""

    framework: str  # "scratchvae" or "torch"
    model: str
    latent_dim: int
    seed: int
    train_limit: int
    epochs: int
    remedy: str = ""  # canonical "kl_warmup=2,free_bits=0.5"; scratchvae only

    @property
    def name(self) -> str:
        tag = self.remedy.replace("=", "").replace(",", "+") or "plain"
        return (f"{self.framework}_{self.model}_z{self.latent_dim}_{tag}_n{self.train_limit}"
                f"_e{self.epochs}_s{self.seed}")

    @property
    def trainer(self) -> str:
        """The row label: the framework, and the remedy if any."""
        base = "scratchvae" if self.framework == "scratchvae" else "PyTorch"
        return f"{base} + {describe_remedy(self.remedy)}" if self.remedy else base


def seed_counts(quick=False, seeds=None, collapse_seeds=None):
    """(seeds per configuration, seeds of the collapse study): 5 and 10, or 1 and 1 with --quick."""
    return (seeds if seeds is not None else (1 if quick else 5),
            collapse_seeds if collapse_seeds is not None else (1 if quick else 10))


def plan(quick=False, seeds=None, collapse_seeds=None, remedies=DEFAULT_REMEDIES):
    """Every run of the study, longest first (so parallel jobs finish together), no duplicates."""
    seeds, collapse_seeds = seed_counts(quick, seeds, collapse_seeds)
    settings = QUICK if quick else PAPER
    configs = (QUICK_CONFIG,) if quick else CONFIGS
    collapse = QUICK_CONFIG if quick else COLLAPSE_CONFIG
    runs = [Run(fw, m, z, s, **settings) for m, z in configs for fw in FRAMEWORKS for s in range(seeds)]
    runs += [Run(fw, *collapse, s, **settings) for fw in FRAMEWORKS for s in range(collapse_seeds)]
    runs += [Run("scratchvae", *collapse, s, **settings, remedy=canonical_remedy(r))
             for r in remedies for s in range(collapse_seeds)]
    unique = list(dict.fromkeys(runs))
    return sorted(unique, key=lambda r: (r.model != "paper-conv", -r.latent_dim))  # stable


# -- one run (in a worker process) --------------------------------------------------------
def latent_summary(mu, kl_per_dim):
    """Per-dimension KL (nats), Var_x(mu_d) and the active-unit count from test-set posteriors."""
    variance = np.asarray(mu, dtype=np.float64).var(axis=0)
    return dict(kl_per_dim=[float(v) for v in kl_per_dim],
                mu_variance=[float(v) for v in variance],
                active_units=int((variance > ACTIVE_THRESHOLD).sum()))


def train_scratchvae(run: Run, data_dir, results: Path) -> dict:
    """``scratchvae.training.train`` in a temporary run folder, then the full test set."""
    from scratchvae.runs.checkpoint import load_model
    from scratchvae.data import load_split
    from scratchvae.estimators import negative_elbo, preprocess_test_images
    from scratchvae.functional.latent import kl_per_dimension
    from scratchvae.runs import TrainConfig, read_metrics
    from scratchvae.training import train

    cfg = TrainConfig(model=run.model, latent_dim=run.latent_dim, epochs=run.epochs,
                      batch_size=BATCH_SIZE, lr=LR, seed=run.seed, train_limit=run.train_limit,
                      val_limit=VAL_LIMIT, data_dir=data_dir, **parse_remedy(run.remedy))
    with tempfile.TemporaryDirectory(dir=results, prefix=f".{run.name}-") as tmp:
        t0 = time.perf_counter()
        run_dir = train(cfg, out=Path(tmp) / "run", log=lambda line: print(line, flush=True),
                        progress=False, figures=False)
        train_seconds = time.perf_counter() - t0
        epochs = [dict(epoch=int(r["epoch"]), train_loss=float(r["train_loss"]),
                       val_loss=float(r["test_loss"]), seconds=float(r["seconds"]))
                  for r in read_metrics(run_dir / "metrics.csv")]
        if len(epochs) != run.epochs:  # a short run (train() raises TrainingInterrupted on Ctrl-C)
            raise RuntimeError(f"{run.name}: training stopped after {len(epochs)} of {run.epochs} "
                               "epochs; nothing recorded")
        vae, _ = load_model(run_dir)
    test_u8, _ = load_split("test", data_dir=data_dir)
    x_test = preprocess_test_images(test_u8, "unit", run.seed)  # x / 255, (10000, 1, 28, 28)
    t0 = time.perf_counter()
    scores = negative_elbo(vae, x_test, seed=run.seed)
    codes = [vae.encode(x_test[i:i + 1000]) for i in range(0, len(x_test), 1000)]
    mu = np.concatenate([m for m, _ in codes]).astype(np.float64)
    logvar = np.concatenate([v for _, v in codes]).astype(np.float64)
    kl_d = kl_per_dimension(mu, logvar).mean(axis=0)
    return dict(test_negative_elbo=scores["negative_elbo"], test_recon=scores["recon"],
                test_kl=scores["kl"], **latent_summary(mu, kl_d), epochs=epochs,
                train_seconds=train_seconds, eval_seconds=time.perf_counter() - t0)


def train_torch(run: Run, data_dir, results: Path) -> dict:
    """The reference's own model, training epoch and evaluation (benchmarks/torch_reference.py)."""
    if run.remedy:
        raise ValueError("the PyTorch reference has no posterior-collapse remedies")
    import torch

    import torch_reference as ref

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(run.seed)
    rng = np.random.default_rng(run.seed)
    x_train = ref.load_images("train", data_dir)[: run.train_limit]
    x_test = ref.load_images("test", data_dir)
    model = ref.VAE(run.model, run.latent_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    epochs = []
    t_start = time.perf_counter()
    for epoch in range(1, run.epochs + 1):
        t0 = time.perf_counter()
        train_loss = ref.train_epoch(model, optimizer, x_train, BATCH_SIZE, rng)
        epochs.append(dict(epoch=epoch, train_loss=train_loss, seconds=time.perf_counter() - t0))
        print(f"epoch {epoch:3d}/{run.epochs} | train {train_loss:8.3f} | {epochs[-1]['seconds']:6.1f} s",
              flush=True)
    train_seconds = time.perf_counter() - t_start
    t0 = time.perf_counter()
    loss, recon, kl = ref.evaluate(model, x_test)
    mu, kl_d = ref.latent_statistics(model, x_test)
    return dict(test_negative_elbo=loss, test_recon=recon, test_kl=kl, **latent_summary(mu, kl_d),
                epochs=epochs, train_seconds=train_seconds, eval_seconds=time.perf_counter() - t0)


RUNNERS = {"scratchvae": train_scratchvae, "torch": train_torch}


def worker(spec: str, results: Path, data_dir):
    """Train and score one run, then write RESULTS/<run>.json atomically (the last step)."""
    run = Run(**json.loads(spec))
    t0 = time.perf_counter()
    result = RUNNERS[run.framework](run, data_dir, results)
    versions = dict(python=platform.python_version(), numpy=np.__version__)
    if run.framework == "torch":
        import torch

        versions["torch"] = torch.__version__
    else:
        from scratchvae import __version__

        versions["scratchvae"] = __version__
    result = dict(name=run.name, run=asdict(run), trainer=run.trainer, **result,
                  wall_seconds=time.perf_counter() - t0, threads=1, batch_size=BATCH_SIZE, lr=LR,
                  test_images=10_000, units="nats per image", versions=versions)
    write_atomically(results / f"{run.name}.json", json.dumps(result, indent=2) + "\n")
    print(f"{run.name}: test negative ELBO {result['test_negative_elbo']:.3f}, KL {result['test_kl']:.3f}, "
          f"active units {result['active_units']}/{run.latent_dim}, {result['wall_seconds']:.1f} s")


# -- running many (the parent process) ----------------------------------------------------
def load_result(results: Path, run: Run):
    path = results / f"{run.name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: run it again


def execute(runs, results: Path, data_dir, jobs: int, log=print):
    """Run every run in its own one-thread process, ``jobs`` at a time; returns the failed ones."""
    (results / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ONE_THREAD}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))

    def launch(run):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(run)),
               "--results", str(results)] + (["--data-dir", str(data_dir)] if data_dir else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        (results / "logs" / f"{run.name}.log").write_text(proc.stdout + proc.stderr)
        return run, proc, time.perf_counter() - t0

    failed = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(launch, run) for run in runs]
        for done, future in enumerate(as_completed(futures), 1):
            run, proc, seconds = future.result()
            result = load_result(results, run)
            if proc.returncode == 0 and result is not None:
                log(f"[{done}/{len(runs)}] {run.name}: test negative ELBO "
                    f"{result['test_negative_elbo']:.2f}, active units {result['active_units']}/"
                    f"{run.latent_dim} ({seconds:.0f} s)")
            else:
                failed.append(run)
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                log(f"[{done}/{len(runs)}] {run.name}: FAILED (exit {proc.returncode}); see "
                    f"{results / 'logs' / (run.name + '.log')}\n    " + "\n    ".join(tail))
    return failed


# -- the report -----------------------------------------------------------------------------
def _median_range(values, fmt="{:.2f}"):
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}, {fmt.format(max(values))}]"


def _seeds(n):
    return "0" if n == 1 else f"0-{n - 1}"


def collapsed_dims(result):
    """Per latent dimension: True when it collapsed, i.e. is inactive (Burda et al.) or its test
    KL is under ``COLLAPSED_KL`` nats (it tells the decoder almost nothing about x)."""
    return [v <= ACTIVE_THRESHOLD or k < COLLAPSED_KL
            for k, v in zip(result["kl_per_dim"], result["mu_variance"])]


def collapse_state(result):
    """'full' when every latent dimension collapsed, 'partial' when some did, else ''."""
    dims = collapsed_dims(result)
    return "full" if all(dims) else ("partial" if any(dims) else "")


def report(results: Path, quick=False, seeds=None, collapse_seeds=None, remedies=DEFAULT_REMEDIES) -> str:
    """The markdown tables from the finished runs of the plan (missing runs are counted, not guessed)."""
    seeds, collapse_seeds = seed_counts(quick, seeds, collapse_seeds)
    settings = QUICK if quick else PAPER
    configs = (QUICK_CONFIG,) if quick else CONFIGS
    collapse = QUICK_CONFIG if quick else COLLAPSE_CONFIG

    def finished(framework, model, z, n, remedy=""):
        runs = [Run(framework, model, z, s, **settings, remedy=remedy) for s in range(n)]
        return [r for r in (load_result(results, run) for run in runs) if r is not None]

    lines = [
        f"scratchvae against the independent PyTorch reference (`benchmarks/torch_reference.py`), "
        f"trained identically: the first {settings['train_limit']:,} MNIST training images, "
        f"{settings['epochs']} epoch{'s' if settings['epochs'] > 1 else ''}, batch {BATCH_SIZE}, "
        f"Adam {LR:g}, x / 255 with the Bernoulli likelihood, one CPU thread per run. Scored on all "
        "10,000 test images (evaluation mode, one noise sample per image). Test negative ELBO in "
        "nats per image, lower is better: median over the seeds [min, max]. Generated by "
        "`python benchmarks/side_by_side.py`" + (" --quick (a smoke test, not a result)." if quick else "."),
        "",
        "| model | z | seeds | scratchvae | PyTorch | scratchvae - PyTorch (medians) "
        "| active units, median (scratchvae / PyTorch) | seconds per run, median (scratchvae / PyTorch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, z in configs:
        ours, theirs = finished("scratchvae", model, z, seeds), finished("torch", model, z, seeds)
        a = [r["test_negative_elbo"] for r in ours]
        b = [r["test_negative_elbo"] for r in theirs]
        diff = f"{statistics.median(a) - statistics.median(b):+.2f}" if a and b else "n/a"
        done = f"{_seeds(seeds)}" + ("" if len(a) == len(b) == seeds else f" ({len(a)} + {len(b)} of {seeds} done)")

        def med(rs, key, fmt):
            return fmt.format(statistics.median(r[key] for r in rs)) if rs else "n/a"

        lines.append(f"| {model} | {z} | {done} | {_median_range(a)} | {_median_range(b)} | {diff} "
                     f"| {med(ours, 'active_units', '{:g}')} / {med(theirs, 'active_units', '{:g}')} "
                     f"| {med(ours, 'wall_seconds', '{:.0f}')} / {med(theirs, 'wall_seconds', '{:.0f}')} |")

    model, z = collapse
    trainers = [("scratchvae", ""), ("torch", "")] + [("scratchvae", canonical_remedy(r)) for r in remedies]
    lines += [
        "",
        f"**Posterior collapse, {model}, z = {z}, seeds {_seeds(collapse_seeds)}.** A latent dimension d "
        f"has *collapsed* when its test KL is under {COLLAPSED_KL:g} nats (it tells the decoder almost "
        f"nothing; a working dimension here carries 2 to 3.5) or it is inactive, Var_x(E_q[z_d | x]) "
        f"<= {ACTIVE_THRESHOLD:g} over the test images (Burda et al. 2015). A run is *collapsed* when at "
        f"least one of its {z} dimensions has, *fully collapsed* when all have. The negative ELBOs use "
        "the true KL, whatever the remedy.",
        "",
        "| trainer | collapsed runs | fully collapsed | test negative ELBO | of the runs not collapsed "
        "| test KL, nats (median) |",
        "|---|---|---|---|---|---|",
    ]
    per_run = {}
    for framework, remedy in trainers:
        rs = finished(framework, model, z, collapse_seeds, remedy)
        label = Run(framework, model, z, 0, **settings, remedy=remedy).trainer
        per_run[label] = {r["run"]["seed"]: r for r in rs}
        n = len(rs)
        count = f" of {n}" + ("" if n == collapse_seeds else f" done ({collapse_seeds} planned)")
        collapsed = sum(bool(collapse_state(r)) for r in rs)
        full = sum(collapse_state(r) == "full" for r in rs)
        healthy = [r["test_negative_elbo"] for r in rs if not collapse_state(r)]
        kl = f"{statistics.median(r['test_kl'] for r in rs):.2f}" if rs else "n/a"
        lines.append(f"| {label} | {collapsed}{count} | {full} | "
                     f"{_median_range([r['test_negative_elbo'] for r in rs])} | {_median_range(healthy)} | {kl} |")

    lines += ["", f"Each run of the collapse study: test negative ELBO (KL of each latent dimension in "
              "nats; * marks a collapsed dimension).", "",
              "| seed | " + " | ".join(per_run) + " |", "|---" * (len(per_run) + 1) + "|"]
    for seed in range(collapse_seeds):
        cells = []
        for label in per_run:
            r = per_run[label].get(seed)
            if r is None:
                cells.append("not run")
                continue
            dims = ", ".join(f"{k:.2f}" + ("*" if c else "")
                             for k, c in zip(r["kl_per_dim"], collapsed_dims(r)))
            cells.append(f"{r['test_negative_elbo']:.2f} ({dims})")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -- the command line -------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="python benchmarks/side_by_side.py",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK_CONFIG[0]} z={QUICK_CONFIG[1]} only, "
                        f"{QUICK['train_limit']} images, {QUICK['epochs']} epoch, 1 seed")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, one thread each (default 1)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default 5; 1 with --quick)")
    p.add_argument("--collapse-seeds", type=int, default=None,
                   help="seeds of the collapse study (default 10; 1 with --quick)")
    p.add_argument("--remedies", nargs="*", default=list(DEFAULT_REMEDIES), metavar="KEY=VALUE[,KEY=VALUE]",
                   help="scratchvae rows of the collapse study, each kl_warmup=EPOCHS and/or "
                        "free_bits=NATS (comma-joined for both at once); the flag alone: no remedy "
                        f"rows (default: {' '.join(DEFAULT_REMEDIES)})")
    p.add_argument("--results", type=Path, default=None,
                   help="folder of the per-run JSON files (default runs/side_by_side in the "
                        "repository; runs/side_by_side/quick with --quick)")
    p.add_argument("--data-dir", default=str(SHARED_MNIST) if SHARED_MNIST.is_dir() else None,
                   help=f"folder with the four MNIST files (default: {SHARED_MNIST} if it exists, "
                        "else scratchvae's usual lookup)")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the finished runs")
    p.add_argument("--markdown", type=Path, help="also write the report to this file")
    p.add_argument("--section", action="store_true",
                   help=f"write the report into --doc between <!-- {SECTION}:begin --> and "
                        f"<!-- {SECTION}:end --> (not with --quick, unless --doc is given)")
    p.add_argument("--doc", type=Path, default=None,
                   help="document for --section (default docs/reproduction.md in the repository)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # one run, as JSON: what the parent launches
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    results = args.results or (DEFAULT_RESULTS / "quick" if args.quick else DEFAULT_RESULTS)
    if args.worker is not None:
        results.mkdir(parents=True, exist_ok=True)
        worker(args.worker, results, args.data_dir)
        return 0
    seeds, collapse_seeds = seed_counts(args.quick, args.seeds, args.collapse_seeds)
    if args.jobs < 1 or seeds < 1 or collapse_seeds < 1:
        p.error("--jobs, --seeds and --collapse-seeds must be at least 1")
    try:
        remedies = [canonical_remedy(r) for r in args.remedies]
    except ValueError as exc:
        p.error(str(exc))
    if args.section and args.quick and args.doc is None:
        p.error(f"--quick results are a smoke test and never go into {DEFAULT_DOC}; "
                "give --doc PATH to write them elsewhere")
    runs = plan(args.quick, seeds, collapse_seeds, remedies)
    if not args.report_only:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            p.error("the reference runs need PyTorch (a CPU build is enough: "
                    "pip install torch --index-url https://download.pytorch.org/whl/cpu)")
        pending = [r for r in runs if load_result(results, r) is None]
        print(f"{len(runs)} runs planned, {len(runs) - len(pending)} already finished in {results}; "
              f"running {len(pending)}, {args.jobs} at a time", flush=True)
        results.mkdir(parents=True, exist_ok=True)
        failed = execute(pending, results, args.data_dir, args.jobs,
                         log=lambda line: print(line, flush=True))
    else:
        failed = []
    markdown = report(results, args.quick, seeds, collapse_seeds, remedies)
    print(markdown)
    if args.markdown:
        write_atomically(args.markdown, markdown)
    if args.section:
        from scratchvae.experiments import write_section

        write_section(args.doc or DEFAULT_DOC, SECTION, markdown)
        print(f"wrote the {SECTION} section of {args.doc or DEFAULT_DOC}")
    if failed:
        print(f"{len(failed)} run(s) failed: " + ", ".join(r.name for r in failed)
              + "; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
