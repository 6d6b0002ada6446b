"""Evaluation (negative ELBO, IWAE log-likelihood), the figures, and both command lines."""
import json
import math
import struct

import numpy as np
import pytest

from scratchvae.backend import to_device, to_host
from scratchvae.estimators import importance_weighted_log_likelihood, negative_elbo, preprocess_test_images
from scratchvae.evaluate import main as evaluate_main
from scratchvae.functional import latent as F
from scratchvae.models import build_vae
from scratchvae.runs import read_metrics


def tiny_vae(backend="numpy", latent_dim=2, kl="analytic", model="paper-mlp", **kw):
    return build_vae(model, latent_dim=latent_dim, dtype=np.float64, seed=3, backend=backend,
                     kl=kl, **kw)


def binary_images(n, seed=0):
    return (np.random.default_rng(seed).random((n, 1, 28, 28)) < 0.3).astype(np.float64)


def host_logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


# -- negative ELBO ----------------------------------------------------------------------------

def test_negative_elbo_is_the_weighted_mean_of_forward_over_batches(backend):
    vae = tiny_vae(backend)
    x = binary_images(13)
    got = negative_elbo(vae, x, batch_size=5, seed=11)
    vae.rng.reseed(11)  # the same noise, drawn batch after batch
    xd = to_device(x, backend)
    sums = np.zeros(3)
    for start in range(0, 13, 5):
        t = vae.forward(xd[start:start + 5], training=False)
        sums += np.array([float(t.loss), float(t.recon), float(t.kl)]) * len(xd[start:start + 5])
    np.testing.assert_allclose([got["loss"], got["recon"], got["kl"]], sums / 13, rtol=1e-12)
    assert got["negative_elbo"] == pytest.approx(got["recon"] + got["kl"], rel=1e-12)
    assert all(isinstance(v, float) for v in got.values())


def test_negative_elbo_reports_beta_separately(backend):
    vae = tiny_vae(backend, beta=4.0)
    got = negative_elbo(vae, binary_images(6))
    assert got["loss"] == pytest.approx(got["recon"] + 4.0 * got["kl"], rel=1e-12)
    assert got["negative_elbo"] == pytest.approx(got["recon"] + got["kl"], rel=1e-12)


# -- IWAE -----------------------------------------------------------------------------------------

def test_iwae_with_one_sample_is_the_single_sample_elbo(backend):
    """K = 1: log w = log p(x|z) + log p(z) - log q(z|x) at z = mu + sigma eps, i.e. minus
    the single-sample negative ELBO with the Monte-Carlo KL, computed here independently."""
    vae = tiny_vae(backend, kl="mc")
    x = binary_images(9)
    eps = np.random.default_rng(5).standard_normal((1, 9, 2))
    log_px = importance_weighted_log_likelihood(vae, x, eps=eps, batch_size=4)
    assert log_px.shape == (9,) and log_px.dtype == np.float64

    xd, ed = to_device(x, backend), to_device(eps[0], backend)
    mu, logvar = vae.encode(xd)
    z, _ = F.reparameterize_forward(mu, logvar, ed)
    nll = vae.likelihood.nll(vae.decoder.forward(z, training=False), xd)
    kl, _ = F.kl_monte_carlo_forward(z, mu, logvar)
    np.testing.assert_allclose(log_px, to_host(-(nll + kl)), rtol=1e-12, atol=1e-9)
    terms = vae.forward(xd, eps=ed, training=False)  # beta = 1, kl = "mc": the negative ELBO
    assert -log_px.mean() == pytest.approx(float(terms.loss), rel=1e-12)


@pytest.mark.parametrize("given_noise", [False, True])
def test_iwae_does_not_depend_on_the_chunk_size(backend, given_noise):
    vae = tiny_vae(backend, latent_dim=3)
    x = binary_images(7)
    k = 20
    eps = np.random.default_rng(1).standard_normal((k, 7, 3)) if given_noise else None
    results = [importance_weighted_log_likelihood(vae, x, k=k, batch_size=3, chunk=c, seed=4, eps=eps)
               for c in (1, 7, k)]
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-10)
    assert np.all(np.isfinite(results[0]))


def test_iwae_does_not_depend_on_the_number_of_workers():
    """On NumPy the batches are shared among threads, each computing its batch alone with a
    one-thread BLAS: 1, 2 or 3 workers give the same bits, progress counts every sample once
    across the threads, and BLAS's own thread count is restored after the pass."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    vae = tiny_vae(latent_dim=3)
    x = binary_images(10)
    before = blas_threads()
    runs = {}
    for workers in (1, 2, 3):
        calls = []
        runs[workers] = importance_weighted_log_likelihood(vae, x, k=40, batch_size=3, chunk=16, seed=2,
                                                           progress=calls.append, workers=workers)
        assert sum(calls) == 10 * 40 and len(calls) == 4 * 3  # four batches, chunks 16, 16, 8
    np.testing.assert_array_equal(runs[2], runs[1])
    np.testing.assert_array_equal(runs[3], runs[1])
    assert blas_threads() == before
    with pytest.raises(ValueError, match="workers must be at least 1"):
        importance_weighted_log_likelihood(vae, x, k=4, workers=0)


def test_iwae_noise_is_seeded():
    vae = tiny_vae()
    x = binary_images(4)
    a = importance_weighted_log_likelihood(vae, x, k=8, seed=1)
    b = importance_weighted_log_likelihood(vae, x, k=8, seed=1)
    c = importance_weighted_log_likelihood(vae, x, k=8, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_iwae_matches_log_px_by_quadrature_and_beats_the_elbo(backend):
    """With latent_dim = 1, log p(x) = log int p(x|z) N(z; 0, 1) dz and the ELBO
    int q(z|x) log p(x|z) dz - KL are 1-D integrals, computed here on a fine grid. The ELBO
    lies well below log p(x) (the untrained encoder's q is far from the posterior; the
    decoder's first weights are doubled to sharpen the posterior and widen the gap); the
    one-sample estimators (``negative_elbo``, IWAE with K = 1) average to the ELBO, and the
    IWAE estimate with many samples closes the gap. The weights are drawn on NumPy and moved,
    and every tolerance is a count of standard errors, so no assertion hangs on a backend's
    random stream."""
    vae = tiny_vae("numpy", latent_dim=1).to_backend(backend)
    vae.params["decoder.0.W"][...] *= 2
    x = binary_images(4)
    grid = np.linspace(-8, 8, 8001)
    dz = grid[1] - grid[0]
    out = vae.decoder.forward(to_device(grid[:, None], backend), training=False)
    log_lik = np.stack([to_host(-vae.likelihood.nll(out, to_device(np.broadcast_to(xi, (grid.size,) + xi.shape), backend)))
                        for xi in x])
    log_prior = -0.5 * (math.log(2 * math.pi) + grid ** 2)
    exact = host_logsumexp(log_lik + log_prior, axis=1) + math.log(dz)
    mu, logvar = (to_host(a)[:, :1] for a in vae.encode(to_device(x, backend)))
    lv = to_host(F.bound_logvar(to_device(logvar, backend))[0])
    q = np.exp(to_host(F.gaussian_log_density(grid[None], mu, lv))) * dz  # (4, grid) weights
    recon_mean = (q * log_lik).sum(axis=1)
    recon_var = (q * (log_lik - recon_mean[:, None]) ** 2).sum(axis=1)  # of a one-sample draw
    elbo = recon_mean - 0.5 * (np.exp(lv) + mu ** 2 - 1 - lv)[:, 0]
    assert elbo.mean() < exact.mean() - 3.0  # a real gap to close (about 18 nats here)

    reps = 250  # every image 250 times: one-sample means with a small standard error
    xr = np.repeat(x, reps, axis=0)
    stderr = math.sqrt(recon_var.mean() / xr.shape[0])
    one_sample_elbo = -negative_elbo(vae, xr)["negative_elbo"]
    iwae_1 = importance_weighted_log_likelihood(vae, xr, k=1, seed=0)
    iwae_big = importance_weighted_log_likelihood(vae, x, k=2000, seed=0)
    assert abs(one_sample_elbo - elbo.mean()) < 5 * stderr, (one_sample_elbo, elbo.mean(), stderr)
    assert abs(iwae_1.mean() - elbo.mean()) < 5 * stderr, (iwae_1.mean(), elbo.mean(), stderr)
    assert iwae_big.mean() > elbo.mean() + 3.0
    np.testing.assert_allclose(iwae_big, exact, atol=0.2)  # about 0.05 here


def test_iwae_rejects_bad_arguments():
    vae = tiny_vae()
    x = binary_images(2)
    with pytest.raises(ValueError, match="eps must have shape"):
        importance_weighted_log_likelihood(vae, x, eps=np.zeros((3, 5, 2)))
    with pytest.raises(ValueError, match="at least 1"):
        importance_weighted_log_likelihood(vae, x, k=0)
    with pytest.raises(ValueError, match="preprocess_test_images"):
        negative_elbo(vae, np.zeros((2, 28, 28), dtype=np.uint8))


def test_iwae_float32_model_on_unit_images():
    """The default dtype, a Gaussian likelihood: finite, and above the ELBO on average."""
    vae = build_vae("paper-mlp", latent_dim=2, likelihood="gaussian-fixed", seed=0)
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    log_px = importance_weighted_log_likelihood(vae, x, k=64)
    assert log_px.dtype == np.float64 and np.all(np.isfinite(log_px))
    assert log_px.mean() >= -negative_elbo(vae, x)["negative_elbo"] - 1e-3


def test_test_set_preprocessing():
    u8 = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    np.testing.assert_allclose(preprocess_test_images(u8, "unit", 0)[:, 0], u8 / 255.0, rtol=1e-6)
    np.testing.assert_allclose(preprocess_test_images(u8, "symmetric", 0)[:, 0], u8 / 127.5 - 1, atol=1e-6)
    b1, b2 = (preprocess_test_images(u8, "binarize", 7) for _ in range(2))
    np.testing.assert_array_equal(b1, b2)  # a fixed binarization
    assert set(np.unique(b1)) <= {0.0, 1.0}
    assert not np.array_equal(b1, preprocess_test_images(u8, "binarize", 8))


# -- figures --------------------------------------------------------------------------------------

def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def write_metrics(run_dir, epochs=3):
    lines = ["epoch,train_loss,test_loss,test_recon,test_kl,seconds,images_per_second"]
    lines += [f"{e},{200 / e:.4f},{201 / e:.4f},{195 / e:.4f},{e:.4f},1.5,1000.0" for e in range(1, epochs + 1)]
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("model, latent_dim, preprocess", [
    ("paper-mlp", 2, "unit"), ("paper-mlp", 3, "binarize"), ("tutorial-mlp", 1, "symmetric"),
])
def test_write_figures(tmp_path, model, latent_dim, preprocess):
    pytest.importorskip("matplotlib", reason="the figures need matplotlib: pip install -e '.[plot]'")
    from scratchvae.figures import FIGURES, write_figures

    vae = build_vae(model, latent_dim=latent_dim, seed=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 40).astype(np.uint8)
    write_metrics(tmp_path)
    written = write_figures(tmp_path, vae, images, labels, preprocess=preprocess, dataset="mnist", seed=0,
                            metrics_rows=read_metrics(tmp_path))
    assert sorted(p.name for p in written) == sorted(FIGURES)
    sizes = {name: png_size(tmp_path / name) for name in FIGURES}
    assert all(w > 100 and h > 100 for w, h in sizes.values()), sizes
    # at least one screen pixel per image pixel in the big manifold
    big, small = sizes["manifold_30x30.png"], sizes["manifold_15x15.png"]
    assert big[0] >= 30 * 28 and big[0] > small[0]
    if latent_dim >= 2:  # a square grid (latent_dim = 1 gives one row)
        assert big[1] >= 30 * 28 and big[1] > small[1]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_write_figures_without_metrics_skips_the_curves(tmp_path):
    pytest.importorskip("matplotlib", reason="the figures need matplotlib: pip install -e '.[plot]'")
    from scratchvae.figures import write_figures

    vae = build_vae("paper-mlp", seed=0)
    images = np.random.default_rng(0).random((12, 1, 28, 28), dtype=np.float32)  # already preprocessed
    notes = []
    written = write_figures(tmp_path, vae, images, np.arange(12) % 10, preprocess="unit", log=notes.append)
    assert "loss_curves.png" not in [p.name for p in written] and len(written) == 5
    assert notes == ["loss_curves.png skipped: no metrics rows"]


def test_plot_names_the_extra_when_matplotlib_is_missing(monkeypatch, tmp_path):
    import sys

    from scratchvae import figures

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib..." fail
    write_metrics(tmp_path)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[plot\]"'):
        figures.loss_curves(read_metrics(tmp_path), tmp_path / "loss_curves.png")


# -- the command lines ------------------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A run folder with a checkpoint of an untrained tiny model, and a fake test split.

    Written with the training code's checkpoint writer; the test split is replaced by random
    uint8 images so no dataset is needed.
    """
    from run_files import untrained_run

    from scratchvae import evaluate

    run = untrained_run(tmp_path / "run", "paper-mlp", "mnist", "binarize")
    write_metrics(run, epochs=1)  # the checkpoint's row, as metrics.csv
    rng = np.random.default_rng(0)
    fake = (rng.integers(0, 256, (30, 28, 28)).astype(np.uint8), rng.integers(0, 10, 30).astype(np.uint8))
    monkeypatch.setattr(evaluate, "load_split", lambda split, dataset, data_dir: fake)
    return run


def test_evaluate_cli_writes_evaluation_json(run_dir, capsys):
    assert evaluate_main([str(run_dir), "--k", "10", "--limit", "20"]) == 0
    out = capsys.readouterr().out
    assert "IWAE NLL" in out and "K = 10" in out and "negative ELBO" in out and "fixed binarization" in out
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert result["images"] == 20 and result["iwae_k"] == 10 and result["preprocess"] == "binarize"
    assert math.isfinite(result["iwae_nll"]) and result["iwae_nll"] <= result["negative_elbo"] + 5
    assert not list(run_dir.glob(".*"))


def test_evaluate_cli_missing_run(tmp_path, capsys):
    assert evaluate_main([str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path)]) == 2
    assert "is missing" in capsys.readouterr().err


def test_plot_cli(run_dir, capsys):
    pytest.importorskip("matplotlib", reason="the figures need matplotlib: pip install -e '.[plot]'")
    from scratchvae.plot import FIGURES, main as plot_main

    assert plot_main([str(run_dir), "--limit", "25"]) == 0
    for name in FIGURES:
        png_size(run_dir / name)
    assert plot_main([str(run_dir / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_cupy_backend_iwae_matches_numpy():
    """Same model, same given noise: the two backends agree to float64 round-off."""
    from scratchvae.backend import cupy_available

    ok, why = cupy_available()
    if not ok:
        pytest.skip(f"cupy backend unavailable: {why}")
    x = binary_images(5)
    eps = np.random.default_rng(0).standard_normal((16, 5, 2))
    ref = importance_weighted_log_likelihood(tiny_vae("numpy"), x, eps=eps, chunk=5)
    got = importance_weighted_log_likelihood(tiny_vae("numpy").to_backend("cupy"), x, eps=eps, chunk=5)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


# -- the scoring likelihood, progress, what evaluate says, help texts, one-epoch curves ---------

def _nll_value_tolerance(old, pixels):
    """|nll_value - nll| allowed per image, in float32 (ulp = 2^-24). Per pixel: 1 ulp for
    rounding 1 + e; at most 1 ulp of relative error for each factor multiplied into a
    product, which its log turns into nats; 4 ulp of the product's log spread over its
    2^f >= 1 pixels, the log being below 2^f log 2 (NumPy documents float32 log within
    4 ulp): at most 4 ulp a pixel; 4 ulp for log1p (values below 1); so 10 ulp a pixel. Then
    both sums' own rounding: two float32 adds a pixel and a pairwise sum over ``pixels``
    values, ceil(log2 pixels) + 2 ulps of the total each."""
    ulp = 2.0 ** -24
    return pixels * 10 * ulp + 2 * (math.ceil(math.log2(pixels)) + 2) * ulp * np.abs(old)


@pytest.mark.parametrize("image", [(1, 28, 28), (3, 32, 32), (1, 5, 5)],
                         ids=["784 pixels: 4 folds", "3072: 5 folds, the cap", "25: none"])
def test_bernoulli_nll_value_agrees_with_bernoulli_nll(backend, image):
    """The scoring form (products of 1 + e, one log per 2^f pixels, in place, no cache)
    against the training form (log1p): float32 to the rounding bound above, float64 to
    1e-12; the logits are not modified."""
    from scratchvae.functional.likelihoods import bernoulli_nll, bernoulli_nll_value
    from scratchvae.likelihoods import Bernoulli

    rng = np.random.default_rng(7)
    scale = np.array([0.1, 1.0, 5.0, 20.0, 60.0])[:, None, None, None]  # confident pixels too
    logits = rng.standard_normal((5,) + image) * scale
    pixels = math.prod(image)
    for x in (rng.random((5,) + image), (rng.random((5,) + image) < 0.3) * 1.0):
        for dtype in (np.float32, np.float64):
            ld, xd = to_device(logits, backend, dtype=dtype), to_device(x, backend, dtype=dtype)
            before = to_host(ld).copy()
            old, _ = bernoulli_nll(ld, xd)
            new = bernoulli_nll_value(ld, xd)
            old, new = to_host(old).astype(np.float64), to_host(new).astype(np.float64)
            np.testing.assert_array_equal(to_host(ld), before)
            assert new.dtype == old.dtype and new.shape == (5,)
            if dtype == np.float32:
                assert np.all(np.abs(new - old) <= _nll_value_tolerance(old, pixels)), (new - old)
            else:
                np.testing.assert_allclose(new, old, rtol=1e-12)
    likelihood = Bernoulli()
    likelihood.nll_value(ld, xd)
    assert likelihood._cache is None


def test_iwae_with_the_scoring_likelihood_agrees_with_the_training_likelihood(monkeypatch):
    """The float32 IWAE estimate with ``nll_value`` against the same pass with the training
    ``nll`` (log1p, as before): log-sum-exp moves by at most the largest shift of a log
    weight, so the per-image bound of the likelihood holds for the estimate too."""
    from scratchvae.likelihoods import Bernoulli, Likelihood

    vae = build_vae("paper-mlp", latent_dim=2, seed=0)
    vae.params["decoder.2.W"][...] *= 8  # confident logits, as a trained model's
    x = binary_images(6, seed=3).astype(np.float32)
    eps = np.random.default_rng(2).standard_normal((40, 6, 2))
    new = importance_weighted_log_likelihood(vae, x, eps=eps, batch_size=4, chunk=16)
    monkeypatch.setattr(Bernoulli, "nll_value", Likelihood.nll_value)
    old = importance_weighted_log_likelihood(vae, x, eps=eps, batch_size=4, chunk=16)
    # the largest per-sample reconstruction NLL, the scale of the sums' rounding
    mu, logvar = vae.encode(x)
    z = mu[None] + np.exp(0.5 * F.bound_logvar(logvar)[0])[None] * eps.astype(np.float32)
    out = vae.decoder.forward(z.reshape(-1, 2), training=False)
    worst = float(vae.likelihood.nll(out, np.broadcast_to(x[None], (40,) + x.shape).reshape(-1, 1, 28, 28)).max())
    assert worst > 100  # the bound is not trivially loose
    assert np.all(np.abs(new - old) <= _nll_value_tolerance(worst, 784)), new - old
    assert not np.array_equal(new, old)  # the scoring form is really in use


def test_iwae_and_elbo_report_progress():
    vae = tiny_vae(latent_dim=2)
    x = binary_images(7)
    calls = []
    importance_weighted_log_likelihood(vae, x, k=30, batch_size=3, chunk=8, progress=calls.append)
    assert sum(calls) == 7 * 30
    assert len(calls) == 3 * 4  # three batches, each 30 samples in chunks of 8, 8, 8, 6
    images = []
    negative_elbo(vae, x, batch_size=5, progress=images.append)
    assert images == [5, 2]


def test_evaluate_run_says_what_it_computes_and_shows_a_bar(tmp_path, capsys):
    from scratchvae.evaluate import evaluate_run

    vae = build_vae("paper-mlp", latent_dim=2, seed=0)
    u8 = np.random.default_rng(0).integers(0, 256, (12, 28, 28)).astype(np.uint8)
    lines = []
    result = evaluate_run(tmp_path, vae, {"preprocess": "unit"}, u8, k=20, batch_size=5,
                          log=lines.append, progress=True)
    said = "\n".join(lines)
    assert "K = 20" in said and "240 decoder passes" in said and "--k" in said and "--limit" in said
    assert "NLL = -log p(x)" in said
    err = capsys.readouterr().err
    assert "IWAE NLL, K = 20" in err and "sample" in err  # tqdm's bar, on stderr
    assert result["iwae_k"] == 20 and math.isfinite(result["iwae_nll"])
    evaluate_run(tmp_path, vae, {"preprocess": "unit"}, u8, k=20, batch_size=5, log=lines.append)
    assert capsys.readouterr().err == ""  # progress=False: no bar


@pytest.mark.parametrize("module", ["evaluate", "plot", "train", "explore"])
def test_help_prints_each_default_once(module, monkeypatch):
    """Each option's help names its default at most once, and names it when it has one."""
    import argparse
    import importlib

    monkeypatch.setenv("COLUMNS", "10000")  # no line breaks inside a help text
    parser = importlib.import_module(f"scratchvae.{module}").build_parser()
    for action in parser._actions:
        if not action.option_strings or action.help in (None, argparse.SUPPRESS) or "-h" in action.option_strings:
            continue
        formatter = parser.formatter_class(prog=parser.prog)  # the option's block of --help
        formatter.add_argument(action)
        line = " ".join(formatter.format_help().split())
        assert line.count("default") <= 1, line
        if action.default not in (None, False, argparse.SUPPRESS):
            assert f"default {action.default}" in line or f"default: {action.default}" in line, line


def test_loss_curves_of_one_epoch_show_every_point(tmp_path):
    """A one-epoch run: every panel has a marker at epoch 1 inside a non-degenerate x and y
    range, away from the edges, and no legend covers it."""
    pytest.importorskip("matplotlib", reason="the figures need matplotlib: pip install -e '.[plot]'")
    from scratchvae.figures import loss_curves, loss_curves_figure, metrics_columns

    write_metrics(tmp_path, epochs=1)
    fig = loss_curves_figure(metrics_columns(read_metrics(tmp_path / "metrics.csv")))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    points = 0
    for ax in fig.axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert x0 <= 0.5 + 1e-9 and x1 >= 1.5 - 1e-9 and y1 > y0
        legend = ax.get_legend()
        box = legend.get_window_extent(renderer) if legend is not None else None
        for line in ax.get_lines():
            (px,), (py,) = line.get_xdata(), line.get_ydata()
            assert line.get_marker() == "o" and line.get_markersize() >= 4
            assert x0 < px < x1 and y0 + 0.02 * (y1 - y0) < py < y1 - 0.02 * (y1 - y0)
            if box is not None:
                assert not box.contains(*ax.transData.transform((px, py)))
            points += 1
    assert points == 4  # train and test loss, test recon, test KL
    png_size(loss_curves(read_metrics(tmp_path), tmp_path / "loss_curves.png"))
