"""Inverted dropout. Derivation: docs/layers.md#dropout.

Training: y = x * m / (1 - p) with m_i ~ Bernoulli(1 - p), so E[y] = x and
evaluation needs no rescaling. The mask is an argument, not drawn here, so the
function is deterministic and testable; the layer draws it from its generator.
"""


def dropout_forward(x, mask, p):
    """Apply a keep-mask.

    Parameters
    ----------
    x : any shape
    mask : same shape as x, 1 where a unit is kept and 0 where it is dropped
    p : drop probability in [0, 1)
    """
    scaled = mask * (1.0 / (1.0 - p))
    scaled = scaled.astype(x.dtype, copy=False)
    return x * scaled, scaled


def dropout_backward(dy, scaled_mask):
    """dx = dy * m / (1 - p): the same mask the forward used."""
    return dy * scaled_mask
