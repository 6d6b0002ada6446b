"""The ResNet-18 VAE (the PyTorch tutorial's CIFAR-10 model): its exact parameter count, its
defaults and shapes, and whole-model finite-difference checks on a reduced-width copy and at
full width."""

import numpy as np
import pytest

from scratchvae.backend import to_device, to_host
from scratchvae.layers import Residual, Upsample
from scratchvae.layers.base import iter_layers
from scratchvae.models import build_vae
from scratchvae.optim import Adam
from test_models import _whole_model_check  # the same finite-difference check as the MNIST models

# A reduced-width copy for the finite differences: every stage has its own channel count, so
# every kind of shortcut (identity, strided 1x1 conv + BN, upsample + 1x1 conv + BN) is there.
SMALL = dict(widths=(4, 6, 8, 10), image_size=16)


def test_parameter_count_is_exactly_the_tutorials():
    """20,057,089, measured on an independent PyTorch statement of the model (issue 15)."""
    vae = build_vae("resnet18-vae")
    sizes = {k: int(p.size) for k, p in vae.params.items()}

    def total(prefix):
        return sum(n for k, n in sizes.items() if k.startswith(prefix))

    assert vae.num_params() == sum(sizes.values()) == 20_057_089
    assert total("encoder.") == 11_168_832
    assert total("decoder.") == 8_625_600
    assert total("head.mu.") == total("head.logvar.") == 131_328
    assert sizes["likelihood.log_scale"] == 1
    # batch norm's running statistics are buffers, not parameters
    assert not any("running" in k for k in sizes) and any("running_mean" in k for k in vae.buffers)


def test_defaults_are_the_tutorials():
    vae = build_vae("resnet18-vae", options=dict(widths=(2, 2, 2, 2)))
    assert (vae.latent_dim, vae.likelihood.name, vae.kl) == (256, "gaussian-learned-scale", "mc")
    assert vae.image_shape == (3, 32, 32)
    assert float(to_host(vae.params["likelihood.log_scale"])[0]) == 0.0
    convs = [layer for layer in iter_layers(vae) if type(layer).__name__ == "Conv2d"]
    assert len(convs) == 1 + 16 + 3 + 1 + 16 + 3 and all(not c.bias for c in convs)


def test_shapes_through_the_stages(backend):
    vae = build_vae("resnet18-vae", 8, backend=backend, options=dict(widths=(2, 3, 4, 5)))
    x = to_device(np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32), backend)
    h, sizes = x, []
    for layer in vae.encoder.layers:
        h = layer.forward(h, training=True)
        sizes.append(tuple(h.shape[1:]))
    assert sizes[4:11:2] == [(2, 32, 32), (3, 16, 16), (4, 8, 8), (5, 4, 4)]
    assert sizes[-1] == (5,)
    z = to_device(np.zeros((2, 8), np.float32), backend)
    h, sizes = z, []
    for layer in vae.decoder.layers:
        h = layer.forward(h, training=True)
        sizes.append(tuple(h.shape[1:]))
    assert sizes[1] == (5, 4, 4)
    assert sizes[2:10:2] == [(4, 8, 8), (3, 16, 16), (2, 32, 32), (2, 32, 32)]
    assert sizes[-1] == (3, 32, 32)
    ups = [layer for layer in iter_layers(vae.decoder) if isinstance(layer, Upsample)]
    assert len(ups) == 6 and all(u.scale_factor == 2 for u in ups)  # body and shortcut, 3 stages
    blocks = [b for b in vae.encoder.layers if len(getattr(b, "layers", ())) == 2]
    assert [isinstance(b[0], Residual) and b[0].shortcut is not None for b in blocks] == \
        [False, False, True, False, True, False, True, False]


def _whole_model_report(backend, training, latent, options, size, step, max_entries):
    """Finite differences of every parameter tensor (see test_whole_model_gradients)."""
    vae = build_vae("resnet18-vae", latent, dtype=np.float64, seed=1, backend=backend,
                    options=options)
    rng = np.random.default_rng(2)
    x = to_device(rng.random((2, 3, size, size)), backend)
    eps = to_device(rng.standard_normal((2, vae.latent_dim)), backend)
    vae.params["likelihood.log_scale"][...] = -0.3
    if not training:
        for _ in range(3):
            vae.forward(to_device(rng.random((4, 3, size, size)), backend), training=True)
    opt = Adam(vae.params, vae.grads, lr=1e-3)
    for _ in range(5):
        vae.forward(x, eps, training=training)
        vae.backward()
        opt.step()

    report = _whole_model_check(vae, x, eps, training, max_entries, step=step)
    assert "likelihood.log_scale" in report.checks
    return report, float(to_host(vae.forward(x, eps, training=training).loss))


@pytest.mark.gradcheck
@pytest.mark.parametrize("training", [True, False], ids=["batch-stats", "running-stats"])
def test_whole_model_gradients(backend, training):
    """Every parameter tensor of a reduced-width resnet18-vae (SMALL; the full width, with
    fewer entries per tensor, is test_whole_model_gradients_full_width),
    the learned log-scale included, on a batch of two images with the noise fixed and ReLU
    patterns frozen, batch norm with batch statistics and with running ones (moved off their
    initial 0 and 1 first).

    The loss is ~800 nats. At the initial weights the decoder barely reads z, so the gradients
    reaching the encoder are ~1e-5 and a difference quotient drowns in rounding; five Adam steps
    on the batch first move it to a point where they stand above it (as for nll-conv in
    test_models). Batch statistics over two images curve the loss strongly in the weights
    before a BN, so h = 2e-5 balances truncation against rounding there (as for tutorial-mlp);
    with running statistics the loss is quadratic in any one weight but for exp(-2 log_scale),
    the noise scale exp(logvar / 2) and the KL, which curve it gently. There the smallest
    tensors' gradients (~1e-3, deep in the encoder) meet the rounding of the ~600-nat loss, which
    falls as 1/h, while log_scale's truncation grows as h^2: h = 5e-4 balances them (worst
    errors 3e-7 over seeds 1 and 7; 2.6e-6 at 1e-4 and 7.8e-7 at 1e-3). Ten entries per tensor:
    all of every BN vector, whose channels differ by orders of magnitude."""
    report, _ = _whole_model_report(backend, training, 5, SMALL, 16, 2e-5 if training else 5e-4, 10)
    report.assert_ok(1e-6)


@pytest.mark.gradcheck
@pytest.mark.parametrize("training", [True, False], ids=["batch-stats", "running-stats"])
def test_whole_model_gradients_full_width(backend, training):
    """The same check on the full 20,057,089-parameter model at 32x32, two entries per tensor
    (about 50 s each on the project's 2-core Zen 5 machine, 70 s on its earlier Zen 2). At full
    width the ~4,000-nat loss rounds more: with batch statistics h = 5e-5 is where rounding
    stops dominating (measured worst errors with numpy 2.4: 2.1e-6 at h = 1e-5, 1.8e-6 at 2e-5,
    8.3e-7 at 5e-5; with numpy 1.26, whose sums round differently, 1.1e-6 at 5e-5), with running
    statistics h = 5e-4 (5.2e-7). So each tensor may err by 1e-6 plus the rounding of the
    difference quotient, eps |L| / h, relative to that tensor's largest gradient
    (docs/gradcheck.md, "Rounding"): a tensor whose gradients are 1e-4 of the loss's scale
    meets that rounding first. A wrong gradient errs by far more (O(1) of the tensor's scale)."""
    step = 5e-5 if training else 5e-4
    report, loss = _whole_model_report(backend, training, None, None, 32, step, 2)
    rounding = np.finfo(np.float64).eps * abs(loss) / step
    for c in report.checks.values():
        scale = abs(c.analytic - c.numeric) / c.error if c.error > 0 else np.inf
        allowed = 1e-6 + rounding / scale
        assert c.error <= allowed, (f"{c.name}: error {c.error:.3g} > {allowed:.3g} at {c.worst_index}: "
                                    f"analytic {c.analytic:.10g}, numeric {c.numeric:.10g} (h = {step:g})")
