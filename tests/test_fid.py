"""Classifier-feature FID: the Frechet distance against closed forms written here, its
invariances, the PSD square root against an independent formula, the sample estimate's
convergence, and the image-level function's checks."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.backend import to_device
from scratchvae.classifier import FEATURE_DIM, build_classifier
from scratchvae.fid import classifier_fid, feature_statistics, frechet_distance, sqrtm_psd

dims = st.integers(1, 6)
seeds = st.integers(0, 2**16)


def _random_psd(rng, d, rank=None):
    """B B^T with B (d, rank): symmetric PSD, singular when rank < d; entries O(1)."""
    b = rng.standard_normal((d, d if rank is None else rank))
    return b @ b.T / max(b.shape[1], 1)


def _random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))  # a Haar-distributed rotation (or reflection)


# -- the matrix square root ---------------------------------------------------------------
@given(d=dims, seed=seeds, singular=st.booleans())
def test_sqrtm_psd_squares_back(d, seed, singular):
    rng = np.random.default_rng(seed)
    a = _random_psd(rng, d, rank=max(d - 2, 0) if singular else None)

    s = sqrtm_psd(a)

    np.testing.assert_allclose(s, s.T, atol=1e-12)
    np.testing.assert_allclose(s @ s, a, atol=1e-10 * max(1.0, np.abs(a).max()))
    assert np.linalg.eigvalsh(s).min() > -1e-8  # the PSD root, not another one


@given(seed=seeds)
def test_sqrtm_psd_matches_2x2_closed_form(seed):
    # For 2x2 SPD A (Cayley-Hamilton on S with det S = sqrt(det A), tr S = sqrt(tr A + 2 sqrt(det A))):
    # sqrt(A) = (A + sqrt(det A) I) / sqrt(tr A + 2 sqrt(det A))
    a = _random_psd(np.random.default_rng(seed), 2) + 0.1 * np.eye(2)
    s_det = np.sqrt(np.linalg.det(a))
    expected = (a + s_det * np.eye(2)) / np.sqrt(np.trace(a) + 2 * s_det)

    np.testing.assert_allclose(sqrtm_psd(a), expected, rtol=1e-10, atol=1e-12)


def test_sqrtm_psd_clips_rounding_negatives():
    # a PSD matrix whose smallest eigenvalue comes out of eigh a hair below 0
    v = _random_orthogonal(np.random.default_rng(3), 3)
    a = (v * np.array([-1e-17, 1.0, 4.0])) @ v.T
    s = sqrtm_psd(a)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s @ s, (v * np.array([0.0, 1.0, 4.0])) @ v.T, atol=1e-12)


# -- the Frechet distance -----------------------------------------------------------------
@given(d=dims, seed=seeds, singular=st.booleans())
def test_frechet_identical_statistics_is_zero(d, seed, singular):
    rng = np.random.default_rng(seed)
    mu, cov = rng.standard_normal(d), _random_psd(rng, d, rank=1 if singular else None)

    value = frechet_distance(mu, cov, mu, cov)

    assert 0.0 <= value <= 1e-8 * (1.0 + np.trace(cov))


@given(m1=st.floats(-10, 10), m2=st.floats(-10, 10), s1=st.floats(0, 10), s2=st.floats(0, 10))
def test_frechet_one_dimensional_closed_form(m1, m2, s1, s2):
    # N(m1, s1^2) vs N(m2, s2^2): (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (m1 - m2)^2 + (s1 - s2)^2
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2

    value = frechet_distance(np.array([m1]), np.array([[s1 * s1]]), np.array([m2]), np.array([[s2 * s2]]))

    assert value == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(d=dims, seed=seeds)
def test_frechet_commuting_covariances_closed_form(d, seed):
    # C1 = Q diag(a) Q^T, C2 = Q diag(b) Q^T commute, so the cross term's root is Q diag(sqrt(ab)) Q^T
    # and d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2; Q = I is the diagonal case
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0, 3, d), rng.uniform(0, 3, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    q = _random_orthogonal(rng, d)

    diagonal = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    rotated = frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)

    assert diagonal == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert rotated == pytest.approx(expected, rel=1e-8, abs=1e-8)


@given(d=dims, seed=seeds)
def test_frechet_rotation_invariance_symmetry_nonnegativity(d, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.standard_normal(d), 2 * rng.standard_normal(d)
    cov1, cov2 = _random_psd(rng, d), _random_psd(rng, d, rank=rng.integers(1, d + 1))
    q = _random_orthogonal(rng, d)
    shift = rng.standard_normal(d)

    value = frechet_distance(mu1, cov1, mu2, cov2)
    # cov2 may be singular: its zero eigenvalues come out of float64 as +-eps * ||.||, and the
    # trace term's square root turns an eigenvalue delta into sqrt(delta), so each of the d
    # eigenvalues of cov1^(1/2) cov2 cov1^(1/2) may carry sqrt(eps ||cov1|| ||cov2||) of error,
    # twice in the distance (seed 917, d = 3 moves it by 8e-8 where this bound is 3e-7).
    eps = np.finfo(np.float64).eps
    near_zero = 2 * d * np.sqrt(eps * np.linalg.norm(cov1, 2) * np.linalg.norm(cov2, 2))

    assert value >= 0.0
    assert frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(value, rel=1e-8, abs=near_zero)
    # x -> Q x + c applied to both distributions moves both Gaussians rigidly
    moved = frechet_distance(q @ mu1 + shift, q @ cov1 @ q.T, q @ mu2 + shift, q @ cov2 @ q.T)
    assert moved == pytest.approx(value, rel=1e-8, abs=near_zero)


def test_frechet_shape_errors():
    with pytest.raises(ValueError, match=r"cov2 has shape \(3, 3\), expected \(2, 2\)"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match=r"mu2 has shape \(3,\)"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))


# -- statistics and samples ---------------------------------------------------------------
def test_feature_statistics_unbiased_and_host_float64(backend):
    f = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)

    mu, cov = feature_statistics(to_device(f, backend))

    assert isinstance(mu, np.ndarray) and mu.dtype == np.float64 and cov.dtype == np.float64
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f.astype(np.float64), rowvar=False), rtol=1e-10)
    assert feature_statistics(np.arange(3.0)[:, None])[1].shape == (1, 1)  # D = 1 stays a matrix
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        feature_statistics(np.zeros(5))


def test_frechet_of_gaussian_samples_converges_to_analytic():
    # commuting covariances give the analytic value; sample estimates approach it as N grows
    rng = np.random.default_rng(5)
    d = 4
    q = _random_orthogonal(rng, d)
    a, b = np.array([0.5, 1.0, 2.0, 3.0]), np.array([1.5, 0.2, 2.0, 1.0])
    mu1, mu2 = np.zeros(d), np.array([0.5, -0.5, 0.0, 1.0])
    analytic = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    errors = []
    for n in (300, 3000, 100_000):
        x1 = mu1 + (rng.standard_normal((n, d)) * np.sqrt(a)) @ q.T
        x2 = mu2 + (rng.standard_normal((n, d)) * np.sqrt(b)) @ q.T
        errors.append(abs(frechet_distance(*feature_statistics(x1), *feature_statistics(x2)) - analytic))
    assert errors[-1] < 0.02 * analytic, (errors, analytic)
    assert errors[-1] < errors[0], errors


# -- on images ----------------------------------------------------------------------------
def test_classifier_fid_on_images(backend):
    clf = build_classifier(seed=0, backend=backend)  # untrained: the checks hold for any network
    rng = np.random.default_rng(0)
    a = rng.random((40, 1, 28, 28), dtype=np.float32)
    b = (a * 0.5).astype(np.float32)

    same = classifier_fid(a, to_device(a, backend), clf, batch_size=16)  # host and device inputs
    ab = classifier_fid(to_device(a, backend), b, clf, batch_size=7)
    ba = classifier_fid(b, a, clf)

    assert clf.features(a[:3]).shape == (3, FEATURE_DIM)
    assert same <= 1e-8 * ab
    assert ab > 0 and ba == pytest.approx(ab, rel=1e-4)  # other batch sizes: float32 sums differ
    for bad in (a[:1], a[:, 0]):
        with pytest.raises(ValueError, match=r"at least 2 images of shape \(N, 1, 28, 28\)"):
            classifier_fid(a, bad, clf)
