"""Inverted dropout layer. Math in ``functional/dropout.py``."""
from ..backend import backend_of
from ..functional import dropout as F  # F.name at call time: exercises swap in a learner's pair
from .base import Layer


class Dropout(Layer):
    """Zero each unit with probability ``p`` in training and scale the rest by 1/(1-p).

    The keep-mask comes from the layer's generator (``seed=``/``rng=``), lives on
    the generator's backend, and is reused by ``backward``. With
    ``training=False`` the layer is the identity.
    """

    def __init__(self, p=0.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = float(p)

    freeze_pattern = False  # set by scratchvae.gradcheck.frozen_patterns: reuse the last mask

    def forward(self, x, training=True):
        self.check_input(x, (1, 2, 3, 4, 5))
        if not training or self.p == 0.0:
            return self.remember((None,), x)
        if self.freeze_pattern and self._cache is not None and self._cache[0] is not None \
                and self._out_shape == tuple(x.shape):
            (scaled_mask,) = self._cache
            return self.remember((scaled_mask,), x * scaled_mask)
        if backend_of(x) != self.backend:
            raise ValueError(
                f"Dropout: input is a {backend_of(x)} array but the layer's generator lives on "
                f"{self.backend}; build the layer with backend={backend_of(x)!r}"
            )
        mask = _draw_in_layout(self.rng, x, 1.0 - self.p)
        y, scaled_mask = F.dropout_forward(x, mask, self.p)
        return self.remember((scaled_mask,), y)

    def backward(self, dy):
        (scaled_mask,) = self.take_cache(dy)
        if scaled_mask is None:  # identity in evaluation
            return dy
        return F.dropout_backward(dy, scaled_mask)

    def __repr__(self):
        return f"Dropout(p={self.p})"


def _draw_in_layout(rng, x, p_one):
    """A keep-mask shaped like ``x`` whose memory runs in the same axis order as x's.

    Conv layers hand over NCHW-shaped views of channel-major memory (see
    functional/conv.py); a mask in plain NCHW order would make every product with it
    a strided, mixed-layout pass. Drawing the mask in x's axis order keeps
    ``x * mask`` a single contiguous sweep. The draws are a fixed function of the
    generator's state and the (deterministic) layout, so seeding stays exact.
    """
    order = sorted(range(x.ndim), key=lambda a: -x.strides[a])  # outermost axis first
    mask = rng.bernoulli(tuple(x.shape[a] for a in order), p_one, dtype=x.dtype)
    return mask.transpose([order.index(a) for a in range(x.ndim)])
