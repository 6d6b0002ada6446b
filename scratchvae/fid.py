"""Classifier-feature FID: the Frechet distance between two sets of images, measured on
the 128 penultimate activations of scratchvae's own MNIST classifier
(``scratchvae.classifier``), *not* on Inception-v3 features. Docs: docs/fid.md.

Each set of features is summarized by a Gaussian with its mean and covariance, and
the distance between the Gaussians N(mu1, C1) and N(mu2, C2) is

    d^2 = |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2}).

Both matrix square roots are of symmetric positive semi-definite matrices, so they
come from a symmetric eigendecomposition (``numpy.linalg.eigh``), with rounding's tiny
negative eigenvalues clipped to 0: no complex numbers, no scipy. Everything is float64
on the host. The numbers depend on this classifier and are not comparable to the
Inception FID values published for natural images.
"""
from __future__ import annotations

import numpy as np

from .backend import to_host


def sqrtm_psd(a):
    """The symmetric PSD square root S of a symmetric PSD matrix ``a`` (D, D): S @ S = a.

    a = V diag(w) V^T (``eigh``)  =>  S = V diag(sqrt(max(w, 0))) V^T. Only the lower
    triangle is read (as ``eigh`` does), so ``a`` is treated as exactly symmetric.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"sqrtm_psd: expected a square matrix (D, D), got shape {a.shape}")
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def feature_statistics(features):
    """Mean (D,) and unbiased covariance (D, D) of ``features`` (N, D), float64 on the host.

    cov = (f - mu)^T (f - mu) / (N - 1), as ``numpy.cov(f, rowvar=False)`` and the usual
    FID code. Needs N >= 2.
    """
    f = np.asarray(to_host(features), dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"feature_statistics: expected features of shape (N, D), got {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(
            f"feature_statistics: a covariance needs at least 2 samples, got {f.shape[0]}; "
            "pass more images (FID is meant for thousands)"
        )
    mu = f.mean(axis=0)
    centered = f - mu
    return mu, centered.T @ centered / (f.shape[0] - 1)


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2).

    d^2 = |mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1^{1/2} cov2 cov1^{1/2})^{1/2}),
    float64 on the host. The true value is >= 0; rounding below 0 is returned as 0.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(to_host(m), dtype=np.float64)) for m in (mu1, mu2))
    cov1, cov2 = (np.atleast_2d(np.asarray(to_host(c), dtype=np.float64)) for c in (cov1, cov2))
    d = mu1.shape[0]
    for name, shape, want in (("mu1", mu1.shape, (d,)), ("mu2", mu2.shape, (d,)),
                              ("cov1", cov1.shape, (d, d)), ("cov2", cov2.shape, (d, d))):
        if shape != want:
            raise ValueError(f"frechet_distance: {name} has shape {shape}, expected {want} "
                             f"for {d}-dimensional statistics")
    root1 = sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    # symmetric PSD up to rounding; its square root's trace is the sum of sqrt(eigenvalues)
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_root = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root
    return max(float(value), 0.0)


def classifier_fid(images_a, images_b, classifier, batch_size=1000) -> float:
    """Classifier-feature FID between two image sets (N, 1, 28, 28) in [0, 1].

    The images may live on either backend; ``classifier.features`` moves each batch to
    the classifier's backend. Each set needs at least 2 images (and, for a stable
    number, thousands: the estimate is biased upward by roughly D / N).
    """
    stats = []
    for name, images in (("images_a", images_a), ("images_b", images_b)):
        shape = getattr(images, "shape", None)
        if shape is None or len(shape) != 4 or shape[0] < 2:
            raise ValueError(
                f"classifier_fid: {name} must be at least 2 images of shape (N, 1, 28, 28), got "
                f"{None if shape is None else tuple(shape)}"
            )
        stats.append(feature_statistics(classifier.features(images, batch_size)))
    (mu1, cov1), (mu2, cov2) = stats
    return frechet_distance(mu1, cov1, mu2, cov2)


__all__ = ["classifier_fid", "feature_statistics", "frechet_distance", "sqrtm_psd"]
