"""BatchNorm1d and BatchNorm2d with PyTorch's running-statistics convention.
Math in ``functional/batchnorm.py``."""
from ..functional import batchnorm as F  # F.name at call time: exercises swap in a learner's pair
from .base import Layer


class _BatchNorm(Layer):
    """Shared by BatchNorm1d (input (N, F)) and BatchNorm2d (input (N, C, H, W)).

    Parameters ``gamma`` (ones) and ``beta`` (zeros), shape (F,). Buffers
    ``running_mean`` (zeros) and ``running_var`` (ones). In training the batch
    statistics normalize and the buffers move as PyTorch's do:
    running = (1 - momentum) * running + momentum * batch_stat, with the
    *unbiased* batch variance. In evaluation the buffers normalize.
    """

    rank = None

    def __init__(self, num_features, momentum=0.1, eps=1e-5, *, dtype=None, seed=None, rng=None,
                 backend=None):
        super().__init__(dtype=dtype, seed=seed, rng=rng, backend=backend)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{self._name()}: momentum must be in [0, 1], got {momentum}")
        if eps <= 0:
            raise ValueError(f"{self._name()}: eps must be positive, got {eps}")
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        xp, n = self.xp, self.num_features
        self.add_param("gamma", xp.ones(n, dtype=self.dtype))
        self.add_param("beta", xp.zeros(n, dtype=self.dtype))
        self.buffers["running_mean"] = xp.zeros(n, dtype=self.dtype)
        self.buffers["running_var"] = xp.ones(n, dtype=self.dtype)

    def forward(self, x, training=True):
        self.check_input(x, self.rank, self.num_features, "features")
        g, b = self.params["gamma"], self.params["beta"]
        if not training:
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            y, cache = F.batchnorm_eval_forward(x, g, b, rm, rv, self.eps)
            return self.remember((False, cache), y)
        m = x.size // x.shape[1]
        if m < 2:
            raise ValueError(
                f"{self._name()}: training needs more than one value per feature, got input of "
                f"shape {tuple(x.shape)}; use a batch of 2 or more, or forward(x, training=False)"
            )
        y, cache = F.batchnorm_forward(x, g, b, self.eps)
        mean, var = cache[-2], cache[-1]
        mom = self.momentum
        rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
        rm[...] = (1 - mom) * rm + mom * mean
        rv[...] = (1 - mom) * rv + mom * var * (m / (m - 1))
        return self.remember((True, cache), y)

    def backward(self, dy):
        training, cache = self.take_cache(dy)
        step = F.batchnorm_backward if training else F.batchnorm_eval_backward
        dx, dgamma, dbeta = step(dy, cache)
        self.set_grads(gamma=dgamma, beta=dbeta)
        return dx

    def __repr__(self):
        return f"{self._name()}({self.num_features}, momentum={self.momentum}, eps={self.eps})"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, F) input, per feature."""

    rank = 2


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) input, per channel (statistics over N, H, W)."""

    rank = 4
