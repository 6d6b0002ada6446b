"""Latent pieces: the log-variance bound, the reparameterization and both KL estimates.

References are written here with NumPy formulas on the host, never taken from the
code under test. Gradients are checked by central differences in float64.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from scratchvae.backend import to_device, to_host
from scratchvae.functional import latent as F
from scratchvae.functional.latent import LOGVAR_MAX, LOGVAR_MIN, bound_logvar
from scratchvae.gradcheck import check_function

from numerics import strict_floats

# values beyond the bound, on its edges and just inside, on each side
BELOW = np.array([-40.0, -31.0, -30.0, -29.5])
ABOVE = np.array([29.5, 30.0, 31.0, 40.0])
OUTSIDE = np.concatenate([BELOW, ABOVE])


def _host_kl(mu, lv):
    """0.5 * sum_d (exp(lv) + mu^2 - 1 - lv), per row."""
    return 0.5 * (np.exp(lv) + mu**2 - 1.0 - lv).sum(axis=1)


def _latent_inputs(seed, n, d, extremes=BELOW):
    """mu ~ N(0, 1), logvar ~ N(0, 1.5^2) clipped to [-4, 4] with ~40% of its entries
    (at least one, never all) replaced by ``extremes`` (none if None), eps ~ N(0, 1);
    float64 host arrays. A moderate entry keeps each tensor's gradient scale O(1)."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((n, d))
    logvar = np.clip(1.5 * rng.standard_normal((n, d)), -4.0, 4.0)
    if extremes is not None:
        mask = rng.random((n, d)) < 0.4
        first, second = rng.choice(n * d, size=2, replace=False)
        mask.flat[first], mask.flat[second] = True, False
        logvar[mask] = rng.choice(extremes, size=int(mask.sum()))
    eps = rng.standard_normal((n, d))
    return mu, logvar, eps


def _check_logvar_above(forward_of, backward_of, backend, seed, n, d):
    """Second pass for log-variances at and above the upper bound.

    There the values reach exp(15) ~ 3e6 (z) or exp(30) ~ 1e13 (KL), and the float64
    rounding of L = sum(y * dy), about 1e-16 |L| / h, swamps the O(1) gradient of mu
    (checked in the first pass with log-variances below the bound). The logvar gradient
    is of the size of L, so it is checked here at full tolerance, with every entry at or
    above the bound (a moderate entry's O(1) gradient would drown in that rounding too).
    """
    rng = np.random.default_rng(seed + 1)
    mu, eps = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    logvar = rng.choice(ABOVE, size=(n, d))
    logvar.flat[rng.integers(n * d)] = rng.choice([29.5, 30.0])  # where the slope is O(1)
    mu, logvar, eps = (to_device(a, backend) for a in (mu, logvar, eps))
    report = check_function(lambda: forward_of(mu, logvar, eps),
                            lambda dy: {"logvar": backward_of(dy, mu, logvar, eps)["logvar"]},
                            {"logvar": logvar}, seed=seed)
    report.assert_ok(1e-6)


shapes = dict(n=st.integers(1, 4), d=st.integers(2, 4), seed=st.integers(0, 2**16))


# -- the bound ---------------------------------------------------------------------
@pytest.mark.gradcheck
def test_bound_logvar_identity_in_range_and_gradient(backend):
    # identity well inside the range, with slope 1
    v = np.linspace(-20.0, 20.0, 4001)
    b, slope = bound_logvar(to_device(v, backend))
    np.testing.assert_allclose(to_host(b), v, rtol=0, atol=1e-9)
    np.testing.assert_allclose(to_host(slope), 1.0, rtol=0, atol=1e-9)

    # saturation for huge float32 inputs: finite, inside the bounds, at the bound, no warning
    huge = np.array([-1e30, -1e4, 1e4, 1e30], dtype=np.float32)
    with strict_floats(backend):
        b32, s32 = bound_logvar(to_device(huge, backend))
    b32, s32 = to_host(b32), to_host(s32)
    assert b32.dtype == np.float32 and s32.dtype == np.float32
    assert np.all(np.isfinite(b32)) and np.all(np.isfinite(s32))
    assert np.all(b32 >= LOGVAR_MIN) and np.all(b32 <= LOGVAR_MAX)
    np.testing.assert_allclose(b32, [LOGVAR_MIN, LOGVAR_MIN, LOGVAR_MAX, LOGVAR_MAX], rtol=1e-6)
    assert np.all(s32 >= 0) and np.all(s32 < 1e-6)  # flat out there

    # monotone and within the bounds over the whole real line (float64)
    grid = np.linspace(-60.0, 60.0, 2401)
    bg = to_host(bound_logvar(to_device(grid, backend))[0])
    assert np.all(np.diff(bg) >= 0)
    assert np.all(bg >= LOGVAR_MIN) and np.all(bg <= LOGVAR_MAX)

    # the slope output is db/dv: finite differences inside, at the edges and outside
    rng = np.random.default_rng(7)
    values = np.concatenate([OUTSIDE, rng.uniform(-45, 45, 12), [-26.0, -5.0, 0.0, 3.0, 27.0]])
    x = to_device(values, backend)

    def forward():
        return bound_logvar(x)[0]

    def backward(dy):
        return {"v": dy * bound_logvar(x)[1]}

    report = check_function(forward, backward, {"v": x})
    report.assert_ok(1e-6)


# -- reparameterization ----------------------------------------------------------------
def _reparam_fwd(mu, logvar, eps):
    return F.reparameterize_forward(mu, logvar, eps)[0]


def _reparam_bwd(dz, mu, logvar, eps):
    _, cache = F.reparameterize_forward(mu, logvar, eps)
    dmu, dlogvar = F.reparameterize_backward(dz, cache)
    return {"mu": dmu, "logvar": dlogvar}


@pytest.mark.gradcheck
@given(**shapes)
def test_reparameterize_gradients(backend, n, d, seed):
    mu, logvar, eps = (to_device(a, backend) for a in _latent_inputs(seed, n, d))

    report = check_function(lambda: _reparam_fwd(mu, logvar, eps),
                            lambda dz: _reparam_bwd(dz, mu, logvar, eps),
                            {"mu": mu, "logvar": logvar}, seed=seed)

    assert set(report.checks) == {"mu", "logvar"}
    report.assert_ok(1e-6)
    _check_logvar_above(_reparam_fwd, _reparam_bwd, backend, seed, n, d)


def test_reparameterize_value(backend):
    rng = np.random.default_rng(3)
    mu = rng.standard_normal((5, 4))
    logvar = rng.uniform(-20.0, 20.0, (5, 4))
    eps = rng.standard_normal((5, 4))

    z, _ = F.reparameterize_forward(*(to_device(a, backend) for a in (mu, logvar, eps)))

    np.testing.assert_allclose(to_host(z), mu + np.exp(logvar / 2) * eps, rtol=1e-12, atol=1e-12)
    # dtype follows the inputs
    z32, _ = F.reparameterize_forward(*(to_device(a, backend, dtype=np.float32) for a in (mu, logvar, eps)))
    assert to_host(z32).dtype == np.float32
    np.testing.assert_allclose(to_host(z32), mu + np.exp(logvar / 2) * eps, rtol=1e-5, atol=1e-5)


# -- analytic KL -----------------------------------------------------------------------
def _kl_fwd(mu, logvar, eps):
    return F.kl_standard_normal_forward(mu, logvar)[0]


def _kl_bwd(dkl, mu, logvar, eps):
    _, cache = F.kl_standard_normal_forward(mu, logvar)
    dmu, dlogvar = F.kl_standard_normal_backward(dkl, cache)
    return {"mu": dmu, "logvar": dlogvar}


@pytest.mark.gradcheck
@given(**shapes)
def test_kl_analytic_gradients(backend, n, d, seed):
    mu, logvar, eps = (to_device(a, backend) for a in _latent_inputs(seed, n, d))

    report = check_function(lambda: _kl_fwd(mu, logvar, eps),
                            lambda dkl: _kl_bwd(dkl, mu, logvar, eps),
                            {"mu": mu, "logvar": logvar}, seed=seed)

    assert set(report.checks) == {"mu", "logvar"}
    report.assert_ok(1e-6)
    _check_logvar_above(_kl_fwd, _kl_bwd, backend, seed, n, d)


def test_kl_analytic_value(backend):
    rng = np.random.default_rng(4)
    mu = rng.standard_normal((6, 3))
    logvar = rng.uniform(-8.0, 8.0, (6, 3))

    kl, _ = F.kl_standard_normal_forward(to_device(mu, backend), to_device(logvar, backend))
    kl = to_host(kl)

    assert kl.shape == (6,)
    np.testing.assert_allclose(kl, _host_kl(mu, logvar), rtol=1e-12, atol=1e-12)
    assert np.all(kl > 0)

    # zero exactly at the prior, positive as soon as mu or logvar moves away from it
    zeros = to_device(np.zeros((2, 3)), backend)
    kl0 = to_host(F.kl_standard_normal_forward(zeros, zeros)[0])
    np.testing.assert_allclose(kl0, 0.0, rtol=0, atol=1e-15)
    for mu_, lv_ in [(1e-3, 0.0), (0.0, 1e-3), (0.0, -1e-3), (-0.5, 0.2)]:
        m = to_device(np.full((1, 3), mu_), backend)
        lv = to_device(np.full((1, 3), lv_), backend)
        assert to_host(F.kl_standard_normal_forward(m, lv)[0])[0] > 0


# -- KL per dimension and free bits ------------------------------------------------------
def _threshold_between(kl_d, below):
    """A free-bits threshold with ``below`` of the per-dimension KLs ``kl_d`` under it, halfway
    between two neighbours (a factor 2 below the smallest, 1 above the largest), and its
    distance to the nearest KL_d: the objective max(lambda, KL_d) has a kink at KL_d = lambda."""
    s = np.sort(kl_d)
    if below == 0:
        threshold = s[0] / 2
    elif below == len(s):
        threshold = s[-1] + 1.0
    else:
        threshold = (s[below - 1] + s[below]) / 2
    return float(threshold), float(np.abs(kl_d - threshold).min())


def _kl_free_bits_fwd(free_bits):
    return lambda mu, logvar, eps: F.kl_free_bits_forward(mu, logvar, free_bits)[0]


def _kl_free_bits_bwd(free_bits):
    def backward(dkl, mu, logvar, eps):
        _, cache = F.kl_free_bits_forward(mu, logvar, free_bits)
        dmu, dlogvar = F.kl_free_bits_backward(dkl, cache)
        return {"mu": dmu, "logvar": dlogvar}

    return backward


@pytest.mark.gradcheck
@given(**shapes, below=st.integers(0, 4))
def test_kl_free_bits_gradients(backend, n, d, seed, below):
    """Thresholds drawn between the dimensions' KLs, so 0 to d of them are inactive, and at
    least 1e-3 nats from every KL_d: a step of 1e-6 moves a KL_d by at most ~3e-5 here, so
    no difference quotient straddles the kink. logvar is checked in this pass when an active
    dimension holds a moderate entry (an O(1) gradient to scale the errors by; the extreme
    ones below the bound have slopes ~1e-18), and above the bound by the second pass."""
    mu_h, logvar_h, eps_h = _latent_inputs(seed, n, d)
    lv = bound_logvar(logvar_h)[0]  # the bound itself is checked above
    kl_d = 0.5 * (np.exp(lv) + mu_h**2 - 1.0 - lv).mean(axis=0)
    free_bits, gap = _threshold_between(kl_d, min(below, d))
    assume(gap > 1e-3)
    mu, logvar, eps = (to_device(a, backend) for a in (mu_h, logvar_h, eps_h))
    fwd, bwd = _kl_free_bits_fwd(free_bits), _kl_free_bits_bwd(free_bits)

    active = kl_d > free_bits
    checked = {"mu": mu, "logvar": logvar}
    if not np.any(np.abs(logvar_h[:, active]) <= 4.0):
        del checked["logvar"]

    report = check_function(lambda: fwd(mu, logvar, eps),
                            lambda dkl: {k: g for k, g in bwd(dkl, mu, logvar, eps).items() if k in checked},
                            checked, seed=seed)

    assert set(report.checks) == set(checked)
    report.assert_ok(1e-6)
    # an inactive dimension gets exactly zero gradient, an active one the analytic KL's
    dkl = to_device(np.random.default_rng(seed).standard_normal(n), backend)
    fb = bwd(dkl, mu, logvar, eps)
    plain = _kl_bwd(dkl, mu, logvar, eps)
    for name in ("mu", "logvar"):
        got, ref = to_host(fb[name]), to_host(plain[name])
        assert np.all(got[:, ~active] == 0), name
        np.testing.assert_array_equal(got[:, active], ref[:, active], err_msg=name)
    _check_logvar_above(fwd, bwd, backend, seed, n, d)


def test_kl_free_bits_value(backend):
    rng = np.random.default_rng(6)
    mu_h = rng.standard_normal((5, 4)) * np.array([0.05, 0.5, 1.0, 2.0])  # KL_d from ~0 to ~2
    lv_h = rng.uniform(-2.0, 2.0, (5, 4))
    mu, lv = to_device(mu_h, backend), to_device(lv_h, backend)
    kl_nd = 0.5 * (np.exp(lv_h) + mu_h**2 - 1.0 - lv_h)  # host reference, no bound inside [-20, 20]

    per_dim = to_host(F.kl_per_dimension(mu, lv))
    assert per_dim.shape == (5, 4)
    np.testing.assert_allclose(per_dim, kl_nd, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(per_dim.sum(axis=1), to_host(F.kl_standard_normal_forward(mu, lv)[0]),
                               rtol=1e-15, atol=0)

    kl_d = kl_nd.mean(axis=0)
    for free_bits in (0.0, 0.1, float(np.median(kl_d)), 0.7, float(kl_d.max()) + 0.5):
        kl, _ = F.kl_free_bits_forward(mu, lv, free_bits)
        kl = to_host(kl)
        assert kl.shape == (5,)
        # the batch mean is the free-bits objective sum_d max(lambda, KL_d)
        np.testing.assert_allclose(kl.mean(), np.maximum(free_bits, kl_d).sum(), rtol=1e-12)
        # per image: an active dimension's own KL, an inactive one's floor
        active = kl_d > free_bits
        np.testing.assert_allclose(kl, kl_nd[:, active].sum(axis=1) + free_bits * (~active).sum(),
                                   rtol=1e-12)
    # lambda = 0 with every KL_d > 0 is the analytic KL itself, bit for bit
    np.testing.assert_array_equal(to_host(F.kl_free_bits_forward(mu, lv, 0.0)[0]),
                                  to_host(F.kl_standard_normal_forward(mu, lv)[0]))
    # above every KL_d: a constant, and no gradient at all
    assert kl_d.max() < 10.0
    kl, cache = F.kl_free_bits_forward(mu, lv, 10.0)
    np.testing.assert_array_equal(to_host(kl), 40.0)
    for g in F.kl_free_bits_backward(to_device(np.ones(5), backend), cache):
        assert np.all(to_host(g) == 0)
    # the same log-variance bound as the analytic KL, and float32 in gives float32 out
    extreme = to_device(np.full((2, 4), 100.0), backend)
    np.testing.assert_array_equal(to_host(F.kl_free_bits_forward(mu[:2], extreme, 0.5)[0]),
                                  to_host(F.kl_standard_normal_forward(mu[:2], extreme)[0]))
    kl32, _ = F.kl_free_bits_forward(to_device(mu_h, backend, dtype=np.float32),
                                     to_device(lv_h, backend, dtype=np.float32), 0.5)
    assert to_host(kl32).dtype == np.float32
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="free_bits must be >= 0"):
            F.kl_free_bits_forward(mu, lv, bad)


# -- Monte-Carlo KL --------------------------------------------------------------------
@pytest.mark.gradcheck
@given(**shapes)
def test_kl_monte_carlo_gradients(backend, n, d, seed):
    mu_h, logvar_h, eps_h = _latent_inputs(seed, n, d, OUTSIDE)
    # z = mu + min(sigma, 1) * eps: a typical z below the bound (so (z - mu)^2 / var stays
    # O(1)) and an O(1) z above it (so z^2 / 2 does; the estimate is defined at any z)
    sigma = np.exp(np.clip(logvar_h, LOGVAR_MIN, LOGVAR_MAX) / 2)
    z_h = mu_h + np.minimum(sigma, 1.0) * eps_h
    z, mu, logvar = (to_device(a, backend) for a in (z_h, mu_h, logvar_h))

    def forward():
        return F.kl_monte_carlo_forward(z, mu, logvar)[0]

    def backward(dkl):
        _, cache = F.kl_monte_carlo_forward(z, mu, logvar)
        dz, dmu, dlogvar = F.kl_monte_carlo_backward(dkl, cache)
        return {"z": dz, "mu": dmu, "logvar": dlogvar}

    report = check_function(forward, backward, {"z": z, "mu": mu, "logvar": logvar}, seed=seed)
    assert set(report.checks) == {"z", "mu", "logvar"}
    report.assert_ok(1e-6)


def _kl_mc_through_z_fwd(mu, logvar, eps):
    z, _ = F.reparameterize_forward(mu, logvar, eps)
    return F.kl_monte_carlo_forward(z, mu, logvar)[0]


def _kl_mc_through_z_bwd(dkl, mu, logvar, eps):
    z, reparam_cache = F.reparameterize_forward(mu, logvar, eps)
    _, kl_cache = F.kl_monte_carlo_forward(z, mu, logvar)
    dz, dmu, dlogvar = F.kl_monte_carlo_backward(dkl, kl_cache)
    dmu_z, dlogvar_z = F.reparameterize_backward(dz, reparam_cache)
    return {"mu": dmu + dmu_z, "logvar": dlogvar + dlogvar_z}


@pytest.mark.gradcheck
@given(**shapes)
def test_kl_monte_carlo_full_gradient_through_z(backend, n, d, seed):
    """KL_mc(z(mu, logvar), mu, logvar) with z = mu + sigma * eps: the total derivative is
    the direct partials plus the z partial sent back through the reparameterization.

    Log-variances below the bound are left out here: with sigma ~ exp(-15) the forward
    itself computes z - mu = sigma * eps with a relative rounding error ~1e-9, far above
    what central differences need; above the bound the second pass checks logvar.
    """
    mu, logvar, eps = (to_device(a, backend) for a in _latent_inputs(seed, n, d, extremes=None))

    report = check_function(lambda: _kl_mc_through_z_fwd(mu, logvar, eps),
                            lambda dkl: _kl_mc_through_z_bwd(dkl, mu, logvar, eps),
                            {"mu": mu, "logvar": logvar}, seed=seed)

    assert set(report.checks) == {"mu", "logvar"}
    report.assert_ok(1e-6)
    _check_logvar_above(_kl_mc_through_z_fwd, _kl_mc_through_z_bwd, backend, seed, n, d)


def test_kl_monte_carlo_mean_matches_analytic(backend):
    rows_mu = np.array([[1.0, -0.5, 0.0], [-2.0, 0.3, 1.5], [0.2, 0.0, -1.0], [0.0, 0.0, 0.0]])
    rows_lv = np.array([[0.0, -1.0, 0.5], [1.5, -3.0, 0.0], [-0.7, 2.0, 1.0], [0.8, -0.4, 0.1]])
    samples = 200_000
    rng = np.random.default_rng(11)
    for mu_row, lv_row in zip(rows_mu, rows_lv):
        eps = rng.standard_normal((samples, 3))
        mu = np.broadcast_to(mu_row, eps.shape).copy()
        lv = np.broadcast_to(lv_row, eps.shape).copy()
        z = mu + np.exp(lv / 2) * eps  # z ~ q(z|x), drawn here
        est = to_host(F.kl_monte_carlo_forward(*(to_device(a, backend) for a in (z, mu, lv)))[0])
        assert est.shape == (samples,)
        standard_error = est.std(ddof=1) / np.sqrt(samples)
        expected = _host_kl(mu_row[None], lv_row[None])[0]
        assert standard_error > 0
        assert abs(est.mean() - expected) < 5 * standard_error, (mu_row, lv_row, est.mean(), expected)


# -- extreme log-variances in float32 ---------------------------------------------------
def test_extreme_logvar_float32_no_overflow(backend):
    rng = np.random.default_rng(5)
    extremes = np.array([-1e4, -100.0, -40.0, 40.0, 100.0, 1e4], dtype=np.float32)
    n, d = 3, extremes.size
    mu_h = rng.standard_normal((n, d)).astype(np.float32)
    lv_h = np.broadcast_to(extremes, (n, d)).astype(np.float32)
    eps_h = rng.standard_normal((n, d)).astype(np.float32)
    dkl_h = rng.standard_normal(n).astype(np.float32)
    dz_h = rng.standard_normal((n, d)).astype(np.float32)
    mu, lv, eps, dkl, dz = (to_device(a, backend) for a in (mu_h, lv_h, eps_h, dkl_h, dz_h))

    with strict_floats(backend):
        z, rc = F.reparameterize_forward(mu, lv, eps)
        dmu_r, dlv_r = F.reparameterize_backward(dz, rc)
        kl_a, ka = F.kl_standard_normal_forward(mu, lv)
        dmu_a, dlv_a = F.kl_standard_normal_backward(dkl, ka)
        kl_m, km = F.kl_monte_carlo_forward(z, mu, lv)
        dz_m, dmu_m, dlv_m = F.kl_monte_carlo_backward(dkl, km)

    outputs = dict(z=z, dmu_r=dmu_r, dlv_r=dlv_r, kl_a=kl_a, dmu_a=dmu_a, dlv_a=dlv_a,
                   kl_m=kl_m, dz_m=dz_m, dmu_m=dmu_m, dlv_m=dlv_m)
    for name, a in outputs.items():
        a = to_host(a)
        assert a.dtype == np.float32, name
        assert np.all(np.isfinite(a)), name

    # the saturated values are those of logvar clamped to [-30, 30] (float64 reference)
    clamped = np.clip(lv_h.astype(np.float64), LOGVAR_MIN, LOGVAR_MAX)
    mu64, eps64 = mu_h.astype(np.float64), eps_h.astype(np.float64)
    np.testing.assert_allclose(to_host(z), mu64 + np.exp(clamped / 2) * eps64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_host(kl_a), _host_kl(mu64, clamped), rtol=1e-5)
    # and the log-variance gradients vanish out there (the clamp is flat)
    for g in (dlv_r, dlv_a, dlv_m):
        assert np.all(np.abs(to_host(g)) < 1e-3)
