"""A whole VAE on one page: the model, the loss, its gradient and the training loop, written
with scratchvae's public pieces and nothing else (no run folder, no checkpoint, no CLI
machinery). Kingma & Welling's MLP VAE on MNIST: 784 -> 256 -> z -> 256 -> 784.

    python examples/train_vae.py                 # 5 epochs, about a minute on a laptop CPU
    python examples/train_vae.py --epochs 1 --train-limit 2000

Every backward pass below is one of the engine's hand-derived ones (lessons 01-04): swap in
your own with ``python -m scratchvae.train --exercises DIR`` (docs/exercises.md).
"""
import argparse

import numpy as np

from scratchvae.data import load_split
from scratchvae.functional import sigmoid
from scratchvae.functional.latent import (kl_standard_normal_backward, kl_standard_normal_forward,
                                          reparameterize_backward, reparameterize_forward)
from scratchvae.functional.likelihoods import bernoulli_nll, bernoulli_nll_backward
from scratchvae.layers import Dense, GaussianHead, ReLU, Sequential
from scratchvae.optim import Adam


def build(latent_dim, seed):
    """Encoder x (N, 784) -> h (N, 256); head h -> (mu, logvar), each (N, z); decoder
    z (N, z) -> logits (N, 784) of the Bernoulli pixels."""
    kw = dict(dtype=np.float32)
    encoder = Sequential(Dense(784, 256, seed=seed, **kw), ReLU())
    head = GaussianHead(256, latent_dim, seed=seed + 1, **kw)
    decoder = Sequential(Dense(latent_dim, 256, seed=seed + 2, **kw), ReLU(),
                         Dense(256, 784, seed=seed + 3, **kw))
    return encoder, head, decoder


def negative_elbo(model, x, eps):
    """Forward pass: per image (N,) the reconstruction term -log p(x|z) and KL(q(z|x) || p(z)),
    in nats, and the caches the backward pass needs."""
    encoder, head, decoder = model
    mu, logvar = head.forward(encoder.forward(x))
    z, z_cache = reparameterize_forward(mu, logvar, eps)
    nll, nll_cache = bernoulli_nll(decoder.forward(z), x)
    kl, kl_cache = kl_standard_normal_forward(mu, logvar)
    return nll, kl, (z_cache, nll_cache, kl_cache)


def backward(model, caches, n):
    """Gradient of the batch mean of nll + kl, into every layer's ``grads``."""
    encoder, head, decoder = model
    z_cache, nll_cache, kl_cache = caches
    d = np.full(n, 1.0 / n, dtype=np.float32)  # d(mean) / d(each image's loss)
    dz = decoder.backward(bernoulli_nll_backward(d, nll_cache))
    dmu, dlogvar = reparameterize_backward(dz, z_cache)  # through z = mu + sigma * eps
    dmu_kl, dlogvar_kl = kl_standard_normal_backward(d, kl_cache)  # and through the KL
    encoder.backward(head.backward(dmu + dmu_kl, dlogvar + dlogvar_kl))


def parameters(model):
    """Every parameter and its gradient, under a unique name, for the optimizer."""
    params, grads = {}, {}
    for i, part in enumerate(model):
        params.update({f"{i}.{k}": v for k, v in part.params.items()})
        grads.update({f"{i}.{k}": v for k, v in part.grads.items()})
    return params, grads


def evaluate(model, x, rng, batch=1000):
    """Test loss, nats per image: the negative ELBO with one noise draw per image."""
    total = 0.0
    for start in range(0, len(x), batch):
        xb = x[start:start + batch]
        eps = rng.standard_normal((len(xb), model[1].latent_dim)).astype(np.float32)
        nll, kl, _ = negative_elbo(model, xb, eps)
        total += float(np.sum(nll + kl))
    return total / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="score the first N test images")
    p.add_argument("--data-dir", default=None, help="the MNIST files (default: download or cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="vae_samples.png", help="a grid of decoded samples")
    args = p.parse_args()

    def images(split, limit):  # uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]
        return (load_split(split, "mnist", args.data_dir)[0][:limit].reshape(-1, 784) / 255).astype(
            np.float32)

    train_x, test_x = images("train", args.train_limit), images("test", args.test_limit)
    model = build(args.latent_dim, args.seed)
    opt = Adam(*parameters(model), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        order, total = rng.permutation(len(train_x)), 0.0
        for start in range(0, len(order), args.batch_size):
            x = train_x[order[start:start + args.batch_size]]
            eps = rng.standard_normal((len(x), args.latent_dim)).astype(np.float32)
            nll, kl, caches = negative_elbo(model, x, eps)
            backward(model, caches, len(x))
            opt.step()
            total += float(np.sum(nll + kl))
        test = evaluate(model, test_x, np.random.default_rng(1))
        print(f"epoch {epoch + 1}: train {total / len(train_x):.1f} test {test:.1f} nats per image")
    save_samples(model, args.out, np.random.default_rng(2))


def save_samples(model, path, rng):
    """Decode 64 draws of z ~ N(0, I) and save them as an 8 x 8 grid of pixel probabilities."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no sample grid (pip install matplotlib)")
        return
    z = rng.standard_normal((64, model[1].latent_dim)).astype(np.float32)
    probs = sigmoid(model[2].forward(z, training=False))
    grid = probs.reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
    plt.imsave(path, grid, cmap="gray")
    print(f"samples: {path}")


if __name__ == "__main__":
    main()
