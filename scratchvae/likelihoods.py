"""Likelihood objects p(x|z): how the decoder's raw output is read.

A likelihood knows how many output channels it needs per data channel
(``channels_per_pixel``), turns the decoder output into the image mean
(``mean``), computes the negative log-likelihood per image in nats (``nll``)
and its gradient (``backward``). Some carry parameters of their own
(``params``/``grads``, e.g. the learned log-scale). The math is in
``functional/likelihoods.py``.
"""
from .backend import get_array_module
from .functional import likelihoods as L
from .functional.activations import sigmoid


class Likelihood:
    name = ""
    channels_per_pixel = 1

    def __init__(self):
        self.params, self.grads = {}, {}
        self._cache = None

    def mean(self, out):
        """Image means from the raw decoder output."""
        raise NotImplementedError

    def nll(self, out, x):
        """-log p(x | out) per image, (N,) nats; keeps what ``backward`` needs."""
        raise NotImplementedError

    def nll_value(self, out, x):
        """``nll`` for scoring, not training: (N,) nats, no cache kept; it may differ from
        ``nll`` by float rounding where a faster form exists (Bernoulli)."""
        value = self.nll(out, x)
        self._cache = None
        return value

    def backward(self, dnll):
        """d(loss)/d(out) from d(loss)/d(nll) (N,); fills ``grads``."""
        raise NotImplementedError

    def _take(self):
        if self._cache is None:
            raise ValueError(f"{type(self).__name__}: backward called before nll")
        return self._cache


class Bernoulli(Likelihood):
    """Pixels ~ Bernoulli(sigmoid(out)); ``out`` are logits. Data in [0, 1]."""

    name = "bernoulli"

    def mean(self, out):
        return sigmoid(out)

    def nll(self, out, x):
        value, self._cache = L.bernoulli_nll(out, x)
        return value

    def nll_value(self, out, x):
        return L.bernoulli_nll_value(out, x)

    def backward(self, dnll):
        return L.bernoulli_nll_backward(dnll, self._take())


class GaussianFixed(Likelihood):
    """Pixels ~ N(out, c) with a fixed variance c (``variance``); C = 1/(2c) weights the squared error."""

    name = "gaussian-fixed"

    def __init__(self, variance=0.5):
        super().__init__()
        if variance <= 0:
            raise ValueError(f"GaussianFixed: variance must be positive, got {variance}")
        self.variance = float(variance)

    def mean(self, out):
        return out

    def nll(self, out, x):
        value, self._cache = L.gaussian_fixed_nll(out, x, self.variance)
        return value

    def backward(self, dnll):
        return L.gaussian_fixed_nll_backward(dnll, self._take())


class GaussianLearnedScale(Likelihood):
    """Pixels ~ N(out, exp(2 s)) with one learned log-scale s, parameter ``log_scale`` (1,), init 0."""

    name = "gaussian-learned-scale"

    def __init__(self, xp, dtype):
        super().__init__()
        self.params["log_scale"] = xp.zeros(1, dtype=dtype)
        self.grads["log_scale"] = xp.zeros(1, dtype=dtype)

    def mean(self, out):
        return out

    def nll(self, out, x):
        value, self._cache = L.gaussian_scale_nll(out, self.params["log_scale"], x)
        return value

    def backward(self, dnll):
        dout, dlog_scale = L.gaussian_scale_nll_backward(dnll, self._take())
        self.grads["log_scale"][...] = dlog_scale
        return dout


class Gaussian(Likelihood):
    """Pixels ~ N(mean, exp(logvar)), both per pixel: the decoder outputs 2 channels per
    data channel, means first, then log-variances (``out[:, :C]``, ``out[:, C:]``)."""

    name = "gaussian"
    channels_per_pixel = 2

    def mean(self, out):
        return out[:, : out.shape[1] // 2]

    def nll(self, out, x):
        c = out.shape[1] // 2
        value, self._cache = L.gaussian_nll(out[:, :c], out[:, c:], x)
        return value

    def backward(self, dnll):
        dmean, dlogvar = L.gaussian_nll_backward(dnll, self._take())
        xp = get_array_module(dmean)
        return xp.concatenate([dmean, dlogvar], axis=1)


LIKELIHOODS = ("bernoulli", "gaussian-fixed", "gaussian-learned-scale", "gaussian")


def make_likelihood(name, xp, dtype, variance=0.5):
    """Build a likelihood by name (one of ``LIKELIHOODS``)."""
    if name == "bernoulli":
        return Bernoulli()
    if name == "gaussian-fixed":
        return GaussianFixed(variance)
    if name == "gaussian-learned-scale":
        return GaussianLearnedScale(xp, dtype)
    if name == "gaussian":
        return Gaussian()
    raise ValueError(f"unknown likelihood {name!r}: choose one of {', '.join(LIKELIHOODS)}")
