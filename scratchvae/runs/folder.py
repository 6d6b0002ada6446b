"""A run folder and the one object that owns every file in it: ``RunFolder``.

What it guarantees (docs/training.md#what-survives-which-fault):

* **A new run takes only a new or empty folder.** Anything else is refused with the
  folder's contents named, and nothing is touched. The one exception is a folder this code
  made for a run that died before its first checkpoint (its lock file, config and an empty
  metrics.csv): it may be reused, or resumed from step 0.
* **One writer.** A training holds an exclusive ``flock`` on ``LOCK_NAME`` inside the folder
  for as long as it runs; the kernel drops it when the process ends, however it ends, so a
  killed run never leaves a stale lock. A second writer is refused at once with the holder's
  pid. Readers (``evaluate``, ``plot``) take no lock: they read one checkpoint file through
  one open descriptor, a consistent snapshot even while a run replaces it.
* **The checkpoint is the single source of truth.** It carries the per-epoch metrics rows;
  ``metrics.csv`` is rewritten from it after every checkpoint and whenever a writer opens the
  folder, and readers take the rows from the checkpoint. ``config.json`` is written once,
  when the run is created; each training session (the first and every resume) adds a record
  to ``sessions.json``.
* Every file is written through ``scratchvae.atomic`` (temp file, fsync, rename, fsync of
  the folder), and every file is read through a checked schema (``scratchvae.runs.schema``,
  ``scratchvae.runs.checkpoint``).
"""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; a second writer is not detected there (docs/training.md)
    fcntl = None

from ..atomic import check_writable, temporary_name_of, write_atomically
from .checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint, read_meta, save_checkpoint
from .schema import (RunFileError, check_metrics_rows, dumps_strict, format_metrics_csv, loads_strict, parse_config_json,
                         parse_metrics_csv)

LOCK_NAME = ".scratchvae.lock"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"
SESSIONS_NAME = "sessions.json"
EVALUATION_NAME = "evaluation.json"
TRAINER_FILES = (CHECKPOINT_NAME, CONFIG_NAME, METRICS_NAME, SESSIONS_NAME)
_DEAD_RUN_FILES = {LOCK_NAME, CONFIG_NAME, METRICS_NAME, SESSIONS_NAME}


class RunFolderError(ValueError):
    """A run folder cannot be used as asked; the message says why and what to do."""


def _listing(names, limit=8):
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _is_trainer_temp(name):
    return any(Path(name).match(temporary_name_of(own)) for own in TRAINER_FILES)


class RunFolder:
    """The run folder at ``path``. ``create`` (a new run) and ``open_for_training`` (a resume)
    return it locked for writing; ``read_snapshot`` reads a run without a lock."""

    def __init__(self, path, companions=()):
        self.path = Path(path)
        self.companions = frozenset(companions)  # other tools' files a new run may find there
        self._lock_fd = None

    # -- the lock ------------------------------------------------------------------------
    def _holder(self):
        try:
            return (self.path / LOCK_NAME).read_text().strip() or "unknown"
        except (OSError, UnicodeError):
            return "unknown"

    def _in_use(self):
        return RunFolderError(f"{self.path} is in use by another training (pid {self._holder()}); "
                              "wait for it to end, or stop it, or choose another --out (nothing was "
                              "changed)")

    def _probe_lock(self):
        """Refuse if another process holds the lock; creates nothing."""
        if fcntl is None:
            return
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise self._in_use() from None
            raise
        finally:
            os.close(fd)

    def lock(self):
        """Take the exclusive lock (creating the lock file), or refuse at once naming the holder."""
        if self._lock_fd is not None:
            return self
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise self._in_use() from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            os.close(fd)
            raise
        self._lock_fd = fd
        for name in os.listdir(self.path):  # temporary files of a writer that died mid-write
            if _is_trainer_temp(name):
                (self.path / name).unlink(missing_ok=True)
        return self

    def release(self):
        """Drop the lock (the kernel does it too when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    # -- creating and opening --------------------------------------------------------------
    def _is_dead_run(self, names):
        """True for a folder this code made for a run that died before its first checkpoint."""
        if LOCK_NAME not in names or CHECKPOINT_NAME in names:
            return False
        if not all(n in _DEAD_RUN_FILES or _is_trainer_temp(n) for n in names):
            return False
        if METRICS_NAME in names:
            try:
                if self.read_metrics_csv():
                    return False
            except (RunFileError, OSError):
                return False
        return True

    def check_free(self):
        """Refuse (``RunFolderError``) unless a new run may take this folder; writes nothing."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out {self.path} is a file, not a folder; choose another --out "
                                 "(nothing was changed)")
        if not self.path.exists():
            return
        names = set(os.listdir(self.path)) - self.companions
        if not names:
            return
        if self._lock_fd is None:
            self._probe_lock()
        if CHECKPOINT_NAME in names or (CONFIG_NAME in names and LOCK_NAME in names
                                        and not self._is_dead_run(names)):
            raise RunFolderError(f"{self.path} already holds a run; continue it with --resume "
                                 f"{self.path}, or choose another --out (nothing was changed)")
        if self._is_dead_run(names):
            return
        raise RunFolderError(f"--out {self.path} is not empty (it holds {_listing(names)}); a new run "
                             "needs a new or empty folder: choose another --out (nothing was changed)")

    @classmethod
    def create(cls, path, config: dict, companions=()) -> "RunFolder":
        """Make the folder of a new run, lock it and write ``config.json`` (once, for good)."""
        folder = cls(path, companions)
        folder.check_free()
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.lock()
        try:
            folder.check_free()  # again under the lock: a run started meanwhile is refused
            for name in (CONFIG_NAME, METRICS_NAME, SESSIONS_NAME):  # a dead run's, being reused
                (folder.path / name).unlink(missing_ok=True)
            write_atomically(folder.path / CONFIG_NAME, dumps_strict(config, indent=2) + "\n")
            folder.write_metrics([])
        except BaseException:
            folder.release()
            raise
        return folder

    @classmethod
    def create_new(cls, path, config: dict, companions=(), attempts=1000) -> "RunFolder":
        """``create`` in a folder no other run has taken: ``path`` itself, else ``path-2``,
        ``path-3``, ... Each candidate is claimed with an atomic mkdir, so runs started at the
        same moment with the same name each get their own folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for i in range(1, attempts + 1):
            candidate = path if i == 1 else path.with_name(f"{path.name}-{i}")
            try:
                os.mkdir(candidate)
            except FileExistsError:
                continue
            return cls.create(candidate, config, companions)
        raise RunFolderError(f"{path} and {attempts - 1} numbered variants are all taken; choose --out")

    @classmethod
    def open_for_training(cls, path) -> "RunFolder":
        """Lock an existing run for a resume; refuse a folder that holds no run."""
        folder = cls(path)
        if not folder.path.is_dir():
            raise RunFolderError(f"--resume {folder.path}: no such run folder")
        names = set(os.listdir(folder.path))
        if CHECKPOINT_NAME not in names and not (CONFIG_NAME in names and LOCK_NAME in names):
            raise RunFolderError(f"--resume {folder.path}: no run there (no {CHECKPOINT_NAME}, no "
                                 f"{CONFIG_NAME}); start one with --out {folder.path}")
        folder.lock()
        try:
            check_writable(folder.path / CHECKPOINT_NAME)  # refuse now, not after an epoch of training
        except OSError:
            folder.release()
            raise
        return folder

    # -- the files -------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT_NAME).is_file()

    def read_config(self) -> dict:
        """``config.json`` as written at creation, checked against the config schema."""
        path = self.path / CONFIG_NAME
        return parse_config_json(_read_small(path), path)

    def read_metrics_csv(self) -> list:
        """``metrics.csv``'s rows, checked (a missing file: no rows)."""
        path = self.path / METRICS_NAME
        if not path.is_file():
            return []
        return parse_metrics_csv(_read_small(path), path)

    def write_metrics(self, rows):
        write_atomically(self.path / METRICS_NAME, format_metrics_csv(rows))

    def repair_metrics(self, rows):
        """Rewrite ``metrics.csv`` from ``rows`` (the checkpoint's) unless it already says exactly
        that: after a crash between the checkpoint's rename and metrics.csv's, it lags a row."""
        path = self.path / METRICS_NAME
        try:
            same = path.read_bytes() == format_metrics_csv(rows).encode()
        except OSError:
            same = False
        if not same:
            self.write_metrics(rows)

    def read_sessions(self) -> list:
        path = self.path / SESSIONS_NAME
        if not path.is_file():
            return []
        value = loads_strict(_read_small(path), path)
        if not isinstance(value, dict) or not isinstance(value.get("sessions"), list):
            raise RunFileError(f"{path}: not an object with a list of sessions; move it away "
                               "(it is a record only) and resume again")
        return value["sessions"]

    def add_session(self, record: dict):
        """Append one training session's record to ``sessions.json``."""
        sessions = self.read_sessions() + [record]
        write_atomically(self.path / SESSIONS_NAME, dumps_strict(dict(sessions=sessions), indent=2) + "\n")

    def read_state(self, vae=None):
        """``(meta, arrays, rows)`` of the checkpoint (checked against ``vae``) and its metrics
        rows; a format-1 checkpoint takes its rows from metrics.csv."""
        path = self.path / CHECKPOINT_NAME
        meta, arrays = read_checkpoint(path, vae)
        return meta, arrays, self._rows_of(meta, path)

    def _rows_of(self, meta, path):
        if meta["metrics"] is not None:
            return meta["metrics"]
        epochs = meta["position"]["epoch"]
        rows = self.read_metrics_csv()[:epochs]
        if len(rows) != epochs:
            raise CheckpointError(
                f"{path}: a format-1 checkpoint at epoch {epochs}, but {self.path / METRICS_NAME} "
                f"holds {len(rows)} rows (an older scratchvae lost some); start a new run")
        return rows

    def rows(self) -> list:
        """The metrics rows of the checkpoint (none before the first checkpoint)."""
        if not self.has_checkpoint():
            return []
        meta = read_meta(self.path / CHECKPOINT_NAME)
        return self._rows_of(meta, self.path / CHECKPOINT_NAME)

    def save(self, vae, optimizer, position, config, rows):
        """Write the checkpoint (the truth), then ``metrics.csv`` from the same rows."""
        if self._lock_fd is None:
            raise RuntimeError("RunFolder.save without the lock")
        check_metrics_rows(rows, "the rows to save", epochs=position["epoch"])  # a bug, if not
        save_checkpoint(self.path / CHECKPOINT_NAME, vae, optimizer, position, config, rows)
        self.write_metrics(rows)


def read_metrics(path) -> list:
    """The per-epoch rows of a run (dicts of text by column), given its folder or its
    ``metrics.csv``: from the checkpoint when there is one (the truth), else from metrics.csv
    itself (a folder without a checkpoint, e.g. copied back from another machine); both checked."""
    path = Path(path)
    folder = RunFolder(path.parent if path.name == METRICS_NAME else path)
    return folder.rows() if folder.has_checkpoint() else folder.read_metrics_csv()


def session_record(kind, position, epochs, versions, backend):
    """One entry of ``sessions.json``."""
    return dict(kind=kind, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), pid=os.getpid(),
                from_epoch=position["epoch"], from_step=position["step"], epochs=epochs,
                backend=backend, versions=versions)


def _read_small(path, limit=64 * 2**20):
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise RunFileError(f"{path}: more than {limit:,} bytes, not a file scratchvae wrote")
    return data
