"""Atomic file writes: write a temporary file beside the target, then rename it over
the target, so a reader (or a crash) never sees half a file and an old file is
replaced only by a complete new one."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_open(path, mode="wb"):
    """Yield a file object; on a clean exit it replaces ``path``, on an error it vanishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically."""
    with atomic_open(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
