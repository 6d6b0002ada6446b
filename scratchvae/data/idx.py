"""Reading IDX files (the format of MNIST and Fashion-MNIST), gzip-compressed or raw.

Layout: a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values. MNIST uses
type 0x08 (unsigned bytes): images are (count, 28, 28), labels (count,).

Every check raises ``IDXError`` naming the file and what is wrong, so a
truncated download or a swapped file never turns into a silently wrong array.
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

_UBYTE = 0x08


class IDXError(ValueError):
    """An IDX file is missing, truncated, corrupt or not what was expected."""


def decompress(raw: bytes, name="<bytes>") -> bytes:
    """``raw`` itself, or its gunzipped content when it starts with the gzip magic bytes."""
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise IDXError(f"{name}: corrupt or truncated gzip data ({exc})") from exc
    return raw


def read_idx_bytes(path) -> bytes:
    """The decompressed bytes of ``path`` (gzip is detected from the content, not the name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IDXError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return decompress(raw, str(path))


def parse_idx(data: bytes, name="<bytes>", expect_shape=None) -> np.ndarray:
    """Parse IDX bytes of unsigned bytes into an array, checking the header and the size.

    Parameters
    ----------
    data : the whole (decompressed) file
    name : used in error messages
    expect_shape : e.g. ``(None, 28, 28)``; ``None`` entries accept any size
    """
    if len(data) < 4:
        raise IDXError(f"{name}: file has {len(data)} bytes, too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != _UBYTE or ndim == 0:
        raise IDXError(
            f"{name}: bad magic number 0x{data[:4].hex()}; expected 0x0000080N "
            "(an IDX file of unsigned bytes) — is this really an MNIST file?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{name}: truncated header ({len(data)} bytes, need {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if expect_shape is not None:
        if len(expect_shape) != ndim or any(
            e is not None and e != s for e, s in zip(expect_shape, shape)
        ):
            want = ", ".join("any" if e is None else str(e) for e in expect_shape)
            raise IDXError(f"{name}: header says shape {shape}, expected ({want})")
    size = math.prod(shape)  # Python integers: a header of huge dimensions cannot overflow
    if len(data) != header + size:
        raise IDXError(
            f"{name}: header promises {size} values after {header} header bytes "
            f"({header + size} bytes in all) but the file has {len(data)} bytes"
            + (" — truncated download?" if len(data) < header + size else "")
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_idx(path, expect_shape=None) -> np.ndarray:
    """Read and parse one IDX file (gzip or raw)."""
    return parse_idx(read_idx_bytes(path), str(path), expect_shape)
