"""The VAE: encoder -> Gaussian head -> reparameterization -> decoder -> likelihood.

Loss per batch (nats per image, averaged over the batch):

    loss = mean_n [ -log p(x_n | z_n) + beta * KL_n ],   z_n = mu_n + sigma_n * eps_n

With beta = 1 this is the negative ELBO. With ``free_bits`` > 0 the KL in the loss is the
free-bits objective sum_d max(free_bits, mean_n KL_nd) instead, while the reported ``kl``
stays the true KL. ``backward`` runs every piece's hand-written backward in reverse; the
derivations are in docs/vae.md.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..backend import Generator, backend_of, resolve_dtype, to_device
from ..functional import latent as F
from ..layers.base import Composite, gather, iter_layers
from ..flat_params import flatten_parameters, shared_buffer
from ..layers.sequential import Sequential

KL_ESTIMATORS = ("analytic", "mc")


class ELBOTerms(NamedTuple):
    """What ``VAE.forward`` returns: 0-d arrays on the model's backend (no host sync).

    ``loss`` = ``recon`` + beta * ``kl``; all are means over the batch, in nats per image.
    With free bits, ``loss`` = ``recon`` + beta * sum_d max(free_bits, KL_d), the objective
    that is minimized, while ``kl`` is still the true KL, so ``recon + kl`` is always the
    (one-sample) negative ELBO. ``float(terms)`` gives the loss as a Python float.
    """

    loss: object
    recon: object
    kl: object

    def __float__(self):
        return float(self.loss)


class VAE(Composite):
    """A VAE assembled from an encoder, a Gaussian head, a decoder and a likelihood.

    Parameters are gathered under dotted names: ``encoder.0.W``, ``head.mu.W``,
    ``decoder.3.b``, ``likelihood.log_scale``. Build one with
    ``scratchvae.models.build_vae``. ``free_bits`` > 0 (nats per latent dimension, analytic
    KL only) trains with the free-bits KL; 0 is the plain ELBO.
    """

    def __init__(self, encoder, head, decoder, likelihood, *, rng, image_shape=(1, 28, 28),
                 beta=1.0, kl="analytic", dtype=None, name="custom", free_bits=0.0):
        if kl not in KL_ESTIMATORS:
            raise ValueError(f"kl must be one of {KL_ESTIMATORS}, got {kl!r}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if not (free_bits >= 0 and math.isfinite(free_bits)):
            raise ValueError(f"free_bits must be a finite number >= 0 (nats per latent dimension), "
                             f"got {free_bits}")
        if free_bits > 0 and kl != "analytic":
            raise ValueError(f"free_bits needs the analytic KL (its floor applies to each "
                             f"dimension's batch-mean KL), got kl={kl!r}")
        self.encoder, self.head, self.decoder, self.likelihood = encoder, head, decoder, likelihood
        self.rng, self.image_shape, self.beta, self.kl = rng, tuple(image_shape), float(beta), kl
        self.free_bits = float(free_bits)
        self.dtype, self.name = resolve_dtype(dtype), name
        self.latent_dim = head.latent_dim
        self._cache = None

    # -- parameters ----------------------------------------------------------
    def _children(self):
        return (("encoder", self.encoder), ("head", self.head), ("decoder", self.decoder),
                ("likelihood", self.likelihood))

    @property
    def buffers(self):
        return gather(self._children()[:3], "buffers")

    @property
    def backend(self):
        return self.rng.backend

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # -- training ------------------------------------------------------------
    def _check_images(self, x):
        shape = getattr(x, "shape", None)
        size = int(np.prod(self.image_shape))
        if shape is None or len(shape) < 2 or int(np.prod(shape[1:])) != size:
            raise ValueError(
                f"VAE {self.name!r}: expected images of shape (N, {', '.join(map(str, self.image_shape))})"
                f" or (N, {size}), got {None if shape is None else tuple(shape)}"
            )
        if np.dtype(x.dtype) != self.dtype or backend_of(x) != self.backend:
            raise ValueError(
                f"VAE {self.name!r}: expected a {self.dtype.name} {self.backend} array, got "
                f"{np.dtype(x.dtype).name} {backend_of(x)}; convert with "
                f"scratchvae.backend.to_device(x, {self.backend!r}, dtype={self.dtype.name!r})"
            )
        return x.reshape((shape[0],) + self.image_shape)

    def _check_eps(self, eps, shape):
        if tuple(getattr(eps, "shape", ())) != shape:
            raise ValueError(
                f"VAE {self.name!r}: eps must have shape {shape} (batch, latent_dim), "
                f"got {getattr(eps, 'shape', type(eps).__name__)}"
            )
        if np.dtype(eps.dtype) != self.dtype or backend_of(eps) != self.backend:
            raise ValueError(
                f"VAE {self.name!r}: eps must be a {self.dtype.name} {self.backend} array, got "
                f"{np.dtype(eps.dtype).name} {backend_of(eps)}"
            )

    def forward(self, x, eps=None, training=True) -> ELBOTerms:
        """Loss of a batch and its parts; keeps what ``backward`` needs.

        Parameters
        ----------
        x : (N, C, H, W) or (N, C*H*W) images on the model's backend and dtype
        eps : (N, latent_dim) standard normal noise; drawn from the model's generator if None
        training : dropout on and batch statistics in batch norm; False makes
            the loss a deterministic function of the parameters given ``eps``
        """
        images = self._check_images(x)
        n = images.shape[0]
        h = self.encoder.forward(images, training=training)
        mu, logvar = self.head.forward(h, training=training)
        if eps is None:
            eps = self.rng.normal(mu.shape, dtype=self.dtype)
        self._check_eps(eps, tuple(mu.shape))
        z, reparam_cache = F.reparameterize_forward(mu, logvar, eps)
        out = self.decoder.forward(z, training=training)
        nll = self.likelihood.nll(out, images)
        if self.kl == "analytic":
            kl, kl_cache = F.kl_standard_normal_forward(mu, logvar)
        else:
            kl, kl_cache = F.kl_monte_carlo_forward(z, mu, logvar)
        recon, kl_mean = nll.mean(), kl.mean()
        if self.free_bits > 0:  # the loss (and backward) use the floored KL; kl stays the true one
            kl_objective, kl_cache = F.kl_free_bits_forward(mu, logvar, self.free_bits)
            self._cache = (n, reparam_cache, kl_cache)
            return ELBOTerms(recon + self.beta * kl_objective.mean(), recon, kl_mean)
        self._cache = (n, reparam_cache, kl_cache)
        return ELBOTerms(recon + self.beta * kl_mean, recon, kl_mean)

    def backward(self, dloss=1.0, beta=None):
        """Fill ``grads`` for every parameter with d(dloss * loss)/d(param) of the last forward.

        ``beta`` weights the KL in this gradient instead of the model's ``beta`` (KL warm-up
        passes a growing one, ``scratchvae.training.kl_warmup_beta``); None uses the model's.
        """
        if self._cache is None:
            raise ValueError(f"VAE {self.name!r}: backward called before forward")
        n, reparam_cache, kl_cache = self._cache
        xp = self.rng.xp
        beta = self.beta if beta is None else float(beta)
        dnll = xp.full((n,), 1.0 / n, dtype=self.dtype) * dloss
        dkl = xp.full((n,), beta / n, dtype=self.dtype) * dloss
        dz = self.decoder.backward(self.likelihood.backward(dnll))
        if self.free_bits > 0:
            dmu_kl, dlogvar_kl = F.kl_free_bits_backward(dkl, kl_cache)
        elif self.kl == "analytic":
            dmu_kl, dlogvar_kl = F.kl_standard_normal_backward(dkl, kl_cache)
        else:
            dz_kl, dmu_kl, dlogvar_kl = F.kl_monte_carlo_backward(dkl, kl_cache)
            dz = dz + dz_kl
        dmu, dlogvar = F.reparameterize_backward(dz, reparam_cache)
        dh = self.head.backward(dmu + dmu_kl, dlogvar + dlogvar_kl)
        if isinstance(self.encoder, Sequential):  # the images need no gradient
            self.encoder.backward(dh, input_grad=False)
        else:
            self.encoder.backward(dh)

    # -- using a trained model -------------------------------------------------
    def encode(self, x):
        """(mu, logvar) of q(z|x), each (N, latent_dim); evaluation mode."""
        return self.head.forward(self.encoder.forward(self._check_images(x), training=False), False)

    def decode(self, z):
        """Image means (N, C, H, W) for latent codes z (N, latent_dim); evaluation mode."""
        return self.likelihood.mean(self.decoder.forward(z, training=False))

    def sample(self, n):
        """``n`` images decoded from z ~ N(0, I) drawn with the model's generator."""
        return self.decode(self.rng.normal((int(n), self.latent_dim), dtype=self.dtype))

    def reconstruct(self, x):
        """Decode the posterior mean of each image: decode(mu(x))."""
        return self.decode(self.encode(x)[0])

    def to_backend(self, backend):
        """Move every array to ``backend`` (returns self)."""
        flat = shared_buffer(self.params.values()) is not None
        for _, child in self._children()[:3]:
            child.to_backend(backend)
        for k, v in self.likelihood.params.items():
            self.likelihood.params[k] = to_device(v, backend)
            self.likelihood.grads[k] = to_device(self.likelihood.grads[k], backend)
        self.rng = Generator(self.rng.seed, backend)
        for layer in iter_layers(self):  # one generator for the whole model, so reseed reaches dropout
            layer.rng = self.rng
        if flat:
            flatten_parameters(self)
        self._cache = None
        return self

    def __repr__(self):
        free_bits = f", free_bits={self.free_bits}" if self.free_bits > 0 else ""
        return (f"VAE({self.name!r}, latent_dim={self.latent_dim}, likelihood="
                f"{self.likelihood.name!r}, beta={self.beta}, kl={self.kl!r}{free_bits}, "
                f"params={self.num_params():,})")

