"""Build the explorer page of a model: one self-contained HTML file (docs/explorer.md).

The page holds everything it needs: the posterior means of the test images, their labels,
the class names and, where it is small and fast enough, the decoder as a program with its
float32 weights (``decoder_program``), which the page's JavaScript runs at the point under the
pointer. Nothing is fetched: the page declares a Content-Security-Policy that forbids every
request, so it opens offline by double-click.
"""
from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic import write_atomically
from ..backend import to_device, to_host
from ..figures import CLASS_NAMES, manifold_grid
from .decoder_program import UnsupportedDecoder, decoder_program

EXPLORER_NAME = "explorer.html"
MARKER = "<!-- scratchvae latent-space explorer -->"
# What a page may embed. The decoder runs on every pointer move: beyond this many multiply-adds
# it no longer keeps up (about 1e9 a second in a browser's JavaScript), beyond this many bytes
# of weights the file is too big to open quickly. The posterior means: at most this many bytes.
MAX_DECODER_BYTES = 64 * 2**20
MAX_DECODE_MACS = 50_000_000
MAX_CODE_BYTES = 4 * 2**20
ENCODE_BATCH = 500


class ExplorerError(ValueError):
    """The page cannot be written as asked; the message says why and what to do."""


class ExplorerPage(NamedTuple):
    """What ``write_explorer`` wrote: the file, its size in bytes, whether the page decodes
    live (the decoder is embedded) and, when it does not, why."""

    path: Path
    size: int
    live: bool
    note: str


def posterior_means(vae, images, batch=ENCODE_BATCH) -> np.ndarray:
    """mu(x) of every image, float64 (N, latent_dim) on the host.

    ``images``: (N, C, H, W) or (N, C*H*W) preprocessed images (what the model reads), on the
    host or the model's backend; encoded ``batch`` at a time in evaluation mode.
    """
    parts = [to_host(vae.encode(to_device(images[i:i + batch], vae.backend, dtype=vae.dtype))[0])
             for i in range(0, images.shape[0], batch)]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, vae.latent_dim))


def view_extent(mu, grid=None) -> float:
    """Half-width R of the square [-R, R]^2 the page shows, the same for every pair of latent
    dimensions: the 99.5th percentile of |mu| (and the grid's outermost value) plus 5 %,
    rounded up to a multiple of 0.5; at least 2."""
    reach = [2.0]
    if mu.size:
        reach.append(1.05 * float(np.percentile(np.abs(mu), 99.5)))
    if grid is not None and len(grid):
        reach.append(1.05 * float(np.max(np.abs(grid))))
    return math.ceil(max(reach) * 2) / 2


def _base64(array, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def page_decoder(vae, max_bytes=MAX_DECODER_BYTES, max_macs=MAX_DECODE_MACS):
    """``(program, "")`` when the page can run the decoder live, else ``(None, why)``."""
    try:
        program = decoder_program(vae)
    except UnsupportedDecoder as exc:
        return None, str(exc)
    size, macs = program["weights"].nbytes, program["macs"]
    over = [f"more than the {max_bytes / 2**20:.0f} MiB a page may embed"] if size > max_bytes else []
    if macs > max_macs:
        over.append(f"more than the {max_macs / 1e6:.0f} million a page can run at every pointer move")
    if over:
        return None, (f"its decoder has {program['weights'].size:,} parameters ({size / 2**20:.0f} MiB) "
                      f"and takes {macs / 1e6:,.0f} million multiply-adds per image, {' and '.join(over)}")
    return program, ""


def page_data(vae, mu, labels, class_names=None, preprocess="unit", grid=None, title=None,
              max_decoder_bytes=MAX_DECODER_BYTES, max_decode_macs=MAX_DECODE_MACS,
              max_code_bytes=MAX_CODE_BYTES) -> dict:
    """Everything the page reads, JSON-ready.

    ``mu``: (N, latent_dim) posterior means; ``labels``: (N,) integer classes; ``grid``: the
    values of the decoded grid's axis (``scratchvae.figures.manifold_grid(15)``), or None for
    no grid layer. At most ``max_code_bytes`` of codes are embedded (the first images).
    """
    mu = np.asarray(mu, dtype=np.float64)
    labels = np.asarray(to_host(labels)).astype(np.int64).ravel()
    d = vae.latent_dim
    if mu.ndim != 2 or mu.shape[1] != d or labels.shape[0] != mu.shape[0]:
        raise ValueError(f"explorer: expected codes (N, {d}) and labels (N,), got {mu.shape} and {labels.shape}")
    if not np.isfinite(mu).all():
        raise ExplorerError("explorer: the model's posterior means are not finite (NaN or infinite) "
                            "for some images; the model has diverged, there is nothing to show")
    if labels.size and labels.min() < 0:
        raise ValueError("explorer: labels must be class indices >= 0")
    n = min(mu.shape[0], max(1, max_code_bytes // (4 * d)))
    top = int(labels.max()) if labels.size else 0
    names = list(class_names) if class_names is not None else [str(i) for i in range(max(top, 9) + 1)]
    if labels.size and labels.max() >= len(names):
        raise ValueError(f"explorer: label {int(labels.max())} has no class name ({len(names)} given)")
    program, note = page_decoder(vae, max_decoder_bytes, max_decode_macs)
    decoder = None
    if program is not None:
        decoder = dict(ops=program["ops"], weights=_base64(program["weights"], "<f4"),
                       parameters=int(program["weights"].size), macs=program["macs"])
    grid = None if grid is None else [float(g) for g in grid]
    meta = dict(title=title or f"{vae.name}, latent_dim = {d}", model=vae.name, latent_dim=d,
                likelihood=vae.likelihood.name, image_shape=list(vae.image_shape),
                preprocess=preprocess, class_names=[str(c) for c in names],
                extent=view_extent(mu[:n], grid), grid=grid, points=int(n), total=int(mu.shape[0]),
                parameters=vae.num_params(), decoder_note=note)
    return dict(meta=meta, codes=_base64(mu[:n], "<f4"), labels=_base64(labels[:n], "u1"),
                decoder=decoder)


def _resource(name) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def explorer_html(data) -> str:
    """The page: the template with the script and ``data`` (``page_data``) filled in."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = _resource("explorer.html")
    for key, value in (("__TITLE__", html.escape(data["meta"]["title"])), ("__MARKER__", MARKER),
                       ("__SCRIPT__", _resource("explorer.js")), ("__DATA__", payload)):
        page = page.replace(key, value, 1)
    return page


def check_replaceable(path):
    """Refuse (``ExplorerError``) to write over anything but a page this module wrote."""
    path = Path(path)
    if path.is_dir():
        raise ExplorerError(f"{path} is a folder; choose another path for the page (nothing was changed)")
    if path.exists():
        with open(path, "rb") as f:
            head = f.read(512)
        if MARKER.encode() not in head:
            raise ExplorerError(f"{path} exists and is not an explorer page; it was left as it is: "
                                "move it away or choose another path")


def write_explorer(vae, images, labels, path, class_names=None, preprocess="unit", grid=None,
                   title=None, **limits) -> ExplorerPage:
    """Write the explorer page of ``vae`` to ``path`` (atomically) and say what it holds.

    Parameters
    ----------
    vae : a ``scratchvae.models.VAE``
    images : (N, C, H, W) or (N, C*H*W) preprocessed test images (what the model reads)
    labels : (N,) their classes
    path : the HTML file; an existing file there is replaced only if it is an explorer page
    class_names : a name per class (default "0", "1", ...)
    preprocess : the images' preprocessing ("unit", "binarize" or "symmetric"), which says
        how the page maps image values to grey levels ((x + 1) / 2 for "symmetric")
    grid : the values of the decoded grid's axis, e.g. ``scratchvae.figures.manifold_grid(15)``;
        None leaves the grid layer out
    limits : ``max_decoder_bytes``, ``max_decode_macs``, ``max_code_bytes`` of ``page_data``
    """
    path = Path(path)
    check_replaceable(path)
    mu = posterior_means(vae, images)
    data = page_data(vae, mu, labels, class_names, preprocess, grid, title, **limits)
    text = explorer_html(data).encode("utf-8")
    write_atomically(path, text)
    return ExplorerPage(path, len(text), data["decoder"] is not None, data["meta"]["decoder_note"])


GRID_SIZE = 15  # a trained run's grid layer: the 15 x 15 of manifold_15x15.png


def write_dataset_explorer(vae, images, labels, path, name, dataset, preprocess="unit") -> ExplorerPage:
    """``write_explorer`` with what a trained model's page shows: ``dataset``'s class names, the
    15 x 15 grid at Gaussian quantiles and a title naming ``name`` (the run), the model and the
    dataset. Training and ``python -m scratchvae.explore`` both write this page."""
    return write_explorer(vae, images, labels, path, class_names=CLASS_NAMES.get(dataset),
                          preprocess=preprocess, grid=manifold_grid(GRID_SIZE),
                          title=f"{name} ({vae.name}, latent_dim = {vae.latent_dim}, {dataset})")
