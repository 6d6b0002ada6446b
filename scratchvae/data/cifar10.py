"""CIFAR-10 from the authors' binary version: fixed-length records, no pickle ever read.

``cifar-10-binary.tar.gz`` (170,052,171 bytes, published MD5 c32a1d4ab5d03f1284b67883e8d87530)
holds ``cifar-10-batches-bin/`` with five training files and one test file, each 10,000
records of 3,073 bytes: one label byte (0-9), then the 32x32 red plane, the green plane and
the blue plane, row by row (3,072 bytes). So a file is 30,730,000 bytes and reads as a
(10000, 3073) uint8 array, with no parsing beyond a reshape.

Where the files come from, in order:

1. ``data_dir`` (``--data-dir``) or ``SCRATCHVAE_DATA``: a folder holding the extracted
   ``cifar-10-batches-bin/`` (or the six files themselves), or the archive
   ``cifar-10-binary.tar.gz``, which is verified and extracted into the cache;
2. the cache, ``<cache root>/cifar10/cifar-10-batches-bin/`` (see ``sources.cache_root``);
3. the authors' site (``URL``), downloaded into the cache; these build machines cannot reach
   it, a user's machine does.

An archive is trusted only after its MD5 matches. Only the six expected members are read,
each looked up by its exact name and checked to be a regular file of the expected size; no
path from the archive is ever used to write (each file's name in the cache is ours), and each
is written atomically, so a crash leaves whole files or none. Every file is checked again on
loading: its size and its labels.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from ..atomic import write_atomically
from .idx import IDXError
from .sources import DataNotFoundError, cache_root

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
ARCHIVE_BYTES = 170_052_171
FOLDER = "cifar-10-batches-bin"
SPLIT_MEMBERS = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
MEMBERS = SPLIT_MEMBERS["train"] + SPLIT_MEMBERS["test"]
RECORD_BYTES = 1 + 3 * 32 * 32
RECORDS = 10_000  # per file: 30,730,000 bytes


class CIFARError(IDXError):
    """A CIFAR-10 file or archive is corrupt, truncated, foreign or incomplete; the message
    names it and says what to do. An ``IDXError`` (a ``ValueError``), so every command that
    reports a corrupt MNIST file reports this one the same way."""


def _batches_dir(folder: Path):
    """``folder/cifar-10-batches-bin`` or ``folder`` itself, whichever holds the files."""
    for candidate in (folder / FOLDER, folder):
        if any((candidate / name).is_file() for name in MEMBERS):
            return candidate
    return None


def check_file(path: Path, records: int = RECORDS) -> np.ndarray:
    """One batch file as a (records, 3073) uint8 array, after checking its size and labels."""
    size = path.stat().st_size
    want = records * RECORD_BYTES
    if size != want:
        raise CIFARError(f"{path}: {size:,} bytes, expected {want:,} ({records:,} records of "
                         f"{RECORD_BYTES:,} bytes); the file is truncated or not CIFAR-10's binary "
                         "version: delete it and fetch the archive again")
    rows = np.fromfile(path, dtype=np.uint8).reshape(records, RECORD_BYTES)
    bad = np.flatnonzero(rows[:, 0] > 9)
    if bad.size:
        raise CIFARError(f"{path}: label {rows[bad[0], 0]} in record {bad[0]} is outside 0-9; "
                         "the file is corrupt or not CIFAR-10: delete it and fetch the archive again")
    return rows


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_archive(archive: Path, dest: Path, md5: str = ARCHIVE_MD5, records: int = RECORDS):
    """Verify ``archive`` against ``md5``, then write its six batch files into ``dest``.

    Each member is found by its exact name ``cifar-10-batches-bin/<file>``, must be a regular
    file of ``records * 3073`` bytes, and is written to ``dest/<file>`` atomically. Returns
    ``dest``."""
    got = _md5(archive)
    if got != md5:
        raise CIFARError(f"{archive}: MD5 {got} does not match the published {md5}; the archive "
                         "is corrupt, truncated or not cifar-10-binary.tar.gz: delete it and "
                         f"download it again from {URL}")
    want = records * RECORD_BYTES
    todo = [n for n in MEMBERS if not ((dest / n).is_file() and (dest / n).stat().st_size == want)]
    for name, data in _members(archive, todo, want):
        write_atomically(dest / name, data)  # our name, never the archive's path
    return dest


def _members(archive: Path, names, size: int):
    """Yield ``(name, bytes)`` for each ``cifar-10-batches-bin/<name>`` of ``names``, in one
    streaming pass over the archive; each must be a regular file of ``size`` bytes. Any other
    member is skipped unread. The whole gzip stream is read to its end, so a truncated archive,
    a bad CRC, bytes after the gzip stream and members that do not line up with their headers
    (tar would take the rest for the end of the archive) are each reported as what they are."""
    wanted = {f"{FOLDER}/{name}": name for name in names}
    try:
        with open(archive, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    name = wanted.pop(member.name, None)
                    if name is None:
                        continue
                    if not member.isfile() or member.size != size:
                        raise CIFARError(f"{archive}: {member.name} is not a file of {size:,} bytes "
                                         f"({member.size:,}); download {URL} again")
                    data = tar.extractfile(member).read()
                    if len(data) != size:
                        raise EOFError(f"{member.name} ends after {len(data):,} bytes")
                    yield name, data
            for block in iter(lambda: stream.read(1 << 20), b""):  # after tar's end: zeros only
                if block.count(0) != len(block):
                    raise CIFARError(f"{archive}: data follows the end of the tar archive (a member "
                                     "longer than its header says, or damage); it is not CIFAR-10's "
                                     f"binary version: delete it and download {URL} again")
    except EOFError as exc:
        raise CIFARError(f"{archive}: truncated ({' '.join(str(exc).split())}); delete it and "
                         f"download {URL} again") from None
    except (tarfile.TarError, zlib.error, OSError) as exc:  # gzip.BadGzipFile: a bad CRC, trailing bytes
        raise CIFARError(f"{archive}: not a readable gzip'd tar archive "
                         f"({' '.join(str(exc).split()) or type(exc).__name__}); delete it and "
                         f"download {URL} again") from None
    if wanted:
        raise CIFARError(f"{archive} has no {', '.join(sorted(wanted))}: it is not CIFAR-10's "
                         f"binary version; download {URL}")


def _download(cache: Path, url: str, timeout: float = 60.0) -> Path:
    """Stream ``url`` into a temporary file in ``cache``; the caller verifies and deletes it."""
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{ARCHIVE_NAME}.", suffix=".part", dir=cache)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def locate(data_dir=None, download=True, *, md5=None, records=None, url=None) -> Path:
    """The folder holding the six batch files, trying each source in order (module docstring).
    ``md5``, ``records`` and ``url`` default to the official ``ARCHIVE_MD5``, ``RECORDS``, ``URL``."""
    md5, records, url = md5 or ARCHIVE_MD5, records or RECORDS, url or URL
    explicit = data_dir or os.environ.get("SCRATCHVAE_DATA")
    cache = cache_root() / "cifar10" / FOLDER
    if explicit:
        flag = "--data-dir" if data_dir else "SCRATCHVAE_DATA"
        folder = Path(explicit).expanduser()
        found = _batches_dir(folder)
        if found is not None:
            missing = [n for n in MEMBERS if not (found / n).is_file()]
            if missing:
                raise CIFARError(f"{found} (from {flag}) lacks {', '.join(missing)}; put all six "
                                 f"files of {FOLDER}/ there, or the archive {ARCHIVE_NAME}")
            return found
        if (folder / ARCHIVE_NAME).is_file():
            return extract_archive(folder / ARCHIVE_NAME, cache, md5, records)
        raise DataNotFoundError(f"cifar10 not found in {folder} (from {flag}): it holds neither "
                                f"{FOLDER}/ nor {ARCHIVE_NAME}; put one of them there, or leave "
                                f"{flag} unset to download {URL}")
    if all((cache / n).is_file() for n in MEMBERS):
        return cache
    if not download:
        raise DataNotFoundError(f"cifar10 is not in the cache {cache}; download {URL} and pass "
                                "its folder with --data-dir")
    try:
        part = _download(cache.parent, url)
    except OSError as exc:
        raise DataNotFoundError(f"could not download {url} ({' '.join(str(exc).split())}); "
                                f"download it by hand and pass its folder with --data-dir") from None
    try:
        return extract_archive(part, cache, md5, records)
    finally:
        part.unlink(missing_ok=True)


def load_split(split="train", data_dir=None, download=True, *, md5=None, records=None, url=None):
    """Images (N, 3, 32, 32) uint8 (channels red, green, blue) and labels (N,) uint8 of one
    split: N = 50,000 for "train" (data_batch_1 to 5, in order), 10,000 for "test".

    ``md5``, ``records`` and ``url`` (default: the official ones) exist for tests, which build
    small archives in the official format."""
    records = records or RECORDS
    if split not in SPLIT_MEMBERS:
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'")
    folder = locate(data_dir, download, md5=md5, records=records, url=url)
    rows = np.concatenate([check_file(folder / name, records) for name in SPLIT_MEMBERS[split]])
    return np.ascontiguousarray(rows[:, 1:]).reshape(-1, 3, 32, 32), rows[:, 0].copy()
