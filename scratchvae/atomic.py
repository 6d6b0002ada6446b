"""Atomic file writes: write a temporary file beside the target, flush it to disk, rename it
over the target, then flush the folder, so a reader (or a crash, or a power cut) never sees
half a file and an old file is replaced only by a complete new one.

A new file gets the permissions a plain ``open`` would give it (0666 less the umask), not the
0600 of ``tempfile.mkstemp``.

Test hook: with ``SCRATCHVAE_CRASH_AT=NAME:PHASE:N[:SIGNAL]`` in the environment (several
separated by commas), the N-th write (counted from 1) of a file called NAME sends its own
process SIGNAL (default KILL; INT, TERM) at PHASE: ``written`` (the temporary file is
written, not yet flushed), ``synced`` (flushed, not yet renamed) or ``renamed`` (renamed, the
folder not yet flushed). The crash tests use it to stop a run inside a write.
"""
from __future__ import annotations

import os
import signal
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

CRASH_ENV = "SCRATCHVAE_CRASH_AT"
CRASH_PHASES = ("written", "synced", "renamed")
_writes_seen: dict = {}


def _crash_hook(path: Path, phase: str):
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    key = (path.name, phase)
    seen = _writes_seen[key] = _writes_seen.get(key, 0) + 1
    for item in spec.split(","):
        name, want_phase, count, *sig = item.split(":")
        if (name, want_phase) == key and seen == int(count):
            os.kill(os.getpid(), getattr(signal, f"SIG{sig[0]}") if sig else signal.SIGKILL)


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_folder(folder):
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def temporary_name_of(path) -> str:
    """The glob pattern of the temporary files ``atomic_open`` makes for ``path``."""
    return f".{Path(path).name}.*.tmp"


def _temporary_beside(path):
    """``(fd, name)`` of a new temporary file beside ``path``, named as ``temporary_name_of`` says;
    an ``OSError`` (a read-only or full folder) names ``path``, not a random temporary name."""
    try:
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


@contextmanager
def atomic_open(path, mode="wb"):
    """Yield a file object; on a clean exit it replaces ``path`` (temp file, fsync, rename,
    fsync of the folder), on an error it vanishes and ``path`` is unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, mode) as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~current_umask())
            yield f
            f.flush()
            _crash_hook(path, "written")
            os.fsync(f.fileno())
        _crash_hook(path, "synced")
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename in (None, tmp):  # name the file being written, not its temporary twin
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _crash_hook(path, "renamed")
    fsync_folder(path.parent)


def check_writable(path):
    """Raise the ``OSError`` that writing ``path`` atomically would meet (a read-only or full
    folder, no permission): a temporary file is created beside it, as ``atomic_open`` does,
    and removed. ``path`` itself is not touched."""
    fd, tmp = _temporary_beside(Path(path))
    os.close(fd)
    os.unlink(tmp)


def write_all_atomically(files):
    """Write every file of ``{path: bytes}``, or none: each goes to a flushed temporary file
    beside its target, and only once all are written are they renamed into place. So a fault
    while writing (a full disk, a file-size limit) leaves every target as it was, never a mix of
    old and new files; the renames themselves do not fail on a folder that took the writes."""
    staged = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _temporary_beside(path)
            staged.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as f:
                    if hasattr(os, "fchmod"):
                        os.fchmod(f.fileno(), 0o666 & ~current_umask())
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                if exc.filename in (None, tmp):
                    raise OSError(exc.errno, exc.strerror, str(path)) from exc
                raise
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    for folder in {path.parent for _, path in staged}:
        fsync_folder(folder)
    return [path for _, path in staged]


def write_atomically(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically."""
    with atomic_open(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)


def write_npz_atomically(path, arrays):
    """Write ``arrays`` (a dict of host arrays) to ``path`` atomically, as ``np.savez`` would:
    one stored ``NAME.npy`` member per array. The archive is closed however a write ends:
    NumPy before 2.0 leaves it open when a write fails (a full disk), and its finalizer then
    prints a traceback after the one-line error."""
    with atomic_open(path) as f:
        archive = zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
        try:
            for name, value in arrays.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    npy_format.write_array(member, np.asanyarray(value), allow_pickle=False)
        finally:
            archive.close()
