"""The estimators a trained VAE is scored with: the negative ELBO and the importance-weighted
estimate of the negative log-likelihood (``python -m scratchvae.evaluate RUN`` reports both),
bits per dimension, and the fixed test-set preprocessing they read.

Two numbers, both in nats per image (lower is better):

* the **negative ELBO**, E_q[-log p(x|z)] + KL(q(z|x) || p(z)): what training minimizes
  (with beta = 1), an *upper* bound on -log p(x);
* the **IWAE NLL** = -log p(x) (positive, like the negative ELBO), estimated with K
  importance samples from q(z|x) (Burda et al., 2016):

      log p(x) ~ log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),   z_k = mu + sigma * eps_k

  Its expectation is a lower bound on log p(x) that tightens as K grows (K = 1 is the
  ELBO), so, on average, the NLL it reports lies between the true NLL and the negative ELBO.
  K = 5000 is the usual setting for MNIST likelihoods.

Both read the model in evaluation mode (``training=False``: no dropout, batch norm's
running statistics). Sums stay on the model's backend and reach the host once at the end.
"""
from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .backend import Generator, get_array_module, to_device, to_host
from .data import prepare_batch
from .functional.latent import bound_logvar, gaussian_log_density

TEST_BINARIZATION_TAG = 7_000_001  # seeds the fixed binarization of the test set with (seed, tag)
NOISE_BLOCK = 64  # importance samples per noise block (see _BlockNoise)
IWAE_CODES_PER_CALL = 1024  # default latent codes per decoder call (chunk * batch): arrays that stay in cache


def as_model_input(vae, images):
    """Images (host or device, any float) -> the model's backend and dtype, shaped (N, C, H, W)."""
    if np.dtype(images.dtype) == np.uint8:
        raise ValueError("expected preprocessed float images, got uint8; convert them with "
                         "scratchvae.estimators.preprocess_test_images(images, mode, seed)")
    x = to_device(images, vae.backend, dtype=vae.dtype)
    return x.reshape((x.shape[0],) + vae.image_shape)


def negative_elbo(vae, images, batch_size=500, seed=0, progress=None) -> dict:
    """Mean negative ELBO and its parts over ``images``, in nats per image.

    Parameters
    ----------
    vae : a ``scratchvae.models.VAE``
    images : (N, C, H, W) or (N, C*H*W) preprocessed images (what the model reads), on the
        host or the model's backend
    batch_size : images per forward pass
    seed : ``vae.rng`` is reseeded with it once, then draws each batch's noise in turn
    progress : optional callable, given the number of images of each batch once it is done

    Returns
    -------
    dict with ``loss`` (recon + beta * KL, the training objective; with free bits, whose
    floor is a training device, the true KL is used here too), ``recon``
    (E_q[-log p(x|z)], one sample per image), ``kl`` (the model's KL estimator) and
    ``negative_elbo`` (recon + KL, which equals ``loss`` when beta = 1); Python floats.
    """
    x = as_model_input(vae, images)
    n = x.shape[0]
    if n == 0:
        raise ValueError("negative_elbo: no images")
    xp = vae.rng.xp
    vae.rng.reseed(seed)
    totals = xp.zeros(3, dtype=np.float64)
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size]
        terms = vae.forward(xb, training=False)
        loss = terms.recon + vae.beta * terms.kl  # terms.loss, unless free bits floor the KL
        totals += xp.stack([loss, terms.recon, terms.kl]).astype(np.float64) * xb.shape[0]
        if progress is not None:
            progress(xb.shape[0])
    loss, recon, kl = (float(v) for v in to_host(totals / n))
    return dict(loss=loss, recon=recon, kl=kl, negative_elbo=recon + kl)


class _BlockNoise:
    """Standard normal noise eps[k, i, :] for importance sample k of image i of one batch.

    Samples come in blocks of ``NOISE_BLOCK``; block b is drawn after
    ``rng.reseed(seed, batch_start, b)``. So the noise is a function of (seed, batch start,
    sample index) alone: how K is cut into decoder calls (``chunk``) cannot change it, on
    either backend (a CuPy generator's stream depends on the sizes of its draws).
    """

    def __init__(self, rng, seed, batch_start, shape, dtype):
        self.rng, self.key, self.shape, self.dtype = rng, (seed, batch_start), tuple(shape), dtype
        self.block_index, self.block, self.pos = -1, None, NOISE_BLOCK

    def take(self, count):
        parts = []
        while count > 0:
            if self.pos == NOISE_BLOCK:
                self.block_index += 1
                self.rng.reseed(*self.key, self.block_index)
                self.block = self.rng.normal((NOISE_BLOCK,) + self.shape, dtype=self.dtype)
                self.pos = 0
            m = min(count, NOISE_BLOCK - self.pos)
            parts.append(self.block[self.pos : self.pos + m])
            self.pos += m
            count -= m
        xp = get_array_module(parts[0])
        return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)


def importance_weighted_log_likelihood(vae, images, k=5000, batch_size=100, chunk=None, seed=0,
                                       eps=None, progress=None, workers=None):
    """IWAE estimate of log p(x) for each image, in nats: a float64 host array of shape (N,).

    log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, with
    z_k = mu + exp(bound(logvar) / 2) * eps_k, exactly the sampler of training
    (``bound_logvar`` is applied before q's density too, so q is the distribution z comes
    from). The NLL to report is ``-result.mean()``.

    Memory stays bounded: each decoder call sees ``chunk * batch_size`` latent codes and a
    running logsumexp (max and scaled sum per image, float64) folds each chunk in. The
    encoder runs once per batch; log p(x|z) comes from ``likelihood.nll_value`` (no cache).
    On NumPy the batches are shared among ``workers`` threads, each with a one-thread BLAS
    (NumPy's elementwise work is single-threaded; docs/performance.md). Every batch is
    computed alone, by the same operations, so the result does not depend on ``workers``.

    Parameters
    ----------
    vae : a ``scratchvae.models.VAE``
    images : (N, C, H, W) or (N, C*H*W) preprocessed images, host or device
    k : importance samples per image (ignored when ``eps`` is given)
    batch_size : images per pass
    chunk : samples per image per decoder call; default ``IWAE_CODES_PER_CALL // batch_size``
    seed : fixes the noise (see ``_BlockNoise``); the result is the same for every ``chunk``
    eps : optional (K, N, latent_dim) standard normal noise to use instead of drawing it
    progress : optional callable, given the number of importance samples (codes decoded,
        images x samples) after each decoder call; N * K in all
    workers : threads on NumPy; default: as many as BLAS has (``threadpoolctl``), so
        ``OPENBLAS_NUM_THREADS=1`` runs one. CuPy always runs one.
    """
    x = as_model_input(vae, images)
    n, d = x.shape[0], vae.latent_dim
    if eps is not None:
        if eps.ndim != 3 or eps.shape[1:] != (n, d):
            raise ValueError(f"eps must have shape (K, {n}, {d}), got {tuple(eps.shape)}")
        k = eps.shape[0]
    k, batch_size = int(k), int(batch_size)
    if k < 1 or batch_size < 1:
        raise ValueError(f"k and batch_size must be at least 1, got k={k}, batch_size={batch_size}")
    chunk = max(1, IWAE_CODES_PER_CALL // batch_size) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    chunk = min(chunk, k)
    starts = range(0, n, batch_size)
    if progress is not None:
        progress = _serialized(progress)

    def batch(start):
        e = None if eps is None else eps[:, start : start + batch_size]
        return _log_px_batch(vae, x[start : start + batch_size], start, k, chunk, seed, e, progress)

    with _batch_threads(vae, workers, len(starts)) as run:
        results = list(run(batch, starts))
    xp = vae.rng.xp
    return to_host(xp.concatenate(results)).astype(np.float64)


def _log_px_batch(vae, xb, start, k, chunk, seed, eps, progress):
    """The estimate for one batch of images (rows ``start`` on of the whole): (b,) float64."""
    xp, f64 = vae.rng.xp, np.float64
    b, d = xb.shape[0], vae.latent_dim
    zero = xp.zeros((), dtype=f64)
    mu, logvar = vae.encode(xb)
    lv, _ = bound_logvar(logvar)
    sigma = xp.exp(0.5 * lv)
    mu64, lv64 = mu.astype(f64), lv.astype(f64)
    # x repeated for the largest chunk, sample-major: rows [j*b, (j+1)*b) are sample j
    x_rep = xp.broadcast_to(xb[None], (chunk,) + xb.shape).reshape((chunk * b,) + xb.shape[1:])
    # its own generator: the draws are a function of (seed, start, block) alone (_BlockNoise)
    noise = None if eps is not None else _BlockNoise(Generator(0, vae.backend), seed, start, (b, d), vae.dtype)
    run_max = run_sum = None
    for c0 in range(0, k, chunk):
        c = min(chunk, k - c0)
        e = noise.take(c) if eps is None else to_device(eps[c0 : c0 + c], vae.backend, dtype=vae.dtype)
        z = mu[None] + sigma[None] * e  # (c, b, d)
        out = vae.decoder.forward(z.reshape(c * b, d), training=False)
        log_px_z = -vae.likelihood.nll_value(out, x_rep[: c * b]).astype(f64).reshape(c, b)
        z64 = z.astype(f64)
        log_pz = gaussian_log_density(z64, zero, zero).sum(axis=2)
        log_qz = gaussian_log_density(z64, mu64[None], lv64[None]).sum(axis=2)
        log_w = log_px_z + log_pz - log_qz  # (c, b)
        chunk_max = log_w.max(axis=0)
        if run_max is None:
            run_max = chunk_max
            run_sum = xp.exp(log_w - run_max).sum(axis=0)
        else:
            new_max = xp.maximum(run_max, chunk_max)
            run_sum = run_sum * xp.exp(run_max - new_max) + xp.exp(log_w - new_max).sum(axis=0)
            run_max = new_max
        if progress is not None:
            progress(c * b)
    return run_max + xp.log(run_sum) - math.log(k)


def _serialized(fn):
    """``fn`` behind a lock: the progress callback may be called from several threads."""
    lock = threading.Lock()

    def call(*args):
        with lock:
            return fn(*args)
    return call


@contextlib.contextmanager
def _batch_threads(vae, workers, batches):
    """A ``map`` over the batches of the pass: on ``workers`` threads (the builtin ``map``, in
    the calling thread, for one), with BLAS limited to one thread meanwhile on NumPy, so that
    every batch is computed the same way whatever the number of workers. CuPy runs in the
    calling thread."""
    if workers is not None and int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if vae.backend != "numpy":
        yield map
        return
    if workers is None:
        workers = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=1)
    workers = min(int(workers), batches)
    with threadpool_limits(limits=1, user_api="blas"):
        if workers == 1:
            yield map
        else:
            with ThreadPoolExecutor(workers) as pool:
                yield pool.map


# -- the test set and the units ----------------------------------------------------------------

def preprocess_test_images(images_u8, mode, seed, dtype=np.float32):
    """uint8 (N, 28, 28) test images -> float (N, 1, 28, 28) on the host, as training reads them
    (colour (N, 3, H, W) images keep their shape).

    ``unit``: x / 255; ``symmetric``: 2 x / 255 - 1. ``binarize``: one *fixed* binarization
    (pixel = 1 with probability x / 255) drawn by a host generator reseeded with
    (seed, TEST_BINARIZATION_TAG), so every evaluation of a run, on either backend, sees the
    same 0/1 test set.
    """
    rng = Generator(0, "numpy").reseed(int(seed), TEST_BINARIZATION_TAG)
    return prepare_batch(np.asarray(images_u8), mode, rng, dtype)


def bits_per_dim(nats_per_image, vae, preprocess="unit"):
    """Nats per image -> bits per dimension, the unit CIFAR-10 likelihoods are compared in:
    nats / (D ln 2) for D = C*H*W values per image, plus, for a continuous likelihood, the
    log2 of the number of 8-bit levels per unit of data (256 on [0, 1], 128 on [-1, 1]): a
    density p on the data scale gives a 1/256-wide pixel bin about p/256 of probability.
    Binary data (Bernoulli) adds nothing."""
    dims = int(np.prod(vae.image_shape))
    bits = nats_per_image / (dims * math.log(2))
    if vae.likelihood.name == "bernoulli":
        return bits
    return bits + math.log2(256 / (2.0 if preprocess == "symmetric" else 1.0))
