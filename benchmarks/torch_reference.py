"""Optional PyTorch reference for scratchvae's ``paper-mlp`` and ``paper-conv`` VAEs.

This script is NOT part of the ``scratchvae`` package and nothing in ``scratchvae/``
imports it: it only exists to check, with an independent implementation, that the
NumPy engine reaches the same test negative ELBO when trained the same way. It needs
PyTorch (any recent CPU build); scratchvae itself never does.

What is reproduced (see scratchvae/models/architectures.py and scratchvae/models/vae.py):

* ``paper-mlp``:  Flatten, Linear(784, 256), ReLU -> mu, logvar = Linear(256, z) each;
  decoder Linear(z, 256), ReLU, Linear(256, 784) -> Bernoulli logits.
* ``paper-conv``: Conv(1->32, 3, s2, p1) ReLU, Conv(32->64, 3, s2, p1) ReLU, Dropout 0.25,
  Flatten, Linear(3136, 32) ReLU -> mu, logvar = Linear(32, z) each; decoder
  Linear(z, 3136) ReLU, view (64, 7, 7), ConvT(64->64, 3, s2, p1, op1) ReLU,
  ConvT(64->32, 3, s2, p1, op1) ReLU, Dropout 0.25, ConvT(32->1, 3, s1, p1) -> logits.
* Loss per image: sum over pixels of BCE-with-logits + analytic KL
  0.5 * sum(exp(lv) + mu^2 - 1 - lv), averaged over the batch (beta = 1), where
  lv = bound(logvar) is scratchvae's smooth clamp to [-30, 30] (the identity, to
  below 1e-11, for |logvar| <= 22, so it only matters if training diverges).
* PyTorch default initialisations; Adam(lr=1e-3, default betas); batch 64; MNIST
  train (60,000 images, x / 255), reshuffled every epoch with
  ``numpy.random.default_rng(seed)``; the last, smaller batch is kept.
* Test: the official 10,000 test images, ``model.eval()`` (dropout off), one noise
  sample per image, reported in nats per image as loss = recon + KL.

Run from the repository root, e.g.::

    python benchmarks/torch_reference.py --model paper-mlp --latent-dim 2 --epochs 2 --seed 0
    python benchmarks/torch_reference.py --model paper-conv --latent-dim 2 --epochs 1 \\
        --threads 2 --csv /tmp/conv.csv

Each epoch prints one line: epoch, train loss (mean over the epoch's images, in
training mode), test loss, test recon, test KL and the epoch's wall seconds
(training plus test evaluation). ``--train-limit N`` trains on the first N images only.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so ``python benchmarks/torch_reference.py`` finds scratchvae
    sys.path.insert(0, str(REPO_ROOT))

from scratchvae.data import load_split  # noqa: E402  (data loading only; the model is pure torch)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared/data/mnist"
MODELS = ("paper-mlp", "paper-conv")

# scratchvae/functional/latent.py: smooth two-sided clamp of the log-variance.
LOGVAR_MIN, LOGVAR_MAX, LOGVAR_SHARPNESS, _SATURATED = -30.0, 30.0, 4.0, 1e4


def _softplus(x):
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def bound_logvar(logvar, low=LOGVAR_MIN, high=LOGVAR_MAX, k=LOGVAR_SHARPNESS):
    """b(v) = low + s(high - s(high - v) - low), s(x) = softplus(k x) / k (same as scratchvae)."""
    v = logvar.clamp(low - _SATURATED, high + _SATURATED)
    u = high - _softplus(k * (high - v)) / k
    return low + _softplus(k * (u - low)) / k


# -- the two architectures ------------------------------------------------------
def paper_mlp(latent_dim):
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU())
    decoder = nn.Sequential(
        nn.Linear(latent_dim, 256), nn.ReLU(),
        nn.Linear(256, 784), nn.Unflatten(1, (1, 28, 28)),
    )
    return encoder, 256, decoder


def paper_conv(latent_dim):
    encoder = nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Dropout(0.25), nn.Flatten(),
        nn.Linear(3136, 32), nn.ReLU(),
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.Dropout(0.25),
        nn.ConvTranspose2d(32, 1, 3, stride=1, padding=1),
    )
    return encoder, 32, decoder


BUILDERS = {"paper-mlp": paper_mlp, "paper-conv": paper_conv}


class VAE(nn.Module):
    """Encoder -> (mu, logvar) heads -> z = mu + exp(lv / 2) * eps -> decoder (Bernoulli logits)."""

    def __init__(self, model, latent_dim):
        super().__init__()
        self.encoder, features, self.decoder = BUILDERS[model](latent_dim)
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(self, x, eps=None):
        """Per-image (recon, kl), each of shape (N,), in nats."""
        h = self.encoder(x)
        mu, lv = self.mu(h), bound_logvar(self.logvar(h))
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * lv) * eps
        logits = self.decoder(z)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (torch.exp(lv) + mu * mu - 1.0 - lv).sum(1)
        return recon, kl


# -- training and evaluation ------------------------------------------------------
def load_images(split, data_dir):
    images, _ = load_split(split, data_dir=data_dir)
    # (N, 1, 28, 28) by reshape: [:, None] would give the channel axis stride 0 (see step_time.py)
    return torch.from_numpy((images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28))


def train_epoch(model, optimizer, x_train, batch_size, rng):
    model.train()
    order = torch.from_numpy(rng.permutation(len(x_train)))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        x = x_train[order[start:start + batch_size]]
        recon, kl = model(x)
        loss = (recon + kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        count += len(x)
    return total / count


@torch.no_grad()
def evaluate(model, x_test, batch_size=1000):
    """Test (loss, recon, kl) in nats per image: eval mode, one noise sample per image."""
    model.eval()
    recon_sum, kl_sum = 0.0, 0.0
    for start in range(0, len(x_test), batch_size):
        recon, kl = model(x_test[start:start + batch_size])
        recon_sum += recon.double().sum().item()
        kl_sum += kl.double().sum().item()
    n = len(x_test)
    return (recon_sum + kl_sum) / n, recon_sum / n, kl_sum / n


@torch.no_grad()
def latent_statistics(model, x_test, batch_size=1000):
    """Posterior means mu(x) (N, z) and each latent dimension's KL averaged over ``x_test``
    (z,), eval mode; float64 NumPy arrays (for the active-unit count and collapse checks)."""
    model.eval()
    means, kl_sum = [], 0.0
    for start in range(0, len(x_test), batch_size):
        h = model.encoder(x_test[start:start + batch_size])
        mu, lv = model.mu(h), bound_logvar(model.logvar(h))
        means.append(mu.double())
        kl_sum = kl_sum + (0.5 * (torch.exp(lv) + mu * mu - 1.0 - lv)).double().sum(0)
    return torch.cat(means).numpy(), (kl_sum / len(x_test)).numpy()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="paper-mlp")
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on the first N training images only")
    p.add_argument("--data-dir", default=str(SHARED_MNIST) if SHARED_MNIST.is_dir() else None,
                   help="folder with the four MNIST files (default: %(default)s; "
                        "otherwise scratchvae's usual lookup/download)")
    p.add_argument("--csv", default=None, help="also write the per-epoch numbers to this CSV")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    x_train = load_images("train", args.data_dir)
    if args.train_limit is not None:
        x_train = x_train[:args.train_limit]
    x_test = load_images("test", args.data_dir)

    model = VAE(args.model, args.latent_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__} reference: {args.model} z={args.latent_dim} "
          f"params={n_params:,} train={len(x_train)} test={len(x_test)} "
          f"batch={args.batch_size} lr={args.lr} seed={args.seed} threads={args.threads}",
          flush=True)

    rows = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        train_loss = train_epoch(model, optimizer, x_train, args.batch_size, rng)
        test_loss, test_recon, test_kl = evaluate(model, x_test)
        seconds = time.perf_counter() - t0
        rows.append(dict(model=args.model, latent_dim=args.latent_dim, seed=args.seed,
                         epoch=epoch, train_loss=train_loss, test_loss=test_loss,
                         test_recon=test_recon, test_kl=test_kl, seconds=seconds))
        print(f"epoch {epoch:3d}  train {train_loss:9.4f}  test {test_loss:9.4f}  "
              f"recon {test_recon:9.4f}  kl {test_kl:7.4f}  {seconds:7.1f}s", flush=True)

    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
