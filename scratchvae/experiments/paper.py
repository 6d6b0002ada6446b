"""The paper's experiment: Tables 1 and 2 and Figures 5-8, trained, scored and written up.

For each model (paper-mlp: Table 1, paper-conv: Table 2) and latent size z = 2, 5, 16 one
run folder ``OUT/<model>-z<z>/`` is trained with the paper's settings (the first 6,000
training images, the first 1,000 test images as the validation set, batch 64, 50 epochs,
Adam 1e-3) through ``scratchvae.training.train``. A finished run is skipped and an
interrupted one resumed, so the command can be repeated until it completes.

Each run is then scored: the last epoch's train and validation loss (``metrics.csv``), the
parameter count, and two classifier-feature FIDs (``scratchvae.fid``) against the test
images: of their reconstructions decode(mu(x)) (the paper's "FID between the original
images and reconstructed images") and of as many samples decode(z), z ~ N(0, I).
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..backend import get_xp, to_device, to_host
from ..classifier import load_or_train_classifier
from ..data import load_split
from ..estimators import preprocess_test_images
from ..fid import classifier_fid
from ..runs import CHECKPOINT_NAME, CONFIG_NAME, LOCK_NAME, RunFolder, TrainConfig, TrainingError, load_model, read_meta, read_metrics
from ..training import TrainingInterrupted, train
from . import write_section
from .figures import paper_figures

# the paper's Tables 1 and 2: model -> z -> (train loss, val loss, FID, parameters)
PAPER_TABLES = {
    "paper-mlp": {2: (37.49, 37.90, 19.93, 404_244), 5: (31.09, 31.14, 8.67, 406_554),
                  16: (29.43, 29.24, 4.63, 415_024)},
    "paper-conv": {2: (36.72, 36.62, 17.20, 184_421), 5: (30.27, 29.77, 7.12, 194_027),
                   16: (33.19, 32.59, 10.59, 229_249)},  # printed "229.249"
}
TABLE_TITLES = {"paper-mlp": "Table 1: vanilla VAE (`paper-mlp`)",
                "paper-conv": "Table 2: convolutional VAE (`paper-conv`)"}
FIGURE_CAPTIONS = {
    5: "the latent space, posterior means mu(x) of the test images coloured by digit (z = 2)",
    6: "reconstructions, z = 2: odd columns test images, even columns their reconstructions",
    7: "reconstructions, z = 16, the same layout",
    8: "the generated manifold, decode(z) on a grid of N(0, 1) quantiles (z = 2)",
}
SAMPLE_TAG = 7_000_002  # seeds the prior samples of the FID with (seed, tag)
BATCH = 500  # images per forward pass when reconstructing and sampling
SECTION = "paper"
# a run folder is reused only when it was made with these same settings
MUST_MATCH = ("model", "latent_dim", "batch_size", "lr", "seed", "train_limit", "val_limit")


class ExperimentInterrupted(RuntimeError):
    """Training stopped on Ctrl-C (its position is saved); running the command again resumes."""


@dataclass
class PaperSettings:
    """The experiment's settings; the defaults are the paper's (``QUICK`` overrides some)."""

    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    train_limit: int = 6000
    val_limit: int = 1000
    fid_images: int = 10_000
    models: tuple = ("paper-mlp", "paper-conv")
    latent_dims: tuple = (2, 5, 16)
    seed: int = 0
    backend: str = "numpy"
    data_dir: str | None = None

    def train_config(self, model, latent_dim) -> TrainConfig:
        """The ``TrainConfig`` of one run (figures and progress bar are the caller's choice)."""
        return TrainConfig(model=model, latent_dim=latent_dim, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           train_limit=self.train_limit, val_limit=self.val_limit,
                           data_dir=self.data_dir, backend=self.backend)


QUICK = dict(epochs=1, train_limit=600, val_limit=200, fid_images=1000, latent_dims=(2,))


def check_run_settings(cfg: TrainConfig, run_dir: Path, must_match=MUST_MATCH) -> None:
    """Refuse (``TrainingError``) a ``run_dir`` whose config.json differs from ``cfg`` in any
    of ``must_match``; a folder without config.json passes."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file():
        saved = RunFolder(run_dir).read_config()
        differ = [k for k in must_match if saved.get(k) != getattr(cfg, k)]
        if differ:
            raise TrainingError(
                f"{run_dir} holds a run made with " + ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
                + ", not " + ", ".join(f"{k}={getattr(cfg, k)!r}" for k in differ)
                + "; choose another --out (nothing was changed)")


def ensure_trained(cfg: TrainConfig, run_dir: Path, log=print, must_match=MUST_MATCH,
                   companions=()) -> bool:
    """Train, resume or skip ``run_dir`` so that it holds ``cfg.epochs`` finished epochs.

    Returns True when it trained. Refuses (``TrainingError``) a folder made with other
    settings (any of ``must_match``, see ``check_run_settings``) or more epochs; raises
    ``ExperimentInterrupted`` when Ctrl-C stopped training. ``companions``: the experiment's
    own files, which a new run's folder may already hold.
    """
    run_dir = Path(run_dir)
    metrics, checkpoint = run_dir / "metrics.csv", run_dir / CHECKPOINT_NAME
    check_run_settings(cfg, run_dir, must_match)
    position = read_meta(checkpoint)["position"] if checkpoint.is_file() else None
    done = position["epoch"] if position else 0  # the checkpoint holds one metrics row per epoch
    reached = done
    if reached > cfg.epochs:
        raise TrainingError(f"{run_dir} already has {reached} epochs, more than {cfg.epochs}; "
                            f"ask for --epochs {reached} or choose another --out")
    if done == cfg.epochs and position and (position["epoch"], position["step"]) == (cfg.epochs, 0):
        log(f"{run_dir}: complete ({_count(done, 'epoch')}), skipped")
        return False
    # a run that died before its first checkpoint resumes from step 0
    dead = position is None and (run_dir / CONFIG_NAME).is_file() and (run_dir / LOCK_NAME).is_file()
    try:
        if position is not None or dead:
            log(f"{run_dir}: resuming after {done} of {cfg.epochs} epochs")
            train(cfg, resume=run_dir, overrides={"epochs", "backend", "data_dir"}, log=log,
                  progress=False, figures=False)
        else:  # new, or left by an older scratchvae before its first checkpoint
            for name in ("config.json", "metrics.csv"):  # (check_run_settings read them: ours)
                (run_dir / name).unlink(missing_ok=True)
            log(f"{run_dir}: training {cfg.model}, z = {cfg.latent_dim}, {_count(cfg.epochs, 'epoch')}")
            train(cfg, out=run_dir, log=log, progress=False, figures=False, companions=companions)
    except TrainingInterrupted as exc:
        raise ExperimentInterrupted(f"{exc.message}; or run the same command again to resume") from None
    if len(read_metrics(metrics)) < cfg.epochs:
        raise ExperimentInterrupted(f"{run_dir}: interrupted; run the same command again to resume")
    return True


def _count(n, noun):
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _batched(fn, n):
    """Host float array of ``fn(start, stop)`` over [0, n) in slices of ``BATCH``, concatenated."""
    return np.concatenate([to_host(fn(i, min(n, i + BATCH))) for i in range(0, n, BATCH)])


def score_run(run_dir, images, classifier, settings: PaperSettings):
    """One run's row: last-epoch losses, parameters and both FIDs; returns ``(row, vae)``.

    images : float (N, 1, 28, 28) test images in [0, 1] on the host
    """
    vae, config = load_model(run_dir, backend=settings.backend)
    rows = read_metrics(Path(run_dir) / "metrics.csv")
    last, n = rows[-1], images.shape[0]
    recon = _batched(lambda a, b: vae.reconstruct(to_device(images[a:b], vae.backend, vae.dtype)), n)
    vae.rng.reseed(settings.seed, SAMPLE_TAG)
    samples = _batched(lambda a, b: vae.sample(b - a), n)
    row = dict(model=config["model"], latent_dim=vae.latent_dim, epochs=int(last["epoch"]),
               train_loss=float(last["train_loss"]), val_loss=float(last["test_loss"]),
               val_recon=float(last["test_recon"]), val_kl=float(last["test_kl"]),
               parameters=vae.num_params(), fid_images=n,
               fid_recon=float(classifier_fid(images, recon, classifier)),
               fid_samples=float(classifier_fid(images, samples, classifier)),
               train_seconds=sum(float(r["seconds"]) for r in rows),
               trained_on=config.get("backend"), versions=config.get("versions", {}))
    return row, vae


def machine_description(backend) -> str:
    """CPU model and core count, and the GPU on the cupy backend."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores, {platform.system()}"
    if backend == "cupy":
        xp = get_xp("cupy")
        text += f"; GPU {xp.cuda.runtime.getDeviceProperties(0)['name'].decode()}"
    return text


def versions(backend) -> str:
    """The versions that produced the numbers: scratchvae, Python, NumPy (CuPy, matplotlib)."""
    out = [f"scratchvae {__version__}", f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    if backend == "cupy":
        out.append(f"CuPy {get_xp('cupy').__version__}")
    try:
        import matplotlib
        out.append(f"matplotlib {matplotlib.__version__}")
    except ImportError:
        pass
    return ", ".join(out)


def _table(model, rows):
    head = ("| z | train | val | classifier-FID recon | classifier-FID samples | parameters "
            "| paper: train | paper: val | paper: FID | paper: parameters |\n"
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"### {TABLE_TITLES.get(model, model)}", "", head]
    for r in rows:
        p = PAPER_TABLES.get(model, {}).get(r["latent_dim"])
        paper = f"{p[0]:.2f} | {p[1]:.2f} | {p[2]:.2f} | {p[3]:,}" if p else "- | - | - | -"
        lines.append(f"| {r['latent_dim']} | {r['train_loss']:.2f} | {r['val_loss']:.2f} | "
                     f"{r['fid_recon']:.2f} | {r['fid_samples']:.2f} | {r['parameters']:,} | {paper} |")
    return "\n".join(lines)


def render(rows, accuracy, settings: PaperSettings, command, wall_seconds, figures=()) -> str:
    """The generated part of docs/reproduction.md (markdown) from the scored rows."""
    s, n = settings, settings.fid_images
    out = [
        "_Generated by the command below; edits here are overwritten._", "",
        f"Command: `{command}`", "",
        (f"Settings: {_count(s.epochs, 'epoch')}, batch {s.batch_size}, Adam (lr {s.lr:g}), "
         f"seed {s.seed}, Bernoulli likelihood, pixels x / 255. Training set: the first "
         f"{s.train_limit:,} official training images. Validation set (\"val\"): the first "
         f"{s.val_limit:,} official test images, scored after every epoch in evaluation mode (no "
         "dropout, one z per image)."),
        "",
        ("Ours: **train** is the mean loss over the last epoch's batches while training (dropout "
         "on for paper-conv; what Keras reports), **val** the last epoch's validation loss, both "
         "the negative ELBO in nats per image. **Classifier-FID** (`scratchvae.fid`): the Fréchet "
         f"distance between the features of the first {n:,} test images and those of their "
         f"reconstructions decode(mu(x)) (**recon**, the paper's choice), or of {n:,} samples "
         "decode(z), z ~ N(0, I) (**samples**), on the features of our MNIST classifier "
         f"(`scratchvae.classifier`, test accuracy {100 * accuracy:.2f}%), not Inception's. "
         "Paper: Tables 1 and 2 as printed; its losses are in other units (see [Units](#units)) "
         "and its FID uses other features: compare trends, not values."), "",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        out += [_table(model, [r for r in rows if r["model"] == model]), ""]
    if figures:
        out += ["### Figures", ""]
        for number, caption in FIGURE_CAPTIONS.items():
            mine = [f for f in figures if Path(f).name.startswith(f"fig{number}_")]
            if mine:
                out += [f"Figure {number}: {caption}.", "",
                        " ".join(f"![{Path(f).stem}]({f})" for f in mine), ""]
    trained = sorted({f"{r['trained_on']} ({', '.join(f'{k} {v}' for k, v in r['versions'].items())})"
                      for r in rows})
    train_min = {m: sum(r["train_seconds"] for r in rows if r["model"] == m) / 60
                 for m in dict.fromkeys(r["model"] for r in rows)}
    out += [
        (f"Machine: {machine_description(s.backend)}. Backend: {s.backend}; the runs were "
         f"trained on {'; '.join(trained)}. Versions: {versions(s.backend)}."), "",
        "Wall time: training " + ", ".join(f"{m} {t:.1f} min" for m, t in train_min.items())
        + " (the sum of the per-epoch times in metrics.csv, validation excluded); this command "
        f"{wall_seconds / 60:.1f} min (the training it did, scoring and figures).",
    ]
    return "\n".join(out)


def run_paper(settings: PaperSettings, out, doc=None, figures=True,
              command="python -m scratchvae.experiments paper", log=print) -> str:
    """Train (or resume, or skip) every run under ``out``, score them, draw the figures and
    write the ``paper`` section of ``doc`` (default ``OUT/reproduction.md``, figures in
    ``OUT/figures/``; with ``doc``, figures in ``DOC_FOLDER/figures/reproduction/``).
    Returns the markdown written."""
    t0 = time.perf_counter()
    out = Path(out)
    runs = [(m, z, out / f"{m}-z{z}") for m in settings.models for z in settings.latent_dims]
    for model, z, run_dir in runs:
        ensure_trained(settings.train_config(model, z), run_dir, log)

    classifier, accuracy = load_or_train_classifier(dataset="mnist", data_dir=settings.data_dir,
                                                    backend=settings.backend, log=log)
    test_u8, labels = load_split("test", "mnist", settings.data_dir)
    images = preprocess_test_images(test_u8[: settings.fid_images], "unit", settings.seed)
    labels = labels[: settings.fid_images]
    if doc is None:
        doc, figure_dir = out / "reproduction.md", out / "figures"
    else:
        doc = Path(doc)
        figure_dir = doc.parent / "figures" / "reproduction"
    rows, drawn = [], []
    for model, z, run_dir in runs:
        row, vae = score_run(run_dir, images, classifier, settings)
        rows.append(row)
        log(f"{run_dir}: train {row['train_loss']:.2f}, val {row['val_loss']:.2f} nats/image, "
            f"classifier-FID recon {row['fid_recon']:.2f}, samples {row['fid_samples']:.2f}")
        if figures:
            try:
                drawn += paper_figures(vae, model, images, labels, figure_dir, log)
            except ImportError as exc:  # matplotlib missing
                log(f"figures skipped: {exc}")
                figures = False
    links = [os.path.relpath(p, doc.parent) for p in drawn]
    markdown = render(rows, accuracy, settings, command, time.perf_counter() - t0, links)
    write_section(doc, SECTION, markdown)
    log(f"wrote the {SECTION!r} section of {doc}")
    return markdown
