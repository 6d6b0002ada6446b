"""resnet18-vae in scratchvae and in PyTorch (``torch_resnet.py``) trained in lockstep: the
same initial weights (copied from scratchvae), the same batches of random 32x32 colour images
in [0, 1], the same noise eps, Adam at 1e-4, float32 (or ``--dtype float64``), batch norm
with batch statistics. What is left between them is float rounding (summation orders in the
convolutions).

In float32 the first step's losses agree to rounding (1e-7), but some encoder gradients do
not: at the initial weights the decoder barely reads z, and the gradient reaching the deep
encoder comes out of batch norm's backward as a small difference of large terms, so float32
rounding changes it by up to 6 % in either implementation (measured against the same
weights in float64 at batch 32: worst tensor 6.4 % in scratchvae and 6.5 % in PyTorch, median
over tensors 0.25 % and 0.52 %; docs/performance.md). Adam's first steps move every weight by about lr whatever its gradient's
size, so the runs drift apart from the second step on (1e-5, then 1e-4 relative). In float64
both the losses and every gradient agree to 1e-13, and stay together step after step: that is
the check that the two compute the same function and the same gradients.

    python benchmarks/lockstep_resnet.py                    # the full model, 3 steps of batch 32
    python benchmarks/lockstep_resnet.py --widths 8 8 8 8 --image-size 16 --steps 5

Prints each step's two losses and their relative gap, the test-mode losses after the last
step, and the largest parameter difference relative to the largest parameter. PyTorch is
needed by this script only; ``scratchvae/`` never imports it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
for _path in (str(BENCHMARKS.parent), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

LR = 1e-4


def train_pair(widths=(64, 128, 256, 512), image_size=32, latent_dim=256, batch=32, steps=3,
               seed=0, threads=2, dtype="float32"):
    """Both models, ``steps`` Adam steps in lockstep; a dict of what was measured."""
    import numpy as np
    import torch

    from scratchvae.models import build_vae
    from scratchvae.optim import Adam
    from torch_resnet import ResNetVAE, copy_from_scratchvae

    torch.set_num_threads(threads)
    dt = np.dtype(dtype)
    vae = build_vae("resnet18-vae", latent_dim, seed=seed, dtype=dt,
                    options=dict(widths=tuple(widths), image_size=image_size))
    opt = Adam(vae.params, vae.grads, lr=LR)
    twin = ResNetVAE(latent_dim, tuple(widths), image_size).to(getattr(torch, dt.name))
    pairs = copy_from_scratchvae(twin, vae)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=LR)
    rng = np.random.default_rng(seed + 1_000_003)

    losses = []
    for _ in range(steps):
        x = rng.random((batch, 3, image_size, image_size)).astype(dt)
        eps = rng.standard_normal((batch, latent_dim)).astype(dt)
        ours = vae.forward(x, eps=eps, training=True)
        vae.backward()
        opt.step()
        twin.train()
        recon, kl = twin(torch.from_numpy(x), eps=torch.from_numpy(eps))
        loss = (recon + kl).mean()
        twin_opt.zero_grad(set_to_none=True)
        loss.backward()
        twin_opt.step()
        losses.append((float(ours.loss), float(loss.detach())))

    x = rng.random((batch, 3, image_size, image_size)).astype(dt)
    eps = rng.standard_normal((batch, latent_dim)).astype(dt)
    twin.eval()
    with torch.no_grad():
        recon, kl = twin(torch.from_numpy(x), eps=torch.from_numpy(eps))
    test = (float(vae.forward(x, eps=eps, training=False).loss), float((recon + kl).mean()))
    diff = max(float(np.max(np.abs((vae.params[n].T if t else vae.params[n]) - p.detach().numpy())))
               for n, p, t in pairs)
    scale = max(float(np.max(np.abs(vae.params[n]))) for n, _, _ in pairs)
    log_scale = (float(vae.params["likelihood.log_scale"][0]), float(twin.log_scale.detach()[0]))
    return dict(losses=losses, test_losses=test, param_relative_difference=diff / scale,
                log_scale=log_scale, num_params=vae.num_params(),
                torch_num_params=sum(p.numel() for p in twin.parameters()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", nargs=4, type=int, default=[64, 128, 256, 512])
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = p.parse_args(argv)
    r = train_pair(args.widths, args.image_size, 256, args.batch, args.steps, args.seed, args.threads,
                   args.dtype)
    print(f"resnet18-vae widths {args.widths}, {args.image_size}x{args.image_size}, batch {args.batch}, "
          f"{args.dtype}: "
          f"{r['num_params']:,} parameters (torch {r['torch_num_params']:,})")
    print(f"{'step':>4} {'scratchvae loss':>16} {'torch loss':>16} {'relative gap':>13}")
    for i, (a, b) in enumerate(r["losses"], 1):
        print(f"{i:>4} {a:>16.6f} {b:>16.6f} {abs(a - b) / abs(b):>13.2e}")
    a, b = r["test_losses"]
    print(f"eval {a:>16.6f} {b:>16.6f} {abs(a - b) / abs(b):>13.2e}   (running statistics)")
    print(f"largest parameter difference / largest parameter: {r['param_relative_difference']:.2e}; "
          f"log_scale {r['log_scale'][0]:.8f} vs {r['log_scale'][1]:.8f}")


if __name__ == "__main__":
    main()
