"""Figures of a trained VAE, as PNG files (``python -m scratchvae.plot RUN`` draws a run's):

* ``latent_scatter.png``: the posterior means mu(x) of the test set, coloured by class;
* ``manifold_15x15.png``, ``manifold_30x30.png``: images decoded from a grid of latent
  codes at Gaussian quantiles (the paper's Figure 4 / Keras's manifold plot);
* ``reconstructions.png``: test images above decode(mu(x));
* ``samples.png``: images decoded from z ~ N(0, I);
* ``loss_curves.png``: the per-epoch losses (a run's metrics rows).

This module knows models, images and metrics rows, not run folders: the training loop and the
``plot`` command read a run and hand its pieces here.

Needs matplotlib, the ``plot`` extra: ``pip install -e ".[plot]"``. Figures are drawn
on matplotlib's Agg canvas directly (no pyplot, no global backend switch), so this works
on machines without a display and leaves any interactive session untouched.
"""
from __future__ import annotations

import io
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .atomic import atomic_open, write_all_atomically
from .backend import get_array_module, to_device, to_host
from .estimators import preprocess_test_images

DPI = 100
FIGURES = ("latent_scatter.png", "manifold_15x15.png", "manifold_30x30.png",
           "reconstructions.png", "samples.png", "loss_curves.png")
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"],
}
# The latent scatter and manifolds show two latent dimensions (the others at 0): beyond this
# many, such a slice says almost nothing about the code (resnet18-vae has 256), so they are skipped.
MAX_LATENT_FOR_2D_PLOTS = 32


def _figure(figsize):
    """A matplotlib Figure on an Agg canvas; a clear error if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"scratchvae.plot needs matplotlib ({exc}); install the plot extra: pip install -e \".[plot]\""
        ) from exc
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def check_matplotlib():
    """Raise the ``ImportError`` with the install hint now if matplotlib is missing."""
    _figure((1, 1))


def _save(fig, path):
    """Write ``fig`` as a PNG via a temporary file and a rename (no half-written figures)."""
    path = Path(path)
    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=DPI)
    return path


def _model_input(vae, images, preprocess="unit", seed=0):
    """Images as the model reads them. uint8 (N, 28, 28) images are preprocessed as in
    evaluation (a fixed binarization for ``binarize``); float images are taken as they are."""
    if np.dtype(images.dtype) == np.uint8:
        images = preprocess_test_images(to_host(images), preprocess, seed, vae.dtype)
    x = to_device(images, vae.backend, dtype=vae.dtype)
    return x.reshape((x.shape[0],) + vae.image_shape)


def _display(images, preprocess="unit"):
    """Model-space images -> host (N, H, W) in [0, 1] for imshow; colour (N, 3, H, W) images
    -> (N, H, W, 3), which imshow draws as RGB."""
    a = to_host(images).astype(np.float64)
    if a.ndim == 4 and a.shape[1] == 3:
        a = a.transpose(0, 2, 3, 1)
    else:
        a = a.reshape(a.shape[0], a.shape[-2], a.shape[-1]) if a.ndim == 4 else a.reshape(a.shape[0], 28, 28)
    if preprocess == "symmetric":
        a = (a + 1.0) / 2.0
    return np.clip(a, 0.0, 1.0)


def _tile(images, rows, cols, pad=0):
    """(rows*cols, H, W[, 3]) -> one (rows*H, cols*W[, 3]) image, row-major."""
    n, h, w = images.shape[:3]
    grid = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad) + images.shape[3:])
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = images[i]
    return grid


def _batched(fn, x, batch=1000):
    """``fn`` applied to ``x`` in batches (bounded memory), concatenated."""
    xp = get_array_module(x)
    return xp.concatenate([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)], axis=0)


def latent_scatter_figure(vae, images, labels, preprocess="unit", class_names=None):
    """Scatter of the posterior means mu(x), coloured by label (tab10, with a colour bar).

    For latent_dim > 2 the first two dimensions are shown (the title says so); for
    latent_dim = 1, mu against the label.
    """
    x = _model_input(vae, images, preprocess)
    mu = to_host(_batched(lambda b: vae.encode(b)[0], x)).astype(np.float64)
    labels = np.asarray(to_host(labels)).astype(int)
    names = class_names or [str(i) for i in range(10)]
    fig = _figure((7.5, 6.5))
    ax = fig.add_subplot()
    d = vae.latent_dim
    if d == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(labels))
        ax.scatter(mu[:, 0], labels + jitter, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=3,
                   alpha=0.6)
        ax.set_xlabel("$\\mu_0$")
        ax.set_ylabel("class (jittered)")
        title = "Posterior means of the test set (latent_dim = 1)"
    else:
        ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=3, alpha=0.6)
        ax.set_xlabel("$\\mu_0$")
        ax.set_ylabel("$\\mu_1$")
        title = "Posterior means $\\mu(x)$ of the test set"
        if d > 2:
            title += f"\n(first 2 of {d} latent dimensions)"
    ax.set_title(title)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colours = ScalarMappable(norm=Normalize(-0.5, 9.5), cmap="tab10")  # opaque, unlike the points
    bar = fig.colorbar(colours, ax=ax, ticks=range(10))
    bar.ax.set_yticklabels(names)
    bar.set_label("class")
    fig.tight_layout()
    return fig


def latent_scatter(vae, images, labels, path, preprocess="unit", class_names=None):
    """``latent_scatter_figure``, written as the PNG ``path``."""
    return _save(latent_scatter_figure(vae, images, labels, preprocess, class_names), path)


def manifold_grid(n):
    """The n latent values of each grid axis: standard normal quantiles at linspace(0.05, 0.95, n)."""
    return np.array([NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, n)])


def latent_manifold_figure(vae, n=15, preprocess="unit"):
    """Images decoded on an n x n grid of latent codes at Gaussian quantiles.

    Dimension 0 varies along the columns (left to right) and dimension 1 along the rows
    (bottom to top); every other dimension is 0 (the title says so when latent_dim > 2).
    With latent_dim = 1 the grid is one row over dimension 0.
    """
    xp, d = vae.rng.xp, vae.latent_dim
    g = manifold_grid(n)
    rows = n if d >= 2 else 1
    z = np.zeros((rows * n, d))
    if d >= 2:
        z1, z0 = np.meshgrid(g[::-1], g, indexing="ij")  # row r has z1 = g[n-1-r]: high at the top
        z[:, 0], z[:, 1] = z0.ravel(), z1.ravel()
    else:
        z[:, 0] = g
    decoded = _batched(vae.decode, xp.asarray(z, dtype=vae.dtype))
    grid = _tile(_display(decoded, preprocess), rows, n)
    h = decoded.shape[-2]
    side = max(7.0, 1.3 * n * h / DPI)  # at least one screen pixel per image pixel
    fig = _figure((side + 1.0, side * rows / n + 1.2))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = sorted(set(np.linspace(0, n - 1, min(n, 5)).round().astype(int).tolist()))
    ax.set_xticks([t * h + h / 2 for t in ticks], [f"{round(g[t], 2) + 0.0:.2f}" for t in ticks])
    ax.set_xlabel("$z_0$")
    if d >= 2:
        ax.set_yticks([t * h + h / 2 for t in ticks], [f"{round(g[n - 1 - t], 2) + 0.0:.2f}" for t in ticks])
        ax.set_ylabel("$z_1$")
    else:
        ax.set_yticks([])
    title = f"Decoded latent grid, {rows} x {n}, at N(0, 1) quantiles 0.05-0.95"
    if d > 2:
        title += f"\n(dimensions 0 and 1; the other {d - 2} fixed at 0)"
    elif d == 1:
        title += "\n(latent_dim = 1: one row)"
    ax.set_title(title)
    fig.tight_layout()
    return fig


def latent_manifold(vae, path, n=15, preprocess="unit"):
    """``latent_manifold_figure``, written as the PNG ``path``."""
    return _save(latent_manifold_figure(vae, n, preprocess), path)


def reconstructions_figure(vae, images, n=10, preprocess="unit"):
    """The first ``n`` images (top row) above their reconstructions decode(mu(x)) (bottom row)."""
    x = _model_input(vae, images[:n], preprocess)
    n = x.shape[0]
    both = np.concatenate([_display(x, preprocess), _display(vae.reconstruct(x), preprocess)])
    fig = _figure((max(6.0, 1.0 * n), 2.8))
    ax = fig.add_subplot()
    ax.imshow(_tile(both, 2, n, pad=2), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = x.shape[-2]
    ax.set_xticks([])
    ax.set_yticks([h / 2, h + 2 + h / 2], ["original", "reconstruction"])
    ax.set_title("Test images (top) and their reconstructions decode($\\mu(x)$) (bottom)")
    fig.tight_layout()
    return fig


def reconstructions(vae, images, path, n=10, preprocess="unit"):
    """``reconstructions_figure``, written as the PNG ``path``."""
    return _save(reconstructions_figure(vae, images, n, preprocess), path)


def samples_figure(vae, n=100, preprocess="unit", seed=0):
    """A grid of ``n`` images decoded from z ~ N(0, I) (10 x 10 for n = 100); ``vae.rng``
    is reseeded with ``seed`` first."""
    vae.rng.reseed(seed)
    images = _display(vae.sample(n), preprocess)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig = _figure((7.0, 6.6 * rows / cols + 0.4))
    ax = fig.add_subplot()
    ax.imshow(_tile(images, rows, cols, pad=2), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{n} samples: decode(z), z ~ N(0, I) (image means)")
    fig.tight_layout()
    return fig


def samples(vae, path, n=100, preprocess="unit", seed=0):
    """``samples_figure``, written as the PNG ``path``."""
    return _save(samples_figure(vae, n, preprocess, seed), path)


def metrics_columns(rows):
    """A run's metrics rows (dicts of text by column, ``scratchvae.runs.read_metrics``) -> dict of
    float arrays by column (empty arrays when there are no rows)."""
    keys = rows[0].keys() if rows else ("epoch", "train_loss", "test_loss", "test_recon", "test_kl")
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in keys}


def loss_curves_figure(metrics):
    """The loss curves of ``metrics_columns``'s columns, as a Figure: train and test loss (left),
    the test reconstruction term (middle) and the test KL (right), per epoch, in nats/image.

    Each curve has its own axes (no twin axis whose points could land on another's), a
    marker per epoch up to 30 epochs, and an x range from half an epoch before the first to
    half an epoch after the last, so a one-epoch run shows one visible point per panel.
    """
    epochs = metrics["epoch"]
    fig = _figure((13.0, 4.2))
    loss, recon, kl = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    marker = "o" if len(epochs) <= 30 else None
    loss.plot(epochs, metrics["train_loss"], marker=marker, label="train")
    loss.plot(epochs, metrics["test_loss"], marker=marker, label="test")
    loss.set_title("Loss (recon + beta KL)")
    loss.legend(loc="best")
    recon.plot(epochs, metrics["test_recon"], marker=marker, color="C2")
    recon.set_title("Test reconstruction, $-\\log p(x|z)$")
    kl.plot(epochs, metrics["test_kl"], marker=marker, color="C3")
    kl.set_title("Test KL$(q(z|x)\\,\\|\\,p(z))$")
    for ax in (loss, recon, kl):
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats / image")
        ax.grid(alpha=0.3)
        if len(epochs):
            ax.set_xlim(float(np.min(epochs)) - 0.5, float(np.max(epochs)) + 0.5)
            ax.xaxis.get_major_locator().set_params(integer=True)
    if not len(epochs):
        loss.text(0.5, 0.5, "no epochs recorded yet", ha="center", transform=loss.transAxes)
    fig.tight_layout()
    return fig


def loss_curves(rows, path):
    """``loss_curves_figure`` of a run's metrics rows, written as the PNG ``path``."""
    return _save(loss_curves_figure(metrics_columns(rows)), path)


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def write_figures(out_dir, vae, test_images, test_labels, preprocess="unit", dataset="mnist", seed=0,
                  metrics_rows=None, log=None):
    """Draw every figure and write them into ``out_dir``, all or none (a full disk or a
    file-size limit leaves the previous figures as they were); returns the paths written.

    ``test_images``: the test split as uint8 (N, 28, 28) (preprocessed here as in
    ``scratchvae.estimators``), or already preprocessed float images. ``preprocess``,
    ``dataset`` and ``seed`` are the run's. ``loss_curves.png`` is drawn from ``metrics_rows``
    and skipped when they are None.
    """
    out_dir = Path(out_dir)
    names = CLASS_NAMES.get(dataset)
    x = _model_input(vae, test_images, preprocess, seed)
    figures = {}
    if vae.latent_dim <= MAX_LATENT_FOR_2D_PLOTS:
        figures["latent_scatter.png"] = latent_scatter_figure(vae, x, test_labels, preprocess, names)
        figures["manifold_15x15.png"] = latent_manifold_figure(vae, 15, preprocess)
        figures["manifold_30x30.png"] = latent_manifold_figure(vae, 30, preprocess)
    elif log is not None:
        log(f"latent_scatter.png and manifold_*.png skipped: they show 2 of the {vae.latent_dim} "
            f"latent dimensions (the others at 0), which says almost nothing about a code of more "
            f"than {MAX_LATENT_FOR_2D_PLOTS} dimensions")
    figures["reconstructions.png"] = reconstructions_figure(vae, x, 10, preprocess)
    figures["samples.png"] = samples_figure(vae, 100, preprocess, seed)
    if metrics_rows is not None:
        figures["loss_curves.png"] = loss_curves_figure(metrics_columns(metrics_rows))
    elif log is not None:
        log("loss_curves.png skipped: no metrics rows")
    return write_all_atomically({out_dir / name: _png(fig) for name, fig in figures.items()})
