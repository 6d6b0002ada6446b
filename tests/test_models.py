"""Whole VAEs: parameter counts from the paper, end-to-end gradients, the loss terms,
the inference API, input errors, learning, and numpy/cupy parity."""
import re

import numpy as np
import pytest

from scratchvae.backend import backend_of, to_device, to_host
from scratchvae.functional.latent import kl_per_dimension
from scratchvae.gradcheck import check_function, frozen_patterns
from scratchvae.models import ARCHITECTURES, ELBOTerms, LIKELIHOODS, build_vae
from scratchvae.optim import Adam

LATENT = 3
BETA = 0.7


def _images(n, arch, seed=0, dtype=np.float64):
    """Random images in the architecture's data range ([-1, 1] for tutorial-mlp, else [0, 1])."""
    x = np.random.default_rng(seed).random((n, 1, 28, 28))
    if arch == "tutorial-mlp":
        x = 2.0 * x - 1.0
    return x.astype(dtype)


def _host_kl(mu, lv):
    return 0.5 * (np.exp(lv) + mu**2 - 1.0 - lv).sum(axis=1)


def _host_bernoulli_nll(logits, x):
    p = 1.0 / (1.0 + np.exp(-logits))
    return -(x * np.log(p) + (1.0 - x) * np.log(1.0 - p)).reshape(len(x), -1).sum(axis=1)


# -- parameters ----------------------------------------------------------------------------
PAPER_COUNTS = {
    "paper-mlp": {2: 404244, 5: 406554, 16: 415024},
    "paper-conv": {2: 184421, 5: 194027, 16: 229249},
}
FEATURES = {"paper-mlp": 256, "paper-conv": 32, "tutorial-mlp": 28, "nll-conv": 512,
            "resnet18-vae": 512}
# layer indices, nested ones ("encoder.3.0.body.1.gamma" inside a residual block) included
NAME = re.compile(r"^((encoder|decoder)(\.\d+)+(\.(body|shortcut)(\.\d+)+)?|head\.mu|head\.logvar"
                  r"|likelihood)\.\w+$")


def test_parameter_counts_match_paper():
    # Table 1 (MLP) and Table 2 (conv) of the paper, Bernoulli decoder
    for arch, counts in PAPER_COUNTS.items():
        for z, count in counts.items():
            assert build_vae(arch, z).num_params() == count, (arch, z)

    for arch in ARCHITECTURES:
        for lik in LIKELIHOODS:
            vae = build_vae(arch, 4, lik)
            params, grads = vae.params, vae.grads
            assert set(params) == set(grads)
            for name, p in params.items():
                assert NAME.match(name), name
                assert grads[name].shape == p.shape and p.dtype == np.float32, name
            f = FEATURES[arch]
            head = {k: v.shape for k, v in params.items() if k.startswith("head.")}
            assert head == {"head.mu.W": (f, 4), "head.mu.b": (4,),
                            "head.logvar.W": (f, 4), "head.logvar.b": (4,)}
            assert any(k.startswith("encoder.") for k in params)
            assert any(k.startswith("decoder.") for k in params)
            has_scale = lik == "gaussian-learned-scale"
            assert ("likelihood.log_scale" in params) == has_scale
            if has_scale:
                assert params["likelihood.log_scale"].shape == (1,)

    # the likelihood's extra parameters, counted by hand from the layer shapes
    base = PAPER_COUNTS["paper-mlp"][2]
    assert build_vae("paper-mlp", 2, "gaussian-learned-scale").num_params() == base + 1
    # a second output channel: one more 256 -> 784 dense map
    assert build_vae("paper-mlp", 2, "gaussian").num_params() == base + 256 * 784 + 784
    # one more output channel of the last 3x3 transposed conv from 32 channels
    conv = PAPER_COUNTS["paper-conv"][2]
    assert build_vae("paper-conv", 2, "gaussian").num_params() == conv + 32 * 9 + 1


def test_nll_conv_shapes_and_parameter_count():
    """nll-conv, counted by hand layer by layer (docs/vae.md), and its shapes: 28-14-7-14-28."""
    encoder = (32 * 1 * 9 + 32) + (64 * 32 * 16 + 64) + (64 * 64 * 9 + 64) + (128 * 64 * 16 + 128) \
        + (6272 * 512 + 512)
    decoder_body = (512 * 6272 + 6272) + (128 * 64 * 16 + 64) + (64 * 64 * 9 + 64) \
        + (64 * 32 * 16 + 32) + (32 * 1 * 9 + 1)
    for z in (2, 32, 64):
        head, decoder_in = 2 * (512 * z + z), z * 512 + 512
        assert build_vae("nll-conv", z).num_params() == encoder + head + decoder_in + decoder_body, z
    vae = build_vae("nll-conv", seed=0)
    assert (vae.latent_dim, vae.likelihood.name) == (32, "bernoulli")
    assert vae.num_params() == 6_881_473
    x = (np.random.default_rng(0).random((3, 1, 28, 28)) > 0.5).astype(np.float32)
    shapes, h = [], x
    for layer in vae.encoder.layers:
        h = layer.forward(h, training=False)
        shapes.append(tuple(h.shape[1:]))
    assert shapes[:8:2] == [(32, 28, 28), (64, 14, 14), (64, 14, 14), (128, 7, 7)]
    assert shapes[-1] == (512,)
    out = vae.decoder.forward(vae.encode(x)[0], training=False)
    assert out.shape == (3, 1, 28, 28)


# -- whole-model gradients ------------------------------------------------------------------
def _whole_model_check(vae, x, eps, training, max_entries, step=1e-4):
    """Finite differences of the loss for every parameter tensor, ReLU/dropout patterns frozen.

    The loss is ~500-900 nats, so a step of 1e-4 keeps float64 rounding (~1e-16 * L / h)
    below the smallest gradients; frozen patterns make the loss smooth around the point.
    """
    with frozen_patterns(vae):
        report = check_function(
            lambda: vae.forward(x, eps, training=training).loss,
            lambda dy: (vae.backward(dy), vae.grads)[1],
            vae.params, max_entries=max_entries, step=step,
        )
        first = to_host(vae.forward(x, eps, training=training).loss)
        again = to_host(vae.forward(x, eps, training=training).loss)
    assert first == again  # the frozen patterns really are frozen
    assert set(report.checks) == set(vae.params)
    return report


@pytest.mark.gradcheck
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
@pytest.mark.parametrize("arch", ["paper-mlp", "paper-conv", "tutorial-mlp"])
def test_whole_model_gradients(backend, arch, likelihood):
    vae = build_vae(arch, LATENT, likelihood, BETA, dtype=np.float64, seed=1, backend=backend)
    x = to_device(_images(2, arch, seed=2), backend)
    eps = to_device(np.random.default_rng(3).standard_normal((2, LATENT)), backend)
    if likelihood == "gaussian-learned-scale":
        vae.params["likelihood.log_scale"][...] = -0.3  # away from its initial 0

    report = _whole_model_check(vae, x, eps, training=False, max_entries=8)

    report.assert_ok(1e-6)


@pytest.mark.gradcheck
def test_whole_model_gradients_nll_conv(backend):
    """nll-conv, Bernoulli, evaluation mode. At its initial weights the decoder barely reads z
    (logits near 0), so the gradients reaching the encoder are ~1e-5 and a difference quotient
    of the ~545-nat loss drowns in rounding; five Adam steps on the batch first move it to a
    point (loss ~460) where every gradient stands well above the rounding, and h = 1e-4 with
    tolerance 1e-6 holds with margin (worst error ~3e-8). Four entries per tensor: the model
    is large, and each entry costs two forwards. The weights are drawn on NumPy and moved, so
    the point checked is the same on every backend (CuPy's Philox draws other weights)."""
    vae = build_vae("nll-conv", LATENT, "bernoulli", BETA, dtype=np.float64, seed=1).to_backend(backend)
    x = to_device((np.random.default_rng(2).random((2, 1, 28, 28)) > 0.5).astype(np.float64), backend)
    eps = to_device(np.random.default_rng(3).standard_normal((2, LATENT)), backend)
    opt = Adam(vae.params, vae.grads, lr=1e-3)
    for _ in range(5):
        vae.forward(x, eps, training=False)
        vae.backward()
        opt.step()

    report = _whole_model_check(vae, x, eps, training=False, max_entries=4)

    report.assert_ok(1e-6)


@pytest.mark.gradcheck
@pytest.mark.parametrize("kl", ["analytic", "mc"])
@pytest.mark.parametrize("arch", ["paper-conv", "tutorial-mlp"])
def test_whole_model_gradients_training_mode(backend, arch, kl):
    """paper-conv with both dropout layers on; tutorial-mlp with batch statistics in batch norm."""
    n = 2 if arch == "paper-conv" else 3
    vae = build_vae(arch, LATENT, None, BETA, dtype=np.float64, seed=4, backend=backend, kl=kl)
    x = to_device(_images(n, arch, seed=5), backend)
    eps = to_device(np.random.default_rng(6).standard_normal((n, LATENT)), backend)

    # Batch statistics over 3 samples curve the loss strongly in the encoder weights: at
    # h = 1e-4 the truncation error reaches ~1e-6 (it falls 100x per 10x smaller step,
    # so it is truncation, not a wrong gradient). h = 2e-5 balances it against rounding,
    # both ~5e-8. Dropout alone (paper-conv) is piecewise linear and keeps h = 1e-4.
    step = 2e-5 if arch == "tutorial-mlp" else 1e-4
    report = _whole_model_check(vae, x, eps, training=True, max_entries=8, step=step)

    report.assert_ok(1e-6)
    # training mode really differs from evaluation here
    train_loss = float(vae.forward(x, eps, training=True))
    assert train_loss != float(vae.forward(x, eps, training=False))
    if arch == "paper-conv":  # outside the block dropout draws a new mask each time
        assert train_loss != float(vae.forward(x, eps, training=True))


@pytest.mark.gradcheck
@pytest.mark.parametrize("arch", ["paper-mlp", "paper-conv"])
def test_whole_model_gradients_free_bits(backend, arch):
    """Free bits on, with the floor between the dimensions' batch-mean KLs: one dimension
    inactive (no KL gradient), two active. The floor sits more than 1e-3 nats from every KL_d,
    far beyond what a step of 1e-4 in one weight moves them (~1e-6), so no difference
    quotient crosses the kink of max(free_bits, KL_d)."""
    x = to_device(_images(2, arch, seed=2), backend)
    eps = to_device(np.random.default_rng(3).standard_normal((2, LATENT)), backend)
    probe = build_vae(arch, LATENT, None, BETA, dtype=np.float64, seed=1, backend=backend)
    mu, lv = probe.encode(x)
    kl_d = to_host(kl_per_dimension(mu, lv)).mean(axis=0)
    low, mid, _ = np.sort(kl_d)
    free_bits = float((low + mid) / 2)
    assert np.abs(kl_d - free_bits).min() > 1e-3
    vae = build_vae(arch, LATENT, None, BETA, dtype=np.float64, seed=1, backend=backend,
                    free_bits=free_bits)

    report = _whole_model_check(vae, x, eps, training=False, max_entries=8)

    report.assert_ok(1e-6)
    # the loss floors the KL, the reported kl is the true one, and the floor changed the gradient
    terms = vae.forward(x, eps, training=False)
    plain_terms = probe.forward(x, eps, training=False)
    assert float(to_host(terms.kl)) == float(to_host(plain_terms.kl)) == pytest.approx(kl_d.sum())
    assert float(to_host(terms.recon)) == float(to_host(plain_terms.recon))
    np.testing.assert_allclose(float(terms), float(to_host(terms.recon))
                               + BETA * np.maximum(free_bits, kl_d).sum(), rtol=1e-12)
    vae.backward()
    probe.backward()
    assert not np.array_equal(to_host(vae.grads["head.mu.W"]), to_host(probe.grads["head.mu.W"]))
    for k in vae.grads:
        if k.startswith("decoder."):  # the KL never reaches the decoder
            np.testing.assert_array_equal(to_host(vae.grads[k]), to_host(probe.grads[k]), err_msg=k)


def test_options_off_and_backward_beta(backend):
    """free_bits = 0 builds the plain model (bit for bit), and ``backward(beta=b)``, what KL
    warm-up calls, gives the gradients of a model built with beta = b."""
    x = to_device(_images(3, "paper-mlp", seed=13, dtype=np.float32), backend)
    eps = to_device(np.random.default_rng(14).standard_normal((3, LATENT)), backend, dtype=np.float32)
    results = {}
    for key, kw, beta in (("plain", {}, None), ("zero", dict(free_bits=0.0), None),
                          ("warm", {}, 0.25), ("built", dict(beta=0.25), None)):
        vae = build_vae("paper-mlp", LATENT, seed=0, backend=backend, **kw)
        terms = vae.forward(x, eps, training=True)
        vae.backward(beta=beta)
        results[key] = ([to_host(t) for t in terms], {k: to_host(g).copy() for k, g in vae.grads.items()})
    for a, b in (("plain", "zero"), ("warm", "built")):
        for k in results[a][1]:
            np.testing.assert_array_equal(results[a][1][k], results[b][1][k], err_msg=f"{a} {b} {k}")
    assert results["plain"][0] == results["zero"][0]
    assert results["warm"][0] == results["plain"][0]  # beta in backward leaves the reported loss
    assert not np.array_equal(results["plain"][1]["head.mu.W"], results["warm"][1]["head.mu.W"])
    assert "free_bits" not in repr(build_vae("paper-mlp", free_bits=0.0))
    assert "free_bits=0.5" in repr(build_vae("paper-mlp", free_bits=0.5))


# -- the loss and its terms -----------------------------------------------------------------
def test_forward_returns_terms(backend):
    x_h = _images(3, "paper-mlp", seed=7)
    eps_h = np.random.default_rng(8).standard_normal((3, LATENT))
    x, eps = to_device(x_h, backend), to_device(eps_h, backend)
    for kl in ("analytic", "mc"):
        vae = build_vae("paper-mlp", LATENT, "bernoulli", BETA, dtype=np.float64, seed=0,
                        backend=backend, kl=kl)

        terms = vae.forward(x, eps, training=False)

        assert isinstance(terms, ELBOTerms)
        for t in terms:
            assert t.shape == () and backend_of(t) == backend
        loss, recon, kl_term = (float(to_host(t)) for t in terms)
        assert float(terms) == loss
        np.testing.assert_allclose(loss, recon + BETA * kl_term, rtol=1e-12)

        # the same numbers by hand from the encoder output and eps
        mu, lv = (to_host(a) for a in vae.encode(x))
        assert np.abs(lv).max() < 20  # where the bound is the identity
        z = mu + np.exp(lv / 2) * eps_h
        logits = to_host(vae.decoder.forward(to_device(z, backend), training=False))
        np.testing.assert_allclose(recon, _host_bernoulli_nll(logits, x_h).mean(), rtol=1e-10)
        np.testing.assert_allclose(
            recon, float(to_host(vae.likelihood.nll(to_device(logits, backend), x).mean())), rtol=1e-10)
        if kl == "analytic":
            expected_kl = _host_kl(mu, lv).mean()
        else:  # log q(z|x) - log p(z) at this z
            expected_kl = (-lv / 2 - (z - mu) ** 2 / (2 * np.exp(lv)) + z**2 / 2).sum(axis=1).mean()
        np.testing.assert_allclose(kl_term, expected_kl, rtol=1e-10, atol=1e-12)

        # deterministic given eps in evaluation mode; eps=None draws fresh noise
        assert float(vae.forward(x, eps, training=False)) == loss
        assert float(vae.forward(x, training=True)) != float(vae.forward(x, training=True))


def test_encode_decode_sample_reconstruct_shapes(backend):
    n = 3
    vae = build_vae("paper-mlp", 4, backend=backend)  # float32, Bernoulli
    x = to_device(_images(n, "paper-mlp", dtype=np.float32), backend)
    mu, logvar = vae.encode(x)
    assert mu.shape == (n, 4) and logvar.shape == (n, 4)
    mu_flat, _ = vae.encode(x.reshape(n, 784))  # flat images are accepted too
    np.testing.assert_array_equal(to_host(mu_flat), to_host(mu))
    z = to_device(np.random.default_rng(0).standard_normal((n, 4)), backend, dtype=np.float32)
    for images, count in ((vae.decode(z), n), (vae.sample(5), 5), (vae.reconstruct(x), n)):
        images = to_host(images)
        assert images.shape == (count, 1, 28, 28) and images.dtype == np.float32
        assert np.all(images > 0) and np.all(images < 1)  # Bernoulli means

    tutorial = build_vae("tutorial-mlp", backend=backend)  # latent 28, gaussian-fixed, tanh
    assert tutorial.latent_dim == 28
    z = to_device(3 * np.random.default_rng(1).standard_normal((n, 28)), backend, dtype=np.float32)
    for images in (tutorial.decode(z), tutorial.sample(n),
                   tutorial.reconstruct(to_device(_images(n, "tutorial-mlp", dtype=np.float32), backend))):
        images = to_host(images)
        assert images.shape == (n, 1, 28, 28)
        assert np.all(images >= -1) and np.all(images <= 1)

    # a per-pixel Gaussian decodes 2 channels but its mean has the image's one
    conv = build_vae("paper-conv", 2, "gaussian", backend=backend)
    x = to_device(_images(2, "paper-conv", dtype=np.float32), backend)
    assert to_host(conv.reconstruct(x)).shape == (2, 1, 28, 28)
    assert conv.decoder.forward(conv.encode(x)[0], training=False).shape == (2, 2, 28, 28)


def test_model_input_errors(backend):
    vae = build_vae("paper-mlp", 2, backend=backend)  # float32
    with pytest.raises(ValueError, match="backward called before forward"):
        vae.backward()
    good = _images(2, "paper-mlp", dtype=np.float32)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        vae.forward(to_device(good[:, :, :27, :27], backend))
    with pytest.raises(ValueError, match="expected a float32 .*got float64"):
        vae.forward(to_device(good.astype(np.float64), backend))
    with pytest.raises(ValueError, match=r"eps must have shape \(2, 2\)"):
        vae.forward(to_device(good, backend), eps=to_device(np.zeros((2, 3), np.float32), backend))
    with pytest.raises(ValueError, match="eps must be a float32"):
        vae.forward(to_device(good, backend), eps=to_device(np.zeros((2, 2)), backend))
    with pytest.raises(ValueError, match="unknown architecture 'paper-rnn'.*paper-mlp"):
        build_vae("paper-rnn")
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'.*bernoulli"):
        build_vae("paper-mlp", likelihood="poisson")
    with pytest.raises(ValueError, match="kl must be one of"):
        build_vae("paper-mlp", kl="exact")
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        build_vae("paper-mlp", 0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        build_vae("paper-mlp", beta=-1.0)
    for bad in (-0.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="free_bits must be a finite number >= 0"):
            build_vae("paper-mlp", free_bits=bad)
    with pytest.raises(ValueError, match="free_bits needs the analytic KL"):
        build_vae("paper-mlp", kl="mc", free_bits=0.5)
    with pytest.raises(ValueError, match="backward called before nll"):
        build_vae("paper-mlp", likelihood="bernoulli").likelihood.backward(np.ones(2))
    # a failed forward leaves a usable model
    terms = vae.forward(to_device(good, backend))
    assert np.isfinite(float(terms))
    vae.backward()


# -- learning and parity ---------------------------------------------------------------------
def test_one_adam_step_lowers_loss_on_fixed_batch(backend):
    vae = build_vae("paper-mlp", LATENT, seed=0, backend=backend)  # float32, Bernoulli
    x = to_device(np.random.default_rng(9).random((8, 1, 28, 28)) > 0.7, backend, dtype=np.float32)
    eps = to_device(np.random.default_rng(10).standard_normal((8, LATENT)), backend, dtype=np.float32)
    before = {k: to_host(v).copy() for k, v in vae.params.items()}
    opt = Adam(vae.params, vae.grads, lr=1e-3)

    losses = []
    for _ in range(4):
        losses.append(float(vae.forward(x, eps, training=False)))
        vae.backward()
        opt.step()
    losses.append(float(vae.forward(x, eps, training=False)))

    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 5.0, losses  # nats per image, not rounding noise
    for k, v in vae.params.items():  # the optimizer wrote into the model's own arrays
        assert not np.array_equal(to_host(v), before[k]), k


def test_backend_parity_one_step(backend):
    reference = build_vae("paper-conv", LATENT, dtype=np.float64, seed=0)
    other = build_vae("paper-conv", LATENT, dtype=np.float64, seed=1, backend=backend)
    assert not np.array_equal(to_host(other.params["head.mu.W"]), reference.params["head.mu.W"])
    for k, v in reference.params.items():
        other.params[k][...] = to_device(v, backend)
    x = _images(3, "paper-conv", seed=11)
    eps = np.random.default_rng(12).standard_normal((3, LATENT))  # drawn on the host
    initial = {k: v.copy() for k, v in reference.params.items()}

    results = []
    for vae, where in ((reference, "numpy"), (other, backend)):
        opt = Adam(vae.params, vae.grads, lr=1e-3)
        terms = vae.forward(to_device(x, where), to_device(eps, where), training=False)
        vae.backward()
        grads = {k: to_host(g).copy() for k, g in vae.grads.items()}
        opt.step()
        results.append(([float(to_host(t)) for t in terms], grads,
                        {k: to_host(p) for k, p in vae.params.items()}))

    (terms_a, grads_a, params_a), (terms_b, grads_b, params_b) = results
    np.testing.assert_allclose(terms_b, terms_a, rtol=1e-12)
    for k in params_a:
        np.testing.assert_allclose(grads_b[k], grads_a[k], rtol=1e-9, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(params_b[k], params_a[k], rtol=0, atol=1e-10, err_msg=k)
    # the step moved the parameters (so agreeing after it means something)
    for k in ("encoder.0.W", "head.logvar.b", "decoder.8.W"):
        assert np.abs(params_a[k] - initial[k]).max() > 1e-4, k
