"""The training loop behind ``python -m scratchvae.train``: data on the device, Adam,
per-epoch evaluation, metrics, atomic checkpoints, exact resume, Ctrl-C and NaN handling.

Determinism: epoch ``e`` shuffles with a host generator seeded by (seed, e); step
``s`` of epoch ``e`` reseeds the model's generator with (seed, e, s) before drawing
its binarization, dropout masks and noise. So the position (epoch, step) fully
determines every random draw, and a resumed run repeats an uninterrupted one. The KL
warm-up weight is a function of the same position (``kl_warmup_beta``).
"""
from __future__ import annotations

import csv
import json
import math
import platform
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import write_atomically
from .backend import get_xp, to_device
from .checkpoint import CHECKPOINT_NAME, check_compatible, read_checkpoint, restore, save_checkpoint
from .data import load_split, prepare_batch
from .evaluate import negative_elbo, preprocess_test_images
from .models import ARCHITECTURES, build_vae
from .optim import Adam

METRICS_FIELDS = ("epoch", "train_loss", "test_loss", "test_recon", "test_kl", "seconds",
                  "images_per_second")
SYNC_EVERY = 25  # steps between host reads of the running loss (progress bar, NaN check)


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why and what to do."""


@dataclass
class TrainConfig:
    """Every setting of a run; saved as config.json and inside each checkpoint."""

    model: str = "paper-mlp"
    latent_dim: int | None = None
    likelihood: str | None = None
    beta: float = 1.0
    kl: str = "analytic"
    variance: float = 0.5
    kl_warmup: float = 0.0
    free_bits: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    lr_decay: float = 1.0
    seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None
    binarize: bool = False
    dataset: str = "mnist"
    data_dir: str | None = None
    backend: str = "numpy"
    dtype: str = "float32"
    preprocess: str = field(default="", init=False)

    def resolve(self):
        """Fill architecture defaults and derived fields; validate ranges."""
        if self.model not in ARCHITECTURES:
            raise TrainingError(f"unknown --model {self.model!r}: choose one of {', '.join(ARCHITECTURES)}")
        spec = ARCHITECTURES[self.model]
        self.latent_dim = spec["latent_dim"] if self.latent_dim is None else int(self.latent_dim)
        self.likelihood = spec["likelihood"] if self.likelihood is None else self.likelihood
        symmetric = spec["data_range"] == (-1.0, 1.0)
        if self.binarize and symmetric:
            raise TrainingError(f"--binarize gives 0/1 pixels, but {self.model} expects [-1, 1] data")
        self.preprocess = "binarize" if self.binarize else ("symmetric" if symmetric else "unit")
        for name in ("epochs", "batch_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.lr <= 0:
            raise TrainingError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise TrainingError(f"--lr-decay must be in (0, 1], the factor applied to the learning "
                                f"rate after every epoch (1 = constant), got {self.lr_decay}")
        for name, unit in (("kl_warmup", "epochs"), ("free_bits", "nats per latent dimension")):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise TrainingError(f"--{name.replace('_', '-')} must be a finite number >= 0 "
                                    f"({unit}), got {value}")
        if self.free_bits > 0 and self.kl != "analytic":
            raise TrainingError(f"--free-bits needs --kl analytic (it floors each dimension's "
                                f"analytic KL), got --kl {self.kl}")
        return self


# Settings a resumed run must keep: the model, its objective (beta, KL warm-up, free bits),
# the data and the optimizer.
ARCHITECTURE_KEYS = ("model", "latent_dim", "likelihood", "beta", "kl", "variance", "kl_warmup",
                     "free_bits", "dtype", "dataset", "seed", "batch_size", "lr", "lr_decay",
                     "binarize", "train_limit")


def kl_warmup_beta(beta, global_step, steps_per_epoch, warmup_epochs):
    """The KL weight of one training step under a linear KL warm-up.

    beta_t = beta * min(1, t / (warmup_epochs * steps_per_epoch)), t = epoch * steps_per_epoch
    + step, the number of steps taken before this one: 0 at the first step, the full ``beta``
    from epoch ``warmup_epochs`` on (a fraction of an epoch is allowed). ``warmup_epochs`` = 0
    means no warm-up: ``beta`` at every step. A function of the position alone, so a resumed
    run uses the same weights as an uninterrupted one.
    """
    beta = float(beta)
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, global_step / (warmup_epochs * steps_per_epoch))


def epoch_lr(lr, lr_decay, epoch):
    """The learning rate of epoch ``epoch`` (0-based): lr * lr_decay ** epoch. A function of the
    position alone, so a resumed run uses the same rates; lr_decay = 1 gives exactly ``lr``."""
    return lr * lr_decay**epoch


def _versions(backend):
    out = dict(scratchvae=__version__, numpy=np.__version__, python=platform.python_version())
    if backend == "cupy":
        xp = get_xp("cupy")
        out["cupy"] = xp.__version__
        out["gpu"] = xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return out


def read_metrics(path: Path):
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_metrics(path: Path, rows):
    lines = [",".join(METRICS_FIELDS)]
    lines += [",".join(str(r[k]) for k in METRICS_FIELDS) for r in rows]
    write_atomically(path, "\n".join(lines) + "\n")


class _StopRequest:
    """Turns Ctrl-C into a flag checked between steps, so a step is never cut in half."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:  # a second Ctrl-C: stop at once
                raise KeyboardInterrupt
            self.requested = True

        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def prepare_run(cfg: TrainConfig, out: Path | None, resume: Path | None, overrides: set):
    """Check everything that can fail before anything is written; return the run plan."""
    if resume is not None:
        run_dir = Path(resume)
        meta, arrays = read_checkpoint(run_dir / CHECKPOINT_NAME)
        saved = meta["config"]
        defaults = TrainConfig()  # for settings that runs made before them do not record
        clash = [k for k in overrides if k in ARCHITECTURE_KEYS
                 and saved.get(k, getattr(defaults, k)) != getattr(cfg, k)]
        if clash:
            raise TrainingError(
                f"--resume {run_dir}: the run was made with "
                + ", ".join(f"{k}={saved.get(k, getattr(defaults, k))!r}" for k in clash)
                + "; these cannot change on resume (drop the flags, or start a new run with --out)"
            )
        for k in ARCHITECTURE_KEYS + ("data_dir", "val_limit", "backend"):
            if k not in overrides and k in saved:
                setattr(cfg, k, saved[k])
        cfg.resolve()
        if meta["position"]["epoch"] >= cfg.epochs and meta["position"]["step"] == 0:
            raise TrainingError(
                f"--resume {run_dir}: the run already has {meta['position']['epoch']} epochs; "
                f"ask for more with --epochs N (N > {meta['position']['epoch']})"
            )
        return run_dir, (meta, arrays)
    cfg.resolve()
    run_dir = Path(out) if out else Path("runs") / f"{cfg.model}-z{cfg.latent_dim}-{time.strftime('%Y%m%d-%H%M%S')}"
    if (run_dir / CHECKPOINT_NAME).exists() or (run_dir / "config.json").exists():
        raise TrainingError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
            "or choose another --out (nothing was overwritten)"
        )
    return run_dir, None


def train(cfg: TrainConfig, out=None, resume=None, overrides=frozenset(), log=print,
          progress=True, figures=True, step_hook=None):
    """Run training; returns the run folder. See ``python -m scratchvae.train --help``."""
    run_dir, saved = prepare_run(cfg, out, resume, set(overrides))
    xp = get_xp(cfg.backend)

    train_u8, _ = load_split("train", cfg.dataset, cfg.data_dir)
    test_u8, test_labels = load_split("test", cfg.dataset, cfg.data_dir)
    train_u8 = train_u8[: cfg.train_limit]
    train_dev = to_device(train_u8, cfg.backend)
    # the per-epoch test set: preprocessed once (a fixed binarization), kept on the device
    val_dev = to_device(preprocess_test_images(test_u8[: cfg.val_limit], cfg.preprocess, cfg.seed,
                                              cfg.dtype), cfg.backend)

    vae = build_vae(cfg.model, cfg.latent_dim, cfg.likelihood, cfg.beta, dtype=cfg.dtype,
                    seed=cfg.seed, backend=cfg.backend, kl=cfg.kl, variance=cfg.variance,
                    free_bits=cfg.free_bits)
    opt = Adam(vae.params, vae.grads, lr=cfg.lr)
    position = dict(epoch=0, step=0, loss_sum=0.0)
    if saved is not None:
        meta, arrays = saved
        check_compatible(meta, vae, run_dir / CHECKPOINT_NAME)
        restore(vae, opt, meta, arrays, run_dir / CHECKPOINT_NAME)
        position = meta["position"]

    # Everything that could refuse has run: now the run folder may be written.
    run_dir.mkdir(parents=True, exist_ok=True)
    config = dict(asdict(cfg), versions=_versions(cfg.backend), num_params=vae.num_params())
    write_atomically(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    metrics_path = run_dir / "metrics.csv"
    rows = [r for r in read_metrics(metrics_path) if int(r["epoch"]) <= position["epoch"]]
    write_metrics(metrics_path, rows)

    n = train_dev.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    log(f"{vae!r}\nparameters: {vae.num_params():,} | train images: {n:,} | "
        f"test images: {val_dev.shape[0]:,} | backend: {cfg.backend} | run: {run_dir}")
    if saved is not None:
        log(f"resuming at epoch {position['epoch'] + 1}, step {position['step']}")

    def checkpoint(epoch, step, loss_sum):
        save_checkpoint(run_dir / CHECKPOINT_NAME, vae, opt,
                        dict(epoch=epoch, step=step, loss_sum=loss_sum), config)

    bar_factory = _progress_bar if progress else None
    with _StopRequest() as stop:
        for epoch in range(position["epoch"], cfg.epochs):
            start_step = position["step"] if epoch == position["epoch"] else 0
            loss_sum = xp.asarray(position["loss_sum"] if start_step else 0.0, dtype=np.float64)
            order = to_device(np.random.default_rng([cfg.seed, epoch]).permutation(n), cfg.backend)
            opt.lr = epoch_lr(cfg.lr, cfg.lr_decay, epoch)
            t0 = time.perf_counter()
            bar = bar_factory(epoch, cfg.epochs, steps_per_epoch, start_step) if bar_factory else None
            images_done = 0
            for step in range(start_step, steps_per_epoch):
                vae.rng.reseed(cfg.seed, epoch, step)
                batch = train_dev[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
                x = prepare_batch(batch, cfg.preprocess, vae.rng, vae.dtype)
                terms = vae.forward(x, training=True)
                vae.backward(beta=kl_warmup_beta(cfg.beta, epoch * steps_per_epoch + step,
                                                 steps_per_epoch, cfg.kl_warmup))
                opt.step()
                # the reported loss: recon + beta * the true KL (terms.loss, unless free bits
                # floor the KL); KL warm-up changes the gradient's weight only
                loss_sum = loss_sum + (terms.recon + vae.beta * terms.kl) * x.shape[0]
                images_done += x.shape[0]
                if step_hook is not None:
                    step_hook(epoch, step, vae)
                last = step == steps_per_epoch - 1
                if (step + 1) % SYNC_EVERY == 0 or last or stop.requested:
                    running = float(loss_sum) / min(n, (step + 1) * cfg.batch_size)
                    if not math.isfinite(running):
                        _close(bar)
                        raise TrainingError(
                            f"the training loss became {running} in epoch {epoch + 1} near step "
                            f"{step + 1}; stopped. The last good checkpoint ({run_dir / CHECKPOINT_NAME}) "
                            "is kept; try a smaller --lr"
                        )
                    if bar is not None:
                        bar.set_postfix(loss=f"{running:.2f}")
                if bar is not None:
                    bar.update(1)
                if stop.requested and not last:
                    _close(bar)
                    checkpoint(epoch, step + 1, float(loss_sum))
                    log(f"interrupted: saved epoch {epoch + 1} step {step + 1} to "
                        f"{run_dir / CHECKPOINT_NAME}; continue with --resume {run_dir}")
                    return run_dir
            _close(bar)
            seconds = time.perf_counter() - t0
            train_loss = float(loss_sum) / n
            scores = negative_elbo(vae, val_dev, seed=cfg.seed)
            test_loss, test_recon, test_kl = scores["loss"], scores["recon"], scores["kl"]
            if not all(math.isfinite(v) for v in (test_loss, test_recon, test_kl)):
                raise TrainingError(
                    f"the test loss became {test_loss} after epoch {epoch + 1}; stopped. The last "
                    f"good checkpoint ({run_dir / CHECKPOINT_NAME}) is kept; try a smaller --lr"
                )
            rows.append(dict(epoch=epoch + 1, train_loss=f"{train_loss:.4f}", test_loss=f"{test_loss:.4f}",
                             test_recon=f"{test_recon:.4f}", test_kl=f"{test_kl:.4f}",
                             seconds=f"{seconds:.2f}", images_per_second=f"{images_done / seconds:.1f}"))
            checkpoint(epoch + 1, 0, 0.0)
            write_metrics(metrics_path, rows)
            warming = ""
            if cfg.kl_warmup > 0 and epoch < cfg.kl_warmup:  # the weight of the epoch's last step
                last_beta = kl_warmup_beta(cfg.beta, (epoch + 1) * steps_per_epoch - 1,
                                           steps_per_epoch, cfg.kl_warmup)
                warming = f" | KL warm-up: beta {last_beta:.3f}"
            log(f"epoch {epoch + 1:3d}/{cfg.epochs} | train {train_loss:8.3f} | test {test_loss:8.3f} "
                f"(recon {test_recon:8.3f} + KL {test_kl:7.3f}) nats/image | {seconds:6.1f} s | "
                f"{images_done / seconds:8.0f} img/s{warming}")
            if stop.requested:
                log(f"interrupted after epoch {epoch + 1}: saved; continue with --resume {run_dir}")
                return run_dir
    if figures:
        _figures(run_dir, vae, config, test_u8, test_labels, log)
    return run_dir


def _figures(run_dir, vae, config, test_u8, test_labels, log):
    try:
        from .plot import write_figures
    except ImportError as exc:  # matplotlib missing
        log(f"figures skipped: {exc}")
        return
    try:
        write_figures(run_dir, vae, config, test_u8, test_labels)
    except ImportError as exc:
        log(f"figures skipped: {exc}")
        return
    log(f"figures written to {run_dir}")


def _progress_bar(epoch, epochs, total, initial):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=False, dynamic_ncols=True)


def _close(bar):
    if bar is not None:
        bar.close()
