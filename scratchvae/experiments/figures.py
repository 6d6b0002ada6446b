"""The paper's figures for one trained run, as small deterministic PNG files.

Figure 5 (latent scatter) and Figure 8 (generated manifold) are ``scratchvae.plot``'s
``latent_scatter`` and ``latent_manifold``; Figures 6 and 7 use the paper's own layout,
drawn here by ``reconstruction_columns``: odd columns are test images, each even column
the reconstructions of the column before it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import to_device
from ..figures import _display, _figure, _save, _tile, latent_manifold, latent_scatter

MANIFOLD_SIZE = 15  # images per side of the generated manifold (Figure 8)


def reconstruction_columns(vae, images, path, rows=10, pairs=5, title=None):
    """Figures 6 and 7: ``pairs`` column pairs of ``rows`` images; column 2k (1-based: odd) holds
    test images, column 2k+1 their reconstructions decode(mu(x)).

    images : float (N, 1, 28, 28) in [0, 1] on the host, N >= rows * pairs (fewer: fewer pairs)
    """
    pairs = min(pairs, images.shape[0] // rows)
    x = to_device(images[: rows * pairs], vae.backend, dtype=vae.dtype)
    originals = _display(x)
    recon = _display(vae.reconstruct(x))
    # column-major order: sequence k fills column pair k from top to bottom
    cells = np.empty((rows, 2 * pairs) + originals.shape[1:])
    for k in range(pairs):
        cells[:, 2 * k] = originals[k * rows:(k + 1) * rows]
        cells[:, 2 * k + 1] = recon[k * rows:(k + 1) * rows]
    grid = _tile(cells.reshape((-1,) + originals.shape[1:]), rows, 2 * pairs, pad=2)
    fig = _figure((0.62 * 2 * pairs + 0.4, 0.62 * rows + 0.8))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    w = originals.shape[-1] + 2
    ax.set_xticks([c * w + w / 2 - 1 for c in range(2 * pairs)], ["x", "x\u0302"] * pairs)
    ax.set_yticks([])
    ax.set_title(title or "odd columns: test images x; even: reconstructions", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def paper_figures(vae, model, images, labels, folder, log=print):
    """The figures of one run (model name ``model``) into ``folder``; returns the paths,
    named ``fig<N>_<what>_<model>_z<z>.png`` after the paper's figure N.

    z = 2: latent scatter (Figure 5), reconstructions (Figure 6) and generated manifold
    (Figure 8); z = 16: reconstructions (Figure 7); other sizes: none.
    images : float (N, 1, 28, 28) in [0, 1] on the host; labels : (N,) class labels
    """
    folder, z = Path(folder), vae.latent_dim
    stem = f"{model}_z{z}"
    written = []
    if z == 2:
        x = to_device(images, vae.backend, dtype=vae.dtype)
        written.append(latent_scatter(vae, x, labels, folder / f"fig5_latent_scatter_{stem}.png"))
    if z in (2, 16):
        written.append(reconstruction_columns(
            vae, images, folder / f"fig{6 if z == 2 else 7}_reconstructions_{stem}.png",
            title=f"{model}, z = {z}: test images x (odd columns), reconstructions (even)"))
    if z == 2:
        written.append(latent_manifold(vae, folder / f"fig8_manifold_{stem}.png", n=MANIFOLD_SIZE))
    for path in written:
        log(f"wrote {path}")
    return written
