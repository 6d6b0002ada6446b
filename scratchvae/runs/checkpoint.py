"""Checkpoints: one ``.npz`` file per run, written atomically and read by a loader that trusts
nothing (no pickle, no ``np.load``: every member is checked before it is read).

Contents: every parameter (``param/<name>``) and buffer (``buffer/<name>``) as host arrays,
the optimizer state (``optim/<slot>.<name>``, ``optim/t``), and ``meta``, a JSON string
holding the format version, the architecture (name, latent size, likelihood and every
parameter shape), the position in training (completed epochs, batches done in the current
epoch, the partial epoch's loss sum), the run's config and (format 2) the per-epoch metrics
rows, so the checkpoint alone says everything ``metrics.csv`` says. Randomness needs no saved
state: training reseeds the generator from (seed, epoch, step) at every step, so the position
*is* the generator state.

Format 1 (before the metrics rows moved in) still loads: its rows come from the run folder's
``metrics.csv`` (``scratchvae.runs.folder``); the next save writes format 2.
"""
from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..atomic import write_npz_atomically
from ..backend import to_device, to_host
from ..models import build_vae
from .config import TrainConfig
from .schema import (RunFileError, check_config, check_metrics_rows, check_position,
                         dumps_strict, loads_strict)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
CHECKPOINT_NAME = "checkpoint.npz"
META_KEY = "meta"
_MAX_NPY_HEADER = 10_000  # bytes of one member's .npy header (numpy's own limit)
_MAX_MEMBERS = 10_000
_MAX_META_CHARS = 8 * 2**20  # the meta JSON: at most 8 Mi characters


class CheckpointError(RunFileError):
    """A checkpoint is unreadable, malformed or belongs to another architecture; the message
    names the file and the fault."""


def architecture_of(vae) -> dict:
    """What must match for a checkpoint to load into ``vae``."""
    return dict(model=vae.name, latent_dim=vae.latent_dim, likelihood=vae.likelihood.name,
                shapes={k: list(v.shape) for k, v in vae.params.items()})


def expected_arrays(vae) -> dict:
    """``{member: (shape, dtype)}``: every array a checkpoint of ``vae`` (trained with Adam) holds."""
    out = {}
    for group, arrays in (("param", vae.params), ("buffer", vae.buffers)):
        for k, v in arrays.items():
            out[f"{group}/{k}"] = (tuple(v.shape), np.dtype(v.dtype))
    for slot in ("m", "v"):
        for k, v in vae.params.items():
            out[f"optim/{slot}.{k}"] = (tuple(v.shape), np.dtype(v.dtype))
    out["optim/t"] = ((), np.dtype(np.int64))
    return out


def model_from_config(config: dict, backend="numpy"):
    """The (freshly initialized) VAE that a run config describes."""
    d = TrainConfig()
    return build_vae(config["model"], config["latent_dim"], config["likelihood"],
                     config.get("beta", d.beta), dtype=config.get("dtype", d.dtype),
                     seed=config.get("seed", d.seed), backend=backend, kl=config.get("kl", d.kl),
                     variance=config.get("variance", d.variance),
                     free_bits=config.get("free_bits", d.free_bits))


def save_checkpoint(path, vae, optimizer, position: dict, config: dict, metrics: list):
    """Write the checkpoint atomically (temporary file, fsync, rename, fsync of the folder)."""
    path = Path(path)
    arrays = {f"param/{k}": to_host(v) for k, v in vae.params.items()}
    arrays.update({f"buffer/{k}": to_host(v) for k, v in vae.buffers.items()})
    for k, v in optimizer.state_dict().items():
        arrays[f"optim/{k}"] = np.asarray(v, dtype=np.int64) if k == "t" else np.asarray(v)
    meta = dict(format=FORMAT_VERSION, architecture=architecture_of(vae), position=position,
                config=config, dtype=vae.dtype.name, metrics=list(metrics))
    arrays[META_KEY] = np.array(dumps_strict(meta))
    write_npz_atomically(path, arrays)


# -- reading ---------------------------------------------------------------------------------

def _fail(path, what):
    raise CheckpointError(f"{path}: not a readable scratchvae checkpoint ({what}); the file is "
                          "damaged or is not a checkpoint (train again, or use a copy)")


class _Archive:
    """The members of a checkpoint's zip archive, listed and size-checked before any is read."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no checkpoint there")
        self.file = open(self.path, "rb")  # an OSError (permissions, I/O) is the caller's
        try:
            self.zip = zipfile.ZipFile(self.file)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, UnicodeError,
                NotImplementedError, OverflowError, IndexError) as exc:
            self.close()
            _fail(self.path, f"not a readable zip archive ({type(exc).__name__}: {str(exc)[:120]})")
        try:
            self.members = self._index(infos)
        except CheckpointError:
            self.close()
            raise

    def _index(self, infos):
        if len(infos) > _MAX_MEMBERS:
            _fail(self.path, f"{len(infos):,} archive members")
        members = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or info.is_dir():
                _fail(self.path, f"unexpected archive member {name[:100]!r}")
            if info.flag_bits & 0x1:
                _fail(self.path, f"archive member {name[:100]!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                _fail(self.path, f"archive member {name[:100]!r} uses compression method {info.compress_type}")
            key = name[: -len(".npy")]
            if key in members:
                _fail(self.path, f"archive member {name[:100]!r} appears twice")
            members[key] = info
        if META_KEY not in members:
            _fail(self.path, "no meta member")
        return members

    def read(self, key, shape, dtype, max_bytes=None):
        """Member ``key`` as an array of exactly ``shape`` and ``dtype`` (``shape`` None: any
        shape, at most ``max_bytes``); the header and the member's size are checked before the
        data is read, and the data is never decompressed beyond that size."""
        info = self.members[key]
        limit = max_bytes if shape is None else math.prod(shape) * dtype.itemsize
        if info.file_size > limit + _MAX_NPY_HEADER + 16:
            _fail(self.path, f"{key} is {info.file_size:,} bytes, more than the {limit:,} it may hold")
        try:
            with self.zip.open(info) as f:
                version = npy_format.read_magic(f)
                if version == (1, 0):
                    got_shape, fortran, got_dtype = npy_format.read_array_header_1_0(f, _MAX_NPY_HEADER)
                elif version == (2, 0):
                    got_shape, fortran, got_dtype = npy_format.read_array_header_2_0(f, _MAX_NPY_HEADER)
                else:
                    _fail(self.path, f"{key}: .npy version {version}")
                if got_dtype.hasobject or got_dtype.fields is not None or got_dtype.subdtype is not None:
                    _fail(self.path, f"{key}: dtype {got_dtype} holds objects or fields")
                if fortran:
                    _fail(self.path, f"{key}: Fortran order")
                if shape is not None and (tuple(got_shape) != tuple(shape) or got_dtype != dtype):
                    raise CheckpointError(
                        f"{self.path}: {key} is {got_dtype.str} {tuple(got_shape)}, the model needs "
                        f"{dtype.str} {tuple(shape)}; the checkpoint does not belong to this model")
                if shape is None and (got_dtype != dtype and got_dtype.kind != dtype.kind):
                    _fail(self.path, f"{key}: dtype {got_dtype.str}, expected kind {dtype.kind!r}")
                nbytes = math.prod(got_shape) * got_dtype.itemsize
                if nbytes > limit or info.file_size != f.tell() + nbytes:
                    _fail(self.path, f"{key}: its header promises {nbytes:,} bytes of data, the member "
                          f"holds {info.file_size - f.tell():,} (limit {limit:,})")
                data = f.read(nbytes)
                if len(data) != nbytes or f.read(1):
                    _fail(self.path, f"{key}: truncated data")
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, SyntaxError, TypeError,
                KeyError, IndexError, OverflowError, UnicodeError, NotImplementedError, MemoryError,
                RecursionError, AttributeError, tokenize.TokenError) as exc:
            # whatever a damaged member makes the zip or .npy header parser raise (the header is
            # a Python literal, parsed by ast and tokenize: an unclosed "[" is a TokenError)
            _fail(self.path, f"{key}: unreadable ({type(exc).__name__}: {str(exc)[:120]})")
        return np.frombuffer(data, dtype=got_dtype).reshape(got_shape).copy()

    def close(self):
        if getattr(self, "zip", None) is not None:
            self.zip.close()
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _check_architecture(arch, path):
    if not isinstance(arch, dict) or set(arch) != {"model", "latent_dim", "likelihood", "shapes"}:
        raise CheckpointError(f"{path}: the architecture record is not an object with model, "
                              "latent_dim, likelihood and shapes")
    shapes = arch["shapes"]
    if not isinstance(shapes, dict) or not all(
            isinstance(s, list) and len(s) <= 8 and all(isinstance(d, int) and not isinstance(d, bool)
                                                        and 0 < d < 2**31 for d in s)
            for s in shapes.values()):
        raise CheckpointError(f"{path}: the architecture's shapes are not lists of positive integers")


def check_meta(meta, path) -> dict:
    """The checkpoint's meta checked against its schema; returns it (format 1: metrics None)."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the meta record is a JSON {type(meta).__name__}, not an object")
    fmt = meta.get("format")
    if fmt not in READABLE_FORMATS or isinstance(fmt, bool):
        raise CheckpointError(f"{path}: checkpoint format {fmt!r}, this scratchvae reads "
                              f"{', '.join(map(str, READABLE_FORMATS))}; use the scratchvae that wrote it")
    keys = {"format", "architecture", "position", "config", "dtype"} | ({"metrics"} if fmt == 2 else set())
    if set(meta) != keys:
        raise CheckpointError(f"{path}: the meta record has keys {sorted(meta)}, expected {sorted(keys)}")
    if meta["dtype"] not in ("float32", "float64"):
        raise CheckpointError(f"{path}: dtype {meta['dtype']!r} is neither float32 nor float64")
    _check_architecture(meta["architecture"], path)
    check_position(meta["position"], path, CheckpointError)
    config = check_config(meta["config"], f"{path} (its config)", CheckpointError)
    arch = meta["architecture"]
    for key in ("model", "latent_dim", "likelihood"):
        if config[key] != arch[key]:
            raise CheckpointError(f"{path}: its config says {key}={config[key]!r}, its architecture "
                                  f"{arch[key]!r}")
    if config.get("dtype", "float32") != meta["dtype"]:
        raise CheckpointError(f"{path}: its config says dtype={config.get('dtype')!r}, its arrays "
                              f"{meta['dtype']!r}")
    if fmt == 2:
        check_metrics_rows(meta["metrics"], path, CheckpointError, epochs=meta["position"]["epoch"])
    else:
        meta["metrics"] = None
    return meta


def _meta_of(archive) -> dict:
    path = archive.path
    text = archive.read(META_KEY, None, np.dtype("<U1"), max_bytes=4 * _MAX_META_CHARS)
    if text.shape != ():
        raise CheckpointError(f"{path}: meta is an array of shape {text.shape}, not one string")
    return check_meta(loads_strict(str(text), f"{path} (its meta)", CheckpointError), path)


def read_meta(path) -> dict:
    """The checked meta record of a checkpoint, reading nothing else from the file."""
    with _Archive(path) as archive:
        return _meta_of(archive)


def _arrays_of(archive, meta, vae) -> dict:
    path = archive.path
    check_compatible(meta, vae, path)
    expected = expected_arrays(vae)
    names = set(archive.members) - {META_KEY}
    if names != set(expected):
        missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
        raise CheckpointError(f"{path}: the archive does not hold this model's arrays "
                              f"(missing {missing[:5]}, unexpected {[e[:80] for e in extra[:5]]})")
    for key, (shape, dtype) in expected.items():  # every size checked before any array is read
        limit = math.prod(shape) * dtype.itemsize + _MAX_NPY_HEADER + 16
        if archive.members[key].file_size > limit:
            raise CheckpointError(f"{path}: {key} is {archive.members[key].file_size:,} bytes, "
                                  f"the model's array needs {limit:,} at most")
    arrays = {}
    for key, (shape, dtype) in expected.items():
        a = archive.read(key, shape, dtype)
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"{path}: {key} holds NaN or infinite values")
        arrays[key] = a
    if arrays["optim/t"] < 0:
        raise CheckpointError(f"{path}: optim/t is {int(arrays['optim/t'])}, a negative step count")
    return arrays


def _model_for(meta, path, backend):
    try:
        return model_from_config(meta["config"], backend=backend)
    except (ValueError, MemoryError) as exc:
        raise CheckpointError(f"{path}: its config does not build a model ({exc})") from None


def read_checkpoint(path, vae=None):
    """``(meta, arrays)`` of a checkpoint, from one open file (a consistent snapshot even while
    a run replaces it), every array checked against ``vae`` (default: the model its config
    describes): exactly the members the model needs, each of exactly its shape and dtype, every
    float finite. Raises ``CheckpointError`` naming the fault."""
    with _Archive(path) as archive:
        meta = _meta_of(archive)
        return meta, _arrays_of(archive, meta, vae if vae is not None else _model_for(meta, path, "numpy"))


def check_compatible(meta, vae, path):
    """Refuse a checkpoint made for another architecture, naming both."""
    saved, here = meta["architecture"], architecture_of(vae)
    if saved != here:
        def describe(a):
            return f"{a['model']} (latent_dim={a['latent_dim']}, likelihood={a['likelihood']})"

        detail = describe(saved) if describe(saved) != describe(here) else "different parameter shapes"
        raise CheckpointError(
            f"{path}: checkpoint is for {detail}, but this run builds {describe(here)}; "
            "resume with the checkpoint's own settings or start a new run with another --out"
        )


def restore(vae, optimizer, meta, arrays, path="checkpoint"):
    """Copy parameters, buffers and optimizer state into ``vae`` and ``optimizer`` in place;
    every array must have exactly the model's shape and dtype (no broadcasting, no casting)."""
    check_compatible(meta, vae, path)
    expected = expected_arrays(vae)
    for key, (shape, dtype) in expected.items():
        a = arrays.get(key)
        if a is None or tuple(a.shape) != shape or np.dtype(a.dtype) != dtype:
            got = "missing" if a is None else f"{np.dtype(a.dtype).str} {tuple(a.shape)}"
            raise CheckpointError(f"{path}: {key} is {got}, the model needs {dtype.str} {shape}")
    backend = vae.backend
    for group, target in (("param", vae.params), ("buffer", vae.buffers)):
        for k, v in target.items():
            v[...] = to_device(arrays[f"{group}/{k}"], backend, dtype=v.dtype)
    if optimizer is not None:
        state = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        optimizer.load_state_dict(state)


def load_model(run_dir, backend="numpy"):
    """The trained model of a run folder and the run's config: ``(vae, config)``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    path = run_dir / CHECKPOINT_NAME
    with _Archive(path) as archive:  # one open file: meta and arrays of the same checkpoint
        meta = _meta_of(archive)
        vae = _model_for(meta, path, backend)
        arrays = _arrays_of(archive, meta, vae)
    restore(vae, None, meta, arrays, path)
    return vae, meta["config"]
