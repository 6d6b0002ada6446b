"""The literature's MNIST likelihood: ``python -m scratchvae.experiments nll``.

Trains ``nll-conv`` (one stochastic layer, z = 32 by default) on dynamically binarized MNIST
(every pixel drawn anew, with probability x / 255, at every step) and, every ``eval_every``
epochs, scores the test set: the negative ELBO (one z per image) and the importance-weighted
estimate of -log p(x) with K = 5000 samples (Burda et al., 2015; ``scratchvae.evaluate``).
Published with one stochastic layer (Burda et al., Table 1): VAE 86.76, IWAE (k = 50) 84.78.

The run lives in one folder (default ``runs/nll/``): the training run itself (``config.json``,
``metrics.csv``, ``checkpoint.npz``, trained through ``scratchvae.training.train``) and

* ``nll.csv``: one row per evaluated epoch (``CURVE_FIELDS``), written after each evaluation,
  so an interrupted run keeps its curve;
* ``nll.json``: every invocation of the command (command line, backend, machine, versions,
  wall time), for the write-up.

Repeating the command resumes: evaluated epochs are skipped, an interrupted training resumes
exactly from its checkpoint (``paper.ensure_trained``), and ``--epochs`` may grow. The section
``nll`` of ``--doc`` and the plot are rendered from the run folder alone (``render``), so
``--render-only`` redraws them on another machine from the small files of the folder.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_atomically
from ..data import load_split
from ..estimators import importance_weighted_log_likelihood, negative_elbo, preprocess_test_images
from ..runs import CHECKPOINT_NAME, RunFileError, RunFolder, TrainConfig, TrainingError, load_model, read_meta, read_metrics
from ..runs.schema import loads_strict
from . import write_section
from .paper import ExperimentInterrupted, check_run_settings, ensure_trained, machine_description, versions

MODEL = "nll-conv"
SECTION = "nll"
CURVE_NAME, SUMMARY_NAME, FIGURE_NAME = "nll.csv", "nll.json", "nll_curve.png"
CURVE_FIELDS = ("epoch", "test_negative_elbo", "test_recon", "test_kl", "iwae_nll",
                "iwae_nll_stderr", "k", "images", "train_seconds", "eval_seconds", "wall_seconds")
# Burda, Grosse and Salakhutdinov (2015), Table 1, MNIST, one stochastic layer, NLL at k = 5000
PUBLISHED = (("VAE", 86.76), ("IWAE (k = 50)", 84.78))
TARGET = 85.0
# a run folder is reused only when it was made with these same settings
MUST_MATCH = ("model", "latent_dim", "batch_size", "lr", "lr_decay", "seed", "train_limit",
              "binarize", "kl_warmup")
TEST_IMAGES = 10_000


@dataclass
class NLLSettings:
    """The experiment's settings; the defaults are the recommended GPU run (``QUICK``: CI)."""

    latent_dim: int = 32
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 1.0
    kl_warmup: float = 10.0
    eval_every: int = 10
    k: int = 5000
    eval_images: int = TEST_IMAGES
    curve_images: int | None = None  # test images of the evaluations before the last; None: eval_images
    train_limit: int | None = None
    seed: int = 0
    backend: str = "numpy"
    data_dir: str | None = None

    def train_config(self, epochs) -> TrainConfig:
        """The ``TrainConfig`` that trains the run to ``epochs`` epochs (the per-epoch test loss
        is scored on the first ``eval_images`` test images, binarized once)."""
        return TrainConfig(model=MODEL, latent_dim=self.latent_dim, epochs=epochs,
                           batch_size=self.batch_size, lr=self.lr, lr_decay=self.lr_decay,
                           kl_warmup=self.kl_warmup,
                           seed=self.seed, train_limit=self.train_limit, val_limit=self.eval_images,
                           binarize=True, data_dir=self.data_dir, backend=self.backend)

    def images_at(self, epoch) -> int:
        """Test images scored after ``epoch``: ``eval_images`` at the last epoch, else the curve's."""
        if epoch == self.epochs or self.curve_images is None:
            return self.eval_images
        return self.curve_images

    def check(self):
        """Refuse (``ValueError``) settings that cannot run."""
        for name in ("epochs", "eval_every", "k", "batch_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("eval_images", "curve_images"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= TEST_IMAGES:
                raise ValueError(f"--{name.replace('_', '-')} must be between 1 and {TEST_IMAGES:,}, "
                                 f"got {value}")
        return self


QUICK = dict(epochs=1, train_limit=1000, eval_images=100, k=50, eval_every=1)


def evaluation_epochs(epochs, every):
    """The epochs scored: every ``every``-th and the last, ascending."""
    return sorted(set(range(every, epochs + 1, every)) | {epochs})


# -- the run folder's curve and record ---------------------------------------------------------

def read_curve(run_dir) -> dict:
    """``{epoch: row}`` from ``RUN/nll.csv`` (rows of strings; empty when there is none)."""
    path = Path(run_dir) / CURVE_NAME
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f)}


def write_curve(run_dir, rows: dict) -> None:
    """Write ``{epoch: row}`` to ``RUN/nll.csv`` (``CURVE_FIELDS``, ascending epochs), atomically."""
    lines = [",".join(CURVE_FIELDS)]
    lines += [",".join(str(rows[e][k]) for k in CURVE_FIELDS) for e in sorted(rows)]
    write_atomically(Path(run_dir) / CURVE_NAME, "\n".join(lines) + "\n")


def read_summary(run_dir) -> dict:
    """``RUN/nll.json``: ``{"invocations": [{command, backend, machine, versions, started, epochs,
    wall_seconds}, ...]}``, one entry per run of the command (none yet: an empty list)."""
    path = Path(run_dir) / SUMMARY_NAME
    if not path.is_file():
        return dict(invocations=[])
    summary = loads_strict(path.read_bytes(), path)
    if not isinstance(summary, dict) or not isinstance(summary.get("invocations"), list):
        raise RunFileError(f"{path}: not an object with a list of invocations; move it away to start "
                           "a new record")
    return summary


def _position(run_dir):
    """(completed epochs, steps into the next) of the checkpoint, or None; reads only its meta."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    position = read_meta(path)["position"]
    return position["epoch"], position["step"]


def evaluate_epoch(run_dir, settings: NLLSettings, test_u8, images, k) -> dict:
    """Score the run's checkpoint on the first ``images`` test images (uint8 (N, 28, 28)
    ``test_u8``, binarized once with the run's seed, as training scored them): the negative
    ELBO and its parts, and the IWAE NLL with ``k`` samples and its standard error over
    images, in nats per image. Returns the row of ``nll.csv`` without the times."""
    vae, config = load_model(run_dir, backend=settings.backend)
    x = preprocess_test_images(test_u8[:images], config["preprocess"], config["seed"], vae.dtype)
    t0 = time.perf_counter()
    elbo = negative_elbo(vae, x, seed=settings.seed)
    # on the CPU, 1,000 latent codes per decoder call keep the memory near 1 GB for nll-conv
    chunk = None if settings.backend == "cupy" else 10
    log_px = importance_weighted_log_likelihood(vae, x, k=k, batch_size=100, chunk=chunk,
                                                seed=settings.seed)
    seconds = time.perf_counter() - t0
    stderr = float(log_px.std(ddof=1) / math.sqrt(images)) if images > 1 else float("nan")
    return dict(test_negative_elbo=f"{elbo['negative_elbo']:.4f}", test_recon=f"{elbo['recon']:.4f}",
                test_kl=f"{elbo['kl']:.4f}", iwae_nll=f"{float(-log_px.mean()):.4f}",
                iwae_nll_stderr=f"{stderr:.4f}", k=k, images=images, eval_seconds=f"{seconds:.2f}")


def run_nll(settings: NLLSettings, out, doc=None, figures=True,
            command="python -m scratchvae.experiments nll", log=print) -> str:
    """Train ``nll-conv`` under ``out`` to ``settings.epochs`` epochs, scoring it after every
    ``eval_every`` epochs and the last (already scored epochs are skipped), then write the
    ``nll`` section of ``doc`` (default ``OUT/reproduction.md``, plot in ``OUT/figures/``; with
    ``doc``, the plot in ``DOC_FOLDER/figures/reproduction/``). Returns the markdown written.

    An interruption (Ctrl-C during training or scoring) still records the time and writes the
    section from the rows so far, then raises ``ExperimentInterrupted``.
    """
    settings.check()
    out = Path(out)
    t0 = time.perf_counter()
    check_run_settings(settings.train_config(settings.epochs), out, MUST_MATCH)
    rows = read_curve(out)
    if rows and _position(out) is None:
        raise TrainingError(f"{out} holds a curve ({CURVE_NAME}) but no checkpoint (copied from "
                            "another machine?): redraw it with --render-only, or choose another --out")
    summary = read_summary(out)
    record = dict(command=command, backend=settings.backend,
                  machine=machine_description(settings.backend), versions=versions(settings.backend),
                  started=time.strftime("%Y-%m-%d %H:%M:%S"), epochs=settings.epochs, wall_seconds=0.0)
    summary["invocations"].append(record)
    earlier = sum(r["wall_seconds"] for r in summary["invocations"][:-1])

    def save_summary():
        record["wall_seconds"] = round(time.perf_counter() - t0, 3)
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")

    test_u8 = None
    interrupted = None
    try:
        for epoch in evaluation_epochs(settings.epochs, settings.eval_every):
            images, k = settings.images_at(epoch), settings.k
            row = rows.get(epoch)
            if row is not None and (int(row["images"]), int(row["k"])) == (images, k):
                continue
            # the checkpoint holds this epoch's weights only at position (epoch, 0)
            position = _position(out)
            before = position is None or position[0] < epoch
            if row is not None and position != (epoch, 0):
                log(f"epoch {epoch}: kept its row ({row['images']} images, K = {row['k']}); the "
                    "checkpoint is past it, so it cannot be scored again")
                continue
            if row is None and not before and position != (epoch, 0):
                log(f"epoch {epoch}: not scored (the checkpoint is past it: epoch {position[0]}, "
                    f"step {position[1]})")
                continue
            ensure_trained(settings.train_config(epoch), out, log, must_match=MUST_MATCH,
                           companions=(CURVE_NAME, SUMMARY_NAME))
            if test_u8 is None:
                test_u8 = load_split("test", "mnist", settings.data_dir)[0]
            log(f"epoch {epoch}: scoring {images:,} test images, K = {k:,} ...")
            row = evaluate_epoch(out, settings, test_u8, images, k)
            trained = read_metrics(out / "metrics.csv")[:epoch]
            row.update(epoch=epoch, train_seconds=f"{sum(float(r['seconds']) for r in trained):.2f}",
                       wall_seconds=f"{earlier + time.perf_counter() - t0:.2f}")
            rows[epoch] = row
            write_curve(out, rows)
            save_summary()
            log(f"epoch {epoch}: test negative ELBO {float(row['test_negative_elbo']):.3f}, IWAE NLL "
                f"{float(row['iwae_nll']):.3f} +- {float(row['iwae_nll_stderr']):.3f} nats/image "
                f"({images:,} images, K = {k:,}) [{float(row['eval_seconds']):.1f} s]")
    except ExperimentInterrupted as exc:
        interrupted = str(exc)
    except KeyboardInterrupt:
        interrupted = (f"{out}: interrupted; run the same command again to resume (the epochs "
                       "scored so far are kept)")
    save_summary()
    markdown = write_up(out, doc, figures, log) if rows else ""
    if interrupted:
        raise ExperimentInterrupted(interrupted)
    return markdown


# -- the write-up ------------------------------------------------------------------------------

def write_up(out, doc=None, figures=True, log=print) -> str:
    """Render the ``nll`` section from the run folder ``out`` into ``doc`` (default
    ``OUT/reproduction.md``), with the plot (see ``run_nll``); returns the markdown."""
    out = Path(out)
    if doc is None:
        doc, figure_dir = out / "reproduction.md", out / "figures"
    else:
        doc = Path(doc)
        figure_dir = doc.parent / "figures" / "reproduction"
    link = None
    if figures:
        try:
            link = os.path.relpath(plot_curve(out, figure_dir / FIGURE_NAME), doc.parent)
        except ImportError as exc:  # matplotlib missing
            log(f"figure skipped: {exc}")
    markdown = render(out, link)
    write_section(doc, SECTION, markdown)
    log(f"wrote the {SECTION!r} section of {doc}")
    return markdown


def _f(row, key):
    return float(row[key])


def render(run_dir, figure=None) -> str:
    """The generated part of docs/reproduction.md (markdown), from the files of ``run_dir``
    alone: ``config.json``, ``nll.csv``, ``nll.json`` (and ``metrics.csv``)."""
    run_dir = Path(run_dir)
    config = RunFolder(run_dir).read_config()
    rows = [r for _, r in sorted(read_curve(run_dir).items())]
    if not rows:
        raise TrainingError(f"{run_dir}: no scored epoch in {CURVE_NAME} yet")
    invocations = read_summary(run_dir)["invocations"]
    metrics = read_metrics(run_dir / "metrics.csv")
    planned = invocations[-1]["epochs"] if invocations else len(metrics)
    trained = len(metrics)
    commands = list(dict.fromkeys(r["command"] for r in invocations))
    train_set = (f"the first {config['train_limit']:,} training images" if config.get("train_limit")
                 else "all 60,000 training images")
    warmup = (f"KL warm-up over {config['kl_warmup']:g} epochs (`--kl-warmup`: the KL weight rises "
              "linearly from 0 to 1; every loss reported is the true negative ELBO)"
              if config.get("kl_warmup") else "no KL warm-up")
    out = [
        "_Generated by the command below; edits here are overwritten._", "",
        "Command: " + "; then ".join(f"`{c}`" for c in commands)
        + (f" (run {len(invocations)} times, each resuming where the last stopped)"
           if len(invocations) > 1 else ""), "",
        (f"Model: `{config['model']}`, z = {config['latent_dim']}, {config['num_params']:,} "
         f"parameters, Bernoulli likelihood ([docs/vae.md](vae.md#the-architectures)). Training: "
         f"{train_set}, dynamically binarized (each pixel drawn anew with probability x / 255 at "
         f"every step), batch {config['batch_size']}, Adam (learning rate {config['lr']:g}, "
         f"constant), {warmup}, seed {config['seed']}; {trained} "
         + (f"of the planned {planned} " if trained < planned else "")
         + f"epoch{'' if trained == 1 else 's'}."),
        "",
        ("Scores, in nats per image, on the official test images binarized once (fixed by the "
         "seed): **negative ELBO**, one z per image and the analytic KL (an upper bound on "
         "-log p(x)); **IWAE NLL**, -log p(x) estimated with K importance samples "
         "(`scratchvae.estimators.importance_weighted_log_likelihood`, Burda et al. 2015), with one "
         "standard error over the images; lower is better."), "",
        "| epoch | test negative ELBO | IWAE NLL | ± | K | test images | training (min) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(f"| {r['epoch']} | {_f(r, 'test_negative_elbo'):.2f} | {_f(r, 'iwae_nll'):.2f} | "
                   f"{_f(r, 'iwae_nll_stderr'):.2f} | {int(r['k']):,} | {int(r['images']):,} | "
                   f"{_f(r, 'train_seconds') / 60:.1f} |")
    full = max(int(r["images"]) for r in rows)
    scored = [r for r in rows if int(r["images"]) == full]
    best, last = min(scored, key=lambda r: _f(r, "iwae_nll")), rows[-1]
    published = " and ".join(f"{name} {value:.2f}" for name, value in PUBLISHED)
    reached = _f(best, "iwae_nll") <= TARGET
    out += [
        "",
        (f"**Result:** IWAE NLL **{_f(last, 'iwae_nll'):.2f}** ± {_f(last, 'iwae_nll_stderr'):.2f} "
         f"nats after epoch {last['epoch']} (K = {int(last['k']):,}, {int(last['images']):,} test "
         f"images); the best over the scored epochs on {full:,} images is {_f(best, 'iwae_nll'):.2f} "
         f"(epoch {best['epoch']}; chosen on the test set itself, so the last epoch's value is "
         f"the unselected one). Target {TARGET:.1f}: "
         + ("**reached**" if reached else "not reached")
         + f". Published with one stochastic layer (Burda, Grosse and Salakhutdinov 2015, "
         f"Table 1, K = 5000): {published}."),
    ]
    if figure:
        out += ["", f"![IWAE NLL and negative ELBO against epochs]({figure})"]
    backends = sorted({r["backend"] for r in invocations})
    machines = list(dict.fromkeys(r["machine"] for r in invocations))
    vers = list(dict.fromkeys(r["versions"] for r in invocations))
    train_min = sum(float(m["seconds"]) for m in metrics) / 60
    eval_min = sum(_f(r, "eval_seconds") for r in rows) / 60
    wall_min = sum(r["wall_seconds"] for r in invocations) / 60
    out += [
        "",
        (f"Machine: {'; '.join(machines) or 'not recorded'}. Backend: {', '.join(backends) or '-'}. "
         f"Versions: {'; '.join(vers) or 'not recorded'}."), "",
        (f"Wall time: training {train_min:.1f} min (the sum of the per-epoch times in "
         f"metrics.csv, each epoch's test loss excluded), scoring {eval_min:.1f} min, the "
         f"command{'s' if len(invocations) > 1 else ''} {wall_min:.1f} min in all."),
    ]
    return "\n".join(out)


def plot_curve(run_dir, path) -> Path:
    """Draw the IWAE NLL of ``nll.csv`` and the per-epoch test negative ELBO of ``metrics.csv``
    against epochs, with the published values, into the PNG ``path``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    run_dir, path = Path(run_dir), Path(path)
    rows = [r for _, r in sorted(read_curve(run_dir).items())]
    metrics = read_metrics(run_dir / "metrics.csv")
    val_images = RunFolder(run_dir).read_config().get("val_limit") or TEST_IMAGES
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if metrics:
        ax.plot([int(m["epoch"]) for m in metrics], [float(m["test_loss"]) for m in metrics],
                color="tab:gray", lw=1.2,
                label=f"test negative ELBO (every epoch, {val_images:,} images)")
    epochs = [int(r["epoch"]) for r in rows]
    nll = [_f(r, "iwae_nll") for r in rows]
    ax.errorbar(epochs, nll, yerr=[_f(r, "iwae_nll_stderr") for r in rows], color="tab:blue",
                marker="o", ms=4, lw=1.5, capsize=2, label=f"IWAE NLL (K = {int(rows[-1]['k']):,})")
    for (name, value), style in zip(PUBLISHED, ("--", "-.")):
        ax.axhline(value, color="tab:red", ls=style, lw=1, label=f"published {name}: {value:.2f}")
    ax.axhline(TARGET, color="black", ls=":", lw=1, label=f"target {TARGET:.1f}")
    # the first epochs' losses are far above the rest: show from the published values to 30
    # nats above the lowest score (or 10 above the last ones, if higher)
    values = nll + [float(m["test_loss"]) for m in metrics]
    last = max(nll[-1], float(metrics[-1]["test_loss"]) if metrics else nll[-1])
    top = min(max(values), max(min(values) + 30, last + 10)) + 1.0
    ax.set_ylim(min(values + [v for _, v in PUBLISHED]) - 1.5, top)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per test image")
    ax.set_title("nll-conv on dynamically binarized MNIST")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
