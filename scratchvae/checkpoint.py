"""Checkpoints: one ``.npz`` file per run, written atomically and read without pickle.

Contents: every parameter (``param/<name>``) and buffer (``buffer/<name>``) as host
arrays, the optimizer state (``optim/<slot>.<name>``, ``optim/t``), and ``meta``, a
JSON string holding the format version, the architecture (name, latent size,
likelihood and every parameter shape), the position in training (completed
epochs, batches done in the current epoch, the partial epoch's loss sum) and
the run's config. Randomness needs no saved state: training reseeds the
generator from (seed, epoch, step) at every step, so the position *is* the
generator state.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .backend import to_device, to_host

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.npz"


class CheckpointError(ValueError):
    """A checkpoint is unreadable or belongs to another architecture."""


def architecture_of(vae) -> dict:
    """What must match for a checkpoint to load into ``vae``."""
    return dict(model=vae.name, latent_dim=vae.latent_dim, likelihood=vae.likelihood.name,
                shapes={k: list(v.shape) for k, v in vae.params.items()})


def save_checkpoint(path, vae, optimizer, position: dict, config: dict):
    """Write the checkpoint atomically (a temporary file in the same folder, renamed over ``path``)."""
    path = Path(path)
    arrays = {f"param/{k}": to_host(v) for k, v in vae.params.items()}
    arrays.update({f"buffer/{k}": to_host(v) for k, v in vae.buffers.items()})
    for k, v in optimizer.state_dict().items():
        arrays[f"optim/{k}"] = np.asarray(v)
    meta = dict(format=FORMAT_VERSION, architecture=architecture_of(vae), position=position,
                config=config, dtype=vae.dtype.name)
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def read_checkpoint(path):
    """``(meta, arrays)`` from a checkpoint file; never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable scratchvae checkpoint ({exc})") from exc
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')}, expected {FORMAT_VERSION}")
    return meta, arrays


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
    """Copy parameters, buffers and optimizer state into ``vae`` and ``optimizer`` in place."""
    check_compatible(meta, vae, path)
    backend = vae.backend
    for group, target in (("param", vae.params), ("buffer", vae.buffers)):
        for k, v in target.items():
            v[...] = to_device(arrays[f"{group}/{k}"], backend, dtype=v.dtype)
    if optimizer is not None:
        state = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        optimizer.load_state_dict(state)


def load_model(run_dir, backend="numpy"):
    """The trained model of a run folder and the run's config: ``(vae, config)``."""
    from .models import build_vae

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    meta, arrays = read_checkpoint(run_dir / CHECKPOINT_NAME)
    cfg = meta["config"]
    vae = build_vae(cfg["model"], cfg["latent_dim"], cfg["likelihood"], cfg["beta"],
                    dtype=meta["dtype"], seed=cfg["seed"], backend=backend, kl=cfg["kl"],
                    variance=cfg["variance"], free_bits=cfg.get("free_bits", 0.0))
    restore(vae, None, meta, arrays, run_dir / CHECKPOINT_NAME)
    return vae, cfg
