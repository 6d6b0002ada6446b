"""An MNIST digit classifier built from scratchvae's own layers, whose penultimate
activations are the features of the classifier-feature FID (``scratchvae.fid``).

Architecture (28 -> 14 -> 7, like the paper-conv encoder; 421,642 parameters):

    Conv 3x3/32/s2 (ReLU), Conv 3x3/64/s2 (ReLU), Flatten, Dense 3136 -> 128 (ReLU)  = body
    Dense 128 -> 10 (class logits)                                                    = head

``features(x)`` is the body's output, the 128 ReLU activations per image. Training
minimizes the mean softmax cross-entropy (``functional.softmax_cross_entropy_*``)
with Adam. ``load_or_train_classifier`` trains it once per dataset and keeps the
weights in the cache (``<cache root>/classifiers/classifier-<dataset>-v1.npz``), so
every FID number of a machine comes from the same network. Docs: docs/fid.md.
"""
from __future__ import annotations

import json
import math
import platform
import time
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import write_npz_atomically
from .backend import Generator, get_xp, resolve_dtype, to_device, to_host
from .data import load_split
from .data.mnist import prepare_batch
from .data.sources import cache_root
from .functional.classification import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .layers import Conv2d, Dense, Flatten, ReLU, Sequential
from .layers.base import Composite
from .optim import Adam

NUM_CLASSES = 10
FEATURE_DIM = 128
IMAGE_SHAPE = (1, 28, 28)
CACHE_VERSION = 1  # the "v1" of the cache file name: bump it when the network or recipe changes
FORMAT = "scratchvae-classifier"
# the recipe of the cached classifier (measured: 98.96% MNIST test accuracy, docs/fid.md);
# with batch 128 and lr 1e-3 three epochs reached only 98.27%
TRAINING = dict(epochs=3, batch_size=32, lr=2e-3, seed=0)


class ClassifierCacheError(ValueError):
    """A cached classifier file is unreadable or does not match this network."""


class Classifier(Composite):
    """A CNN classifier for (N, 1, 28, 28) images in [0, 1]: ``body`` (features) then ``head``.

    ``params`` and ``grads`` gather both parts under dotted names (``"body.0.W"``,
    ``"head.b"``), holding the layers' own arrays, so ``Adam(clf.params, clf.grads)``
    trains it. ``forward``/``backward`` follow the layer contract (docs/layers.md).
    """

    def __init__(self, body, head, rng, dtype):
        self.body, self.head, self.rng, self.dtype = body, head, rng, resolve_dtype(dtype)

    def _children(self):
        return [("body", self.body), ("head", self.head)]

    @property
    def backend(self) -> str:
        return self.rng.backend

    def num_params(self) -> int:
        """Number of trainable scalars (421,642)."""
        return int(sum(p.size for p in self.params.values()))

    def forward(self, x, training=True):
        """Class logits (N, 10) of images ``x`` (N, 1, 28, 28), on the classifier's backend and dtype."""
        _check_images(x, "Classifier.forward")
        return self.head.forward(self.body.forward(x, training=training), training=training)

    def backward(self, dlogits):
        """dL/dx (N, 1, 28, 28) from dL/dlogits (N, 10); overwrites ``grads``."""
        return self.body.backward(self.head.backward(dlogits))

    def features(self, x, batch_size=1000):
        """Penultimate activations (N, 128), evaluation mode, ``batch_size`` images at a time.

        ``x``: (N, 1, 28, 28) float in [0, 1], on either backend; each batch is moved to
        the classifier's backend and dtype. The result lives on the classifier's backend.
        """
        _check_images(x, "Classifier.features")
        if batch_size < 1:
            raise ValueError(f"Classifier.features: batch_size must be >= 1, got {batch_size}")
        xp = get_xp(self.backend)
        parts = [self.body.forward(to_device(x[i : i + batch_size], self.backend, self.dtype), training=False)
                 for i in range(0, x.shape[0], batch_size)]
        return xp.concatenate(parts) if parts else xp.zeros((0, FEATURE_DIM), dtype=self.dtype)

    def predict(self, x, batch_size=1000):
        """Predicted class (N,) int64 on the classifier's backend: argmax of the logits."""
        logits = self.head.forward(self.features(x, batch_size), training=False)
        return logits.argmax(axis=1)

    def accuracy(self, x, labels, batch_size=1000) -> float:
        """Fraction of images whose predicted class equals ``labels`` (N,) (either backend)."""
        labels = to_device(labels, self.backend)
        if tuple(labels.shape) != (x.shape[0],):
            raise ValueError(
                f"Classifier.accuracy: {x.shape[0]} images but labels of shape {tuple(labels.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError("Classifier.accuracy: no images to score")
        return float((self.predict(x, batch_size) == labels).mean())

    def __repr__(self):
        return f"Classifier(\n  body={self.body!r},\n  head={self.head!r}\n)"


def _check_images(x, where):
    shape = getattr(x, "shape", None)
    if shape is None or tuple(shape[1:]) != IMAGE_SHAPE or len(shape) != 4:
        raise ValueError(
            f"{where}: expected images of shape (N, 1, 28, 28), got "
            f"{None if shape is None else tuple(shape)}; add the channel axis with x[:, None]"
        )
    if np.dtype(x.dtype).kind != "f":
        raise ValueError(
            f"{where}: expected float images in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with x.astype(np.float32) / 255"
        )


def build_classifier(seed=0, dtype="float32", backend="numpy") -> Classifier:
    """A freshly initialized classifier (PyTorch's default init, drawn from ``seed``)."""
    dtype = resolve_dtype(dtype)
    rng = Generator(seed, backend)
    kw = dict(dtype=dtype, rng=rng)
    body = Sequential(
        Conv2d(1, 32, 3, stride=2, padding=1, **kw), ReLU(**kw),
        Conv2d(32, 64, 3, stride=2, padding=1, **kw), ReLU(**kw),
        Flatten(**kw), Dense(64 * 7 * 7, FEATURE_DIM, **kw), ReLU(**kw),
    )
    head = Dense(FEATURE_DIM, NUM_CLASSES, **kw)
    return Classifier(body, head, rng, dtype)


def _check_training_data(images_u8, labels):
    shape = getattr(images_u8, "shape", None)
    if shape is None or len(shape) != 3 or tuple(shape[1:]) != (28, 28) or images_u8.dtype != np.uint8:
        raise ValueError(
            "train_classifier: images must be uint8 of shape (N, 28, 28), as load_split returns; got "
            f"{None if shape is None else tuple(shape)} {getattr(images_u8, 'dtype', type(images_u8).__name__)}"
        )
    if getattr(labels, "shape", None) is None or tuple(labels.shape) != (shape[0],):
        raise ValueError(
            f"train_classifier: {shape[0]} images need labels of shape ({shape[0]},), "
            f"got {getattr(labels, 'shape', None)}"
        )
    if shape[0] == 0:
        raise ValueError("train_classifier: no images to train on")


def train_classifier(images_u8, labels, epochs=2, batch_size=128, lr=1e-3, seed=0, backend="numpy",
                     log=print, *, progress=False) -> Classifier:
    """Train a fresh classifier on uint8 images (N, 28, 28) and labels (N,); return it.

    Mean softmax cross-entropy, Adam, float32 on ``backend``. The learning rate falls
    linearly from ``lr`` at the first step towards 0 at the last (a short run ends in a
    better minimum than at a constant rate). Epoch ``e`` visits
    the images in the order ``numpy.random.default_rng([seed, e]).permutation(N)``, so a
    run is a function of its arguments. ``log`` (None for silence) gets one line per
    epoch; ``progress=True`` adds a tqdm bar. The cached classifier uses ``TRAINING``
    (3 epochs, batch 32, lr 2e-3), not these defaults.
    """
    _check_training_data(images_u8, labels)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"train_classifier: need epochs >= 1 and batch_size >= 1, got {epochs}, {batch_size}")
    xp = get_xp(backend)
    clf = build_classifier(seed, "float32", backend)
    opt = Adam(clf.params, clf.grads, lr=lr)
    images = to_device(images_u8, backend)  # uint8 on the device: 4x less to hold than floats
    targets = to_device(labels, backend).astype(np.int64)
    n = images.shape[0]
    steps = math.ceil(n / batch_size)
    total_steps = epochs * steps
    for epoch in range(epochs):
        order = to_device(np.random.default_rng([seed, epoch]).permutation(n), backend)
        loss_sum = xp.zeros((), dtype=np.float64)
        correct = xp.zeros((), dtype=np.int64)
        bar = _progress_bar(epoch, epochs, steps) if progress else None
        t0 = time.perf_counter()
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x = prepare_batch(images[idx], "unit", None, clf.dtype)
            y = targets[idx]
            logits = clf.forward(x, training=True)
            loss, cache = softmax_cross_entropy_forward(logits, y)
            dloss = xp.full(y.shape, 1.0 / y.shape[0], dtype=clf.dtype)  # d(batch mean)/d(loss_n)
            clf.backward(softmax_cross_entropy_backward(dloss, cache))
            opt.lr = lr * (1.0 - (epoch * steps + step) / total_steps)  # linear decay towards 0
            opt.step()
            loss_sum += loss.sum()
            correct += (logits.argmax(axis=1) == y).sum()
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        mean_loss = float(loss_sum) / n
        if not math.isfinite(mean_loss):
            raise RuntimeError(f"train_classifier: the loss became {mean_loss} in epoch {epoch + 1}; "
                               "try a smaller lr")
        if log is not None:
            log(f"classifier epoch {epoch + 1}/{epochs} | train loss {mean_loss:.4f} nats | "
                f"train accuracy {int(correct) / n:.2%} | {seconds:.1f} s | {n / seconds:.0f} img/s")
    return clf


def _progress_bar(epoch, epochs, total):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"classifier epoch {epoch + 1}/{epochs}", unit="batch", leave=False,
                dynamic_ncols=True)


def _versions(backend):
    out = dict(scratchvae=__version__, numpy=np.__version__, python=platform.python_version())
    if backend == "cupy":
        out["cupy"] = get_xp("cupy").__version__
    return out


def cache_path(cache_dir=None, dataset="mnist") -> Path:
    """Where the cached classifier of ``dataset`` lives: ``<cache_dir>/classifier-<dataset>-v1.npz``;
    ``cache_dir`` defaults to ``<scratchvae cache root>/classifiers``."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "classifiers"
    return folder / f"classifier-{dataset}-v{CACHE_VERSION}.npz"


def save_classifier(path, clf, meta: dict):
    """Write the weights (``param/<name>``, host arrays) and ``meta`` (JSON) atomically."""
    arrays = {f"param/{k}": to_host(v) for k, v in clf.params.items()}
    meta = dict(meta, format=FORMAT, version=CACHE_VERSION, dtype=clf.dtype.name,
                shapes={k: list(v.shape) for k, v in clf.params.items()})
    arrays["meta"] = np.array(json.dumps(meta))
    write_npz_atomically(Path(path), arrays)


def load_classifier(path, backend="numpy"):
    """``(classifier, meta)`` from a file written by ``save_classifier``, verified.

    Read with ``allow_pickle=False``; the format, version, every parameter name and
    shape, and finiteness are checked. Anything wrong raises ``ClassifierCacheError``
    naming the file and saying to delete it; the file is left as it is.
    """
    path = Path(path)
    fix = f"delete it (rm '{path}') to train a new classifier, or pass another cache_dir"

    def refuse(why):
        return ClassifierCacheError(f"{path}: {why}; the file is left in place: {fix}")

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise refuse(f"not a readable classifier file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != CACHE_VERSION:
        raise refuse(f"not a {FORMAT} file of version {CACHE_VERSION}")
    if meta.get("dtype") not in ("float32", "float64"):
        raise refuse(f"unknown parameter dtype {meta.get('dtype')!r}")
    clf = build_classifier(0, meta["dtype"], backend)  # every weight is overwritten below
    expected = {f"param/{k}": tuple(v.shape) for k, v in clf.params.items()}
    found = {k: tuple(v.shape) for k, v in arrays.items()}
    if found != expected:
        wrong = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise refuse("parameters do not match this network: "
                     + ", ".join(f"{k} {found.get(k, 'missing')} (expected {expected.get(k, 'none')})"
                                 for k in wrong))
    for k, v in arrays.items():
        if v.dtype.kind != "f" or not np.all(np.isfinite(v)):
            raise refuse(f"{k} holds non-finite or non-float values ({v.dtype})")
    for name, p in clf.params.items():
        p[...] = to_device(arrays[f"param/{name}"], backend, dtype=p.dtype)
    return clf, meta


def load_or_train_classifier(cache_dir=None, dataset="mnist", data_dir=None, backend="numpy", log=print):
    """``(classifier, accuracy)``: the dataset's cached classifier and its accuracy on the test split.

    Loads ``cache_path(cache_dir, dataset)`` if it exists (a corrupt or mismatched
    file raises ``ClassifierCacheError`` and is never overwritten). Otherwise trains
    on the official training split with ``TRAINING``, scores the 10,000 official test
    images, and saves the weights with the accuracy, recipe and versions, atomically.
    """
    path = cache_path(cache_dir, dataset)
    say = log if log is not None else (lambda *_: None)
    if path.exists():
        clf, meta = load_classifier(path, backend)
        accuracy = meta.get("test_accuracy")
        why = (f"holds a classifier for {meta.get('dataset')!r}, not {dataset!r}"
               if meta.get("dataset") != dataset else
               f"its test accuracy {accuracy!r} is not a fraction"
               if not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1 else None)
        if why:
            raise ClassifierCacheError(f"{path}: {why}; the file is left in place: delete it "
                                       f"(rm '{path}') to train a new classifier, or pass another cache_dir")
        say(f"classifier loaded from {path} (test accuracy {meta['test_accuracy']:.2%})")
        return clf, float(meta["test_accuracy"])
    say(f"no cached {dataset} classifier at {path}: training one ({TRAINING['epochs']} epochs)")
    train_u8, train_labels = load_split("train", dataset, data_dir)
    test_u8, test_labels = load_split("test", dataset, data_dir)
    t0 = time.perf_counter()
    clf = train_classifier(train_u8, train_labels, backend=backend, log=log, **TRAINING)
    seconds = time.perf_counter() - t0
    test_x = prepare_batch(to_device(test_u8, backend), "unit", None, clf.dtype)
    accuracy = clf.accuracy(test_x, test_labels)
    meta = dict(dataset=dataset, test_accuracy=accuracy, test_images=int(test_u8.shape[0]),
                train_images=int(train_u8.shape[0]), train_seconds=round(seconds, 1),
                backend=backend, versions=_versions(backend), **TRAINING)
    save_classifier(path, clf, meta)
    say(f"classifier: test accuracy {accuracy:.2%} on {test_u8.shape[0]:,} images after "
        f"{seconds:.0f} s of training; saved to {path}")
    return clf, accuracy


__all__ = ["Classifier", "ClassifierCacheError", "build_classifier", "cache_path", "load_classifier",
           "load_or_train_classifier", "save_classifier", "train_classifier"]
