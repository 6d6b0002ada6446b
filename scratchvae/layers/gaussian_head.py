"""The Gaussian posterior head: encoder features -> (mu, logvar) of q(z|x)."""
from ..backend import as_generator
from .base import Composite
from .dense import Dense


class GaussianHead(Composite):
    """Two dense maps from features (N, F) to ``mu`` (N, D) and ``logvar`` (N, D).

    Parameters: ``mu.W`` (F, D), ``mu.b`` (D,), ``logvar.W`` (F, D), ``logvar.b`` (D,).
    ``forward`` returns the pair; ``backward(dmu, dlogvar)`` returns d features,
    the sum of both branches' input gradients.
    """

    def __init__(self, in_features, latent_dim, *, dtype=None, seed=None, rng=None, backend=None):
        rng = as_generator(rng if rng is not None else seed, backend or "numpy")
        self.mu = Dense(in_features, latent_dim, dtype=dtype, rng=rng)
        self.logvar = Dense(in_features, latent_dim, dtype=dtype, rng=rng)
        self.in_features, self.latent_dim = int(in_features), int(latent_dim)

    def _children(self):
        return (("mu", self.mu), ("logvar", self.logvar))

    @property
    def buffers(self):
        return {}

    def forward(self, h, training=True):
        return self.mu.forward(h, training), self.logvar.forward(h, training)

    def backward(self, dmu, dlogvar):
        return self.mu.backward(dmu) + self.logvar.backward(dlogvar)

    def to_backend(self, backend):
        self.mu.to_backend(backend)
        self.logvar.to_backend(backend)
        return self

    def __repr__(self):
        return f"GaussianHead({self.in_features}, {self.latent_dim})"
