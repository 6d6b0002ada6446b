"""Named VAE architectures and the model class. ``build_vae`` is the entry point."""
from ..backend import Generator, resolve_dtype
from ..flat_params import flatten_parameters
from ..layers import GaussianHead
from ..likelihoods import LIKELIHOODS, make_likelihood
from .architectures import ARCHITECTURES, architecture
from .vae import KL_ESTIMATORS, VAE, ELBOTerms


def build_vae(name, latent_dim=None, likelihood=None, beta=1.0, *, dtype=None, seed=0,
              backend="numpy", kl=None, variance=0.5, free_bits=0.0, options=None):
    """Build a named VAE.

    Parameters
    ----------
    name : one of ``ARCHITECTURES`` ("paper-mlp", "paper-conv", "tutorial-mlp", "nll-conv",
        "resnet18-vae")
    latent_dim : size of z (the architecture's default if None)
    likelihood : one of ``LIKELIHOODS`` (the architecture's default if None)
    beta : weight of the KL term (1 = the ELBO; beta-VAE otherwise)
    dtype : float32 (default) or float64
    seed : seeds the weights, the dropout masks and the noise
    backend : "numpy" or "cupy", where every array is created
    kl : "analytic" (closed form) or "mc" (single-sample log q - log p); None: the
        architecture's default ("mc" for resnet18-vae, as the tutorial; "analytic" otherwise)
    variance : the fixed variance c of the "gaussian-fixed" likelihood
    free_bits : nats per latent dimension; > 0 trains with the free-bits KL
        sum_d max(free_bits, KL_d) (analytic KL only; docs/vae.md); 0, the default, is the ELBO
    options : keyword arguments for the architecture's function, e.g.
        ``dict(widths=(4, 8, 8, 8), image_size=16)`` for a small resnet18-vae in tests
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}: choose one of {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[name]
    latent_dim = spec["latent_dim"] if latent_dim is None else int(latent_dim)
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
    likelihood = spec["likelihood"] if likelihood is None else likelihood
    kl = spec["defaults"].get("kl", "analytic") if kl is None else kl
    options = dict(options or {})
    image_shape = spec["image_shape"]
    if "image_size" in options:
        image_shape = (image_shape[0], options["image_size"], options["image_size"])
    dtype = resolve_dtype(dtype)
    rng = Generator(seed, backend)
    lik = make_likelihood(likelihood, rng.xp, dtype, variance)
    kw = dict(dtype=dtype, rng=rng)
    out_channels = image_shape[0] * lik.channels_per_pixel
    encoder, features, decoder = spec["build"](latent_dim, out_channels, kw, **options)
    head = GaussianHead(features, latent_dim, **kw)
    vae = VAE(encoder, head, decoder, lik, rng=rng, image_shape=image_shape, beta=beta, kl=kl,
              dtype=dtype, name=name, free_bits=free_bits)
    flatten_parameters(vae)  # one buffer of parameters, one of gradients: Adam updates all at once
    return vae


__all__ = ["ARCHITECTURES", "ELBOTerms", "KL_ESTIMATORS", "LIKELIHOODS", "VAE", "architecture",
           "build_vae"]
