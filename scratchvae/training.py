"""The training loop behind ``python -m scratchvae.train``: data on the device, Adam,
per-epoch evaluation, metrics, atomic checkpoints, exact resume, Ctrl-C and NaN handling.

Determinism: epoch ``e`` shuffles with a host generator seeded by (seed, e); step
``s`` of epoch ``e`` reseeds the model's generator with (seed, e, s) before drawing
its binarization, dropout masks and noise. So the position (epoch, step) fully
determines every random draw, and a resumed run repeats an uninterrupted one. The KL
warm-up weight is a function of the same position (``kl_warmup_beta``).
"""
from __future__ import annotations

import math
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .backend import get_xp, to_device
from .checkpoint import CHECKPOINT_NAME, check_compatible, restore
from .data import load_split, prepare_batch
from .evaluate import negative_elbo, preprocess_test_images
from .models import ARCHITECTURES, build_vae
from .optim import Adam
from .run_folder import RunFolder, session_record
from .run_schema import MAX_LATENT_DIM, METRICS_FIELDS  # noqa: F401  (METRICS_FIELDS: the columns)

DATASET_IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
SYNC_EVERY = 25  # steps between host reads of the running loss (progress bar, NaN check)


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why and what to do."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training after a step; ``message`` says what was saved and how
    to go on, ``run_dir`` is the run folder. A ``KeyboardInterrupt``, so that a caller which
    does not know it still stops."""

    def __init__(self, message, run_dir):
        super().__init__(message)
        self.message, self.run_dir = message, run_dir


@dataclass
class TrainConfig:
    """Every setting of a run; saved as config.json and inside each checkpoint."""

    model: str = "paper-mlp"
    latent_dim: int | None = None
    likelihood: str | None = None
    beta: float = 1.0
    kl: str | None = None  # the architecture's: "mc" for resnet18-vae, else "analytic"
    variance: float = 0.5
    kl_warmup: float = 0.0
    free_bits: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # the architecture's: 1e-4 for resnet18-vae, else 1e-3
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
        defaults = dict(dict(kl="analytic", lr=1e-3), **spec["defaults"])
        self.kl = defaults["kl"] if self.kl is None else self.kl
        self.lr = defaults["lr"] if self.lr is None else self.lr
        shape = DATASET_IMAGE_SHAPES.get(self.dataset)
        if shape is not None and spec["image_shape"] != shape:
            raise TrainingError(f"--model {self.model} reads {'x'.join(map(str, spec['image_shape']))} "
                                f"images but --dataset {self.dataset} has {'x'.join(map(str, shape))}: "
                                "use resnet18-vae with cifar10 and the other models with MNIST")
        symmetric = spec["data_range"] == (-1.0, 1.0)
        if self.binarize and symmetric:
            raise TrainingError(f"--binarize gives 0/1 pixels, but {self.model} expects [-1, 1] data")
        self.preprocess = "binarize" if self.binarize else ("symmetric" if symmetric else "unit")
        for name in ("epochs", "batch_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.latent_dim > MAX_LATENT_DIM:
            raise TrainingError(f"--latent-dim must be at most {MAX_LATENT_DIM:,}, got {self.latent_dim:,}")
        if self.seed < 0:
            raise TrainingError(f"--seed must be an integer >= 0, got {self.seed}")
        for name in ("lr", "beta", "variance"):
            if not math.isfinite(getattr(self, name)):
                raise TrainingError(f"--{name} must be a finite number, got {getattr(self, name)}")
        if self.variance <= 0:
            raise TrainingError(f"--variance must be positive, got {self.variance}")
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
    """The per-epoch rows of a run (dicts of text by column) given its ``metrics.csv`` path:
    from the checkpoint beside it when there is one (the truth), else from metrics.csv itself
    (a folder without a checkpoint, e.g. copied back from another machine); both checked."""
    folder = RunFolder(Path(path).parent)
    return folder.rows() if folder.has_checkpoint() else folder.read_metrics_csv()


class _StopRequest:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag checked between steps, so a step is never
    cut in half and the save that follows is never cut either: further signals only repeat
    that the run is being saved."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                print("still saving, please wait (the run stops as soon as it is saved)",
                      file=sys.stderr, flush=True)
            self.requested = True

        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: Ctrl-C stays a KeyboardInterrupt
                pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False


class _Resume:
    """What a resume starts from: the locked folder, and the checkpoint's meta, arrays and
    metrics rows (None for a run that died before its first checkpoint)."""

    def __init__(self, folder, meta, arrays, rows):
        self.folder, self.meta, self.arrays, self.rows = folder, meta, arrays, rows


def prepare_run(cfg: TrainConfig, out: Path | None, resume: Path | None, overrides: set,
                companions=()):
    """Check everything that can fail before anything is written; return the run plan.
    ``companions``: names of other tools' files that a new run's folder may already hold."""
    if resume is not None:
        if out is not None:
            raise TrainingError(f"--resume {resume} continues a run in its own folder; drop --out "
                                f"{out} (to start a new run, give --out without --resume)")
        run_dir = Path(resume)
        folder = RunFolder.open_for_training(run_dir)  # locked from here on
        try:
            folder.read_sessions()  # a damaged sessions.json is refused now, not after a save
            if folder.has_checkpoint():
                meta, arrays, rows = folder.read_state()
                folder.repair_metrics(rows)  # agrees with the checkpoint again, even if refused below
                saved = meta["config"]
            else:  # died before its first checkpoint: start from step 0 with its config
                meta = arrays = rows = None
                saved = folder.read_config()
            _resume_plan(cfg, run_dir, saved, meta, overrides)
        except BaseException:
            folder.release()
            raise
        return run_dir, _Resume(folder, meta, arrays, rows)
    cfg.resolve()
    run_dir = Path(out) if out else Path("runs") / f"{cfg.model}-z{cfg.latent_dim}-{time.strftime('%Y%m%d-%H%M%S')}"
    RunFolder(run_dir, companions).check_free()
    return run_dir, None


def _resume_plan(cfg, run_dir, saved, meta, overrides):
    """Take the run's own settings into ``cfg``; refuse changes that cannot be made."""
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
    if meta is not None and meta["position"]["epoch"] >= cfg.epochs and meta["position"]["step"] == 0:
        raise TrainingError(
            f"--resume {run_dir}: the run already has {meta['position']['epoch']} epochs; "
            f"ask for more with --epochs N (N > {meta['position']['epoch']})"
        )


def train(cfg: TrainConfig, out=None, resume=None, overrides=frozenset(), log=print,
          progress=True, figures=True, step_hook=None, companions=()):
    """Run training; returns the run folder. See ``python -m scratchvae.train --help``.

    Ctrl-C or SIGTERM: the step in flight finishes, the position is saved and
    ``TrainingInterrupted`` (a ``KeyboardInterrupt``) is raised with the way to resume.
    """
    run_dir, saved = prepare_run(cfg, out, resume, set(overrides), companions)
    try:
        return _train(cfg, run_dir, saved, log, progress, figures, step_hook, companions)
    finally:
        if saved is not None:
            saved.folder.release()


def _train(cfg, run_dir, saved, log, progress, figures, step_hook, companions):
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
    position, rows = dict(epoch=0, step=0, loss_sum=0.0), []
    if saved is not None and saved.meta is not None:
        check_compatible(saved.meta, vae, run_dir / CHECKPOINT_NAME)
        restore(vae, opt, saved.meta, saved.arrays, run_dir / CHECKPOINT_NAME)
        position, rows = dict(saved.meta["position"]), list(saved.rows)
    versions = _versions(cfg.backend)
    config = dict(asdict(cfg), versions=versions, num_params=vae.num_params())

    # Everything that could refuse has run: now the run folder may be written. From here on
    # Ctrl-C and SIGTERM are a request to save and stop after the step in flight.
    with _StopRequest() as stop:
        if saved is None:
            folder = RunFolder.create(run_dir, config, companions)  # config.json, written once
        else:
            folder = saved.folder
            folder.repair_metrics(rows)  # (prepare_run did it for a checkpoint; here: a dead run)
        session = session_record("created" if saved is None else "resumed", position, cfg.epochs,
                                 versions, cfg.backend)
        try:
            _loop(cfg, run_dir, folder, vae, opt, config, position, rows, train_dev, val_dev,
                  saved is not None, stop, log, progress, step_hook, session)
        finally:
            if saved is None:
                folder.release()
    if figures:
        try:
            _figures(run_dir, vae, config, test_u8, test_labels, log)
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"interrupted while drawing the figures; training is complete and saved in {run_dir}; "
                f"draw them with python -m scratchvae.plot {run_dir}", run_dir) from None
    return run_dir


def _resume_hint(run_dir, cfg):
    return f"continue with: python -m scratchvae.train --resume {run_dir} --epochs {cfg.epochs}"


def _kept(folder, run_dir, cfg):
    """What survives a failed epoch, without claiming a checkpoint that does not exist."""
    if folder.has_checkpoint():
        return f"The last good checkpoint ({run_dir / CHECKPOINT_NAME}) is kept"
    return (f"No checkpoint was written yet: --resume {run_dir} starts it again from step 0, or "
            f"--out {run_dir} reuses the folder")


def _loop(cfg, run_dir, folder, vae, opt, config, position, rows, train_dev, val_dev, resumed,
          stop, log, progress, step_hook, session):
    xp = get_xp(cfg.backend)
    n = train_dev.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    log(f"{vae!r}\nparameters: {vae.num_params():,} | train images: {n:,} | "
        f"test images: {val_dev.shape[0]:,} | backend: {cfg.backend} | run: {run_dir}")
    if resumed:
        log(f"resuming at epoch {position['epoch'] + 1}, step {position['step']}")

    def checkpoint(epoch, step, loss_sum):
        position = dict(epoch=epoch, step=step, loss_sum=loss_sum)
        try:
            folder.save(vae, opt, position, config, rows)
            if session:  # the session's record, once its first checkpoint is saved
                folder.add_session(session)
                session.clear()
        except OSError as exc:
            from .cli import describe_os_error

            kept = _kept(folder, run_dir, cfg)
            raise TrainingError(f"could not save the checkpoint: {describe_os_error(exc)}. {kept} "
                                "(free space or fix the folder, then resume)") from None

    bar_factory = _progress_bar if progress else None
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
                        f"{step + 1}; stopped. {_kept(folder, run_dir, cfg)}; try a smaller --lr"
                    )
                if bar is not None:
                    bar.set_postfix(loss=f"{running:.2f}")
            if bar is not None:
                bar.update(1)
            if stop.requested and not last:
                _close(bar)
                checkpoint(epoch, step + 1, float(loss_sum))
                raise TrainingInterrupted(
                    f"interrupted: saved epoch {epoch + 1} step {step + 1} to "
                    f"{run_dir / CHECKPOINT_NAME}; {_resume_hint(run_dir, cfg)}", run_dir)
        _close(bar)
        seconds = time.perf_counter() - t0
        train_loss = float(loss_sum) / n
        scores = negative_elbo(vae, val_dev, seed=cfg.seed)
        test_loss, test_recon, test_kl = scores["loss"], scores["recon"], scores["kl"]
        if not all(math.isfinite(v) for v in (test_loss, test_recon, test_kl)):
            raise TrainingError(
                f"the test loss became {test_loss} after epoch {epoch + 1}; stopped. "
                f"{_kept(folder, run_dir, cfg)}; try a smaller --lr"
            )
        rows.append(dict(epoch=str(epoch + 1), train_loss=f"{train_loss:.4f}", test_loss=f"{test_loss:.4f}",
                         test_recon=f"{test_recon:.4f}", test_kl=f"{test_kl:.4f}",
                         seconds=f"{seconds:.2f}", images_per_second=f"{images_done / seconds:.1f}"))
        checkpoint(epoch + 1, 0, 0.0)  # and metrics.csv from the same rows
        warming = ""
        if cfg.kl_warmup > 0 and epoch < cfg.kl_warmup:  # the weight of the epoch's last step
            last_beta = kl_warmup_beta(cfg.beta, (epoch + 1) * steps_per_epoch - 1,
                                       steps_per_epoch, cfg.kl_warmup)
            warming = f" | KL warm-up: beta {last_beta:.3f}"
        log(f"epoch {epoch + 1:3d}/{cfg.epochs} | train {train_loss:8.3f} | test {test_loss:8.3f} "
            f"(recon {test_recon:8.3f} + KL {test_kl:7.3f}) nats/image | {seconds:6.1f} s | "
            f"{images_done / seconds:8.0f} img/s{warming}")
        if stop.requested and epoch + 1 < cfg.epochs:
            raise TrainingInterrupted(
                f"interrupted after epoch {epoch + 1}: saved to {run_dir / CHECKPOINT_NAME}; "
                f"{_resume_hint(run_dir, cfg)}", run_dir)


def _figures(run_dir, vae, config, test_u8, test_labels, log):
    try:
        from .plot import write_figures
    except ImportError as exc:  # matplotlib missing
        log(f"figures skipped: {exc}")
        return
    try:
        write_figures(run_dir, vae, config, test_u8, test_labels, log=log)
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
