"""MNIST and Fashion-MNIST as arrays: verified, validated, on the host."""
from __future__ import annotations

import numpy as np

from . import cifar10
from .idx import IDXError, parse_idx, read_idx_bytes
from .sources import DATASETS, SPLIT_FILES, find_file, locate, verify_content

SPLIT_SIZES = {"train": 60000, "test": 10000}


def load_split(split="train", dataset="mnist", data_dir=None, download=True):
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of one official split.

    Each file's decompressed content is checked against the official SHA-256
    and its IDX header against the expected shape, so a corrupt, truncated or
    swapped file raises ``IDXError`` naming it instead of returning a wrong array.
    ``dataset="cifar10"`` gives (N, 3, 32, 32) colour images instead (``data/cifar10.py``).
    """
    if dataset == "cifar10":
        return cifar10.load_split(split, data_dir, download)
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'")
    folder = locate(dataset, data_dir, download)
    n = SPLIT_SIZES[split]
    arrays = []
    for name, shape in zip(SPLIT_FILES[split], ((n, 28, 28), (n,))):
        path = find_file(folder, name)
        data = read_idx_bytes(path)
        arrays.append(parse_idx(data, str(path), shape))
        if DATASETS[dataset]["sha256"]:
            verify_content(dataset, name, data, str(path))
    images, labels = arrays
    if labels.max(initial=0) > 9:
        raise IDXError(f"{folder}: labels outside 0-9 in the {split} split")
    return images, labels


PREPROCESSING = ("unit", "binarize", "symmetric")


def prepare_batch(images, mode, rng, dtype=np.float32):
    """uint8 images (B, 28, 28), on either backend -> float (B, 1, 28, 28) on the same backend;
    colour images (B, 3, H, W) keep their shape.

    ``unit``: x / 255 in [0, 1].  ``binarize``: each pixel 1 with probability x / 255,
    redrawn at every call (dynamic binarization; ``rng`` draws).  ``symmetric``:
    2 x / 255 - 1 in [-1, 1], for Tanh decoders.
    """
    if mode not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {mode!r}: choose one of {', '.join(PREPROCESSING)}")
    x = images.astype(dtype) / 255.0
    if mode == "binarize":
        x = (rng.uniform(x.shape, dtype=dtype) < x).astype(dtype)
    elif mode == "symmetric":
        x = x * 2 - 1
    return x[:, None] if x.ndim == 3 else x
