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
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __version__
from .backend import get_xp, to_device
from .cli import EXIT_ERROR, describe_os_error
from .data import load_split, prepare_batch
from .estimators import negative_elbo, preprocess_test_images
from .explorer import EXPLORER_NAME, ExplorerError, write_dataset_explorer
from .figures import write_figures
from .models import build_vae
from .optim import Adam
from .runs.checkpoint import CHECKPOINT_NAME, check_compatible, restore
from .runs.config import ARCHITECTURE_KEYS, TrainConfig, TrainingError, default_run_name
from .runs.folder import RunFolder, session_record

SYNC_EVERY = 25  # steps between host reads of the running loss (progress bar, NaN check)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training after a step; ``message`` says what was saved and how
    to go on, ``run_dir`` is the run folder. A ``KeyboardInterrupt``, so that a caller which
    does not know it still stops."""

    def __init__(self, message, run_dir):
        super().__init__(message)
        self.message, self.run_dir = message, run_dir


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


class CheckpointSaveError(TrainingError):
    """The checkpoint could not be written (a full disk, a file-size limit, a folder that became
    read-only): an OS fault, so the command exits 1, not 2; the message says what was kept."""

    exit_code = EXIT_ERROR


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
                _refuse_lost_checkpoint(folder, run_dir)
                meta = arrays = rows = None
                saved = folder.read_config()
            _resume_plan(cfg, run_dir, saved, meta, overrides)
        except BaseException:
            folder.release()
            raise
        return run_dir, _Resume(folder, meta, arrays, rows)
    cfg.resolve()
    if out is None:  # a fresh name: RunFolder.create_new adds -2, -3, ... if it is taken meanwhile
        return Path("runs") / default_run_name(cfg), None
    run_dir = Path(out)
    RunFolder(run_dir, companions).check_free()
    return run_dir, None


def _refuse_lost_checkpoint(folder, run_dir):
    """A run with no readable checkpoint may start again from step 0 only if it never finished
    an epoch (it died before its first save); otherwise its history would be rewritten."""
    path = run_dir / CHECKPOINT_NAME
    if path.is_symlink() and not path.exists():
        what = "a dangling symbolic link"
    elif path.exists():
        what = "a folder" if path.is_dir() else "not a regular file"
    else:
        what = "missing"
    epochs, sessions = len(folder.read_metrics_csv()), len(folder.read_sessions())
    if what != "missing" or epochs or sessions:
        recorded = f"the run records {epochs} finished epoch{'s' * (epochs != 1)} and {sessions} session" \
                   f"{'s' * (sessions != 1)} ({run_dir / 'metrics.csv'}, {run_dir / 'sessions.json'})"
        raise TrainingError(f"--resume {run_dir}: {path} is {what}, but {recorded}; put the checkpoint "
                            f"back from a copy, or start a new run with --out (nothing was changed)")


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
    # the run's own target (the last session's --epochs) unless --epochs gives a new one
    for k in ARCHITECTURE_KEYS + ("epochs", "data_dir", "val_limit", "backend"):
        if k not in overrides and k in saved:
            setattr(cfg, k, saved[k])
    cfg.resolve()
    if meta is not None and meta["position"]["epoch"] >= cfg.epochs:
        done, step = meta["position"]["epoch"], meta["position"]["step"]
        if step == 0:
            raise TrainingError(f"--resume {run_dir}: the run already has {done} epochs; ask for more "
                                f"with --epochs N (N > {done})")
        raise TrainingError(f"--resume {run_dir}: the run stopped inside epoch {done + 1}; finish it "
                            f"with --epochs N (N > {done})")


def train(cfg: TrainConfig, out=None, resume=None, overrides=frozenset(), log=print,
          progress=True, figures=True, step_hook=None, companions=()):
    """Run training; returns the run folder. See ``python -m scratchvae.train --help``.

    Ctrl-C or SIGTERM: the step in flight finishes, the position is saved and
    ``TrainingInterrupted`` (a ``KeyboardInterrupt``) is raised with the way to resume.
    """
    run_dir, saved = prepare_run(cfg, out, resume, set(overrides), companions)
    try:
        return _train(cfg, run_dir, saved, log, progress, figures, step_hook, companions,
                      fresh_name=out is None and resume is None)
    finally:
        if saved is not None:
            saved.folder.release()


def _train(cfg, run_dir, saved, log, progress, figures, step_hook, companions, fresh_name):
    get_xp(cfg.backend)  # an unavailable backend is refused before any data is read

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
        _check_position(position, train_dev.shape[0], cfg, run_dir / CHECKPOINT_NAME)
    versions = _versions(cfg.backend)
    config = dict(asdict(cfg), versions=versions, num_params=vae.num_params())

    # Everything that could refuse has run: now the run folder may be written. From here on
    # Ctrl-C and SIGTERM are a request to save and stop after the step in flight.
    with _StopRequest() as stop:
        if saved is None:  # config.json, written once
            create = RunFolder.create_new if fresh_name else RunFolder.create
            folder = create(run_dir, config, companions)
            run_dir = folder.path
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
            _figures(run_dir, vae, config, test_u8, test_labels, rows, log)
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
            kept = _kept(folder, run_dir, cfg)
            raise CheckpointSaveError(f"could not save the checkpoint: {describe_os_error(exc)}. {kept} "
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


def _check_position(position, n, cfg, path):
    """Refuse a checkpoint whose step lies past the end of its epoch (it would resume into an
    epoch that trains no step and record it)."""
    steps = math.ceil(n / cfg.batch_size)
    if position["step"] >= steps:
        raise TrainingError(f"{path}: its position, step {position['step']:,} of epoch "
                            f"{position['epoch'] + 1}, lies past the epoch's {steps:,} steps ({n:,} images "
                            f"in batches of {cfg.batch_size}); the checkpoint is damaged (use a copy, or "
                            "start a new run with --out); nothing was changed")


def _figures(run_dir, vae, config, test_u8, test_labels, rows, log):
    try:  # the explorer page first: it needs no matplotlib
        page = write_dataset_explorer(
            vae, preprocess_test_images(test_u8, config["preprocess"], config["seed"], vae.dtype),
            test_labels, run_dir / EXPLORER_NAME, run_dir.name, config["dataset"], config["preprocess"])
        log(f"wrote {page.path}" + ("" if page.live else f" (the codes only: {page.note})"))
    except ExplorerError as exc:
        log(f"{EXPLORER_NAME} skipped: {exc}")
    try:
        write_figures(run_dir, vae, test_u8, test_labels, preprocess=config["preprocess"],
                      dataset=config["dataset"], seed=config["seed"], metrics_rows=rows, log=log)
    except ImportError as exc:  # matplotlib missing
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
