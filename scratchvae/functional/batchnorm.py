"""Batch normalization. Derivation: docs/layers.md#batchnorm.

Statistics are taken per feature over every other axis: over N for (N, F)
input and over N, H, W for (N, C, H, W) input. ``axes`` names those axes and
``shape`` broadcasts a per-feature vector against the input.

Training (batch statistics, m = number of values per feature):
    mu = mean(x), var = mean((x - mu)^2)  (biased, as in the normalization)
    xhat = (x - mu) / sqrt(var + eps),  y = gamma * xhat + beta
Evaluation (running statistics): y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
"""
from ..backend import get_array_module


def _reduce_axes(x):
    """Axes reduced per feature, and the broadcast shape of a per-feature vector."""
    if x.ndim == 2:
        return (0,), (1, x.shape[1])
    return (0, 2, 3), (1, x.shape[1], 1, 1)


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode batch norm.

    Parameters
    ----------
    x : (N, F) or (N, C, H, W)
    gamma, beta : (F,) or (C,)

    Returns
    -------
    y : same shape as x
    cache : also carries ``mean`` and biased ``var`` (per feature) for the
        running-statistics update, as ``cache[-2]`` and ``cache[-1]``.
    """
    xp = get_array_module(x)
    axes, shape = _reduce_axes(x)
    mean = x.mean(axis=axes)
    centered = x - mean.reshape(shape)
    var = (centered * centered).mean(axis=axes)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = centered * inv_std.reshape(shape)
    y = gamma.reshape(shape) * xhat + beta.reshape(shape)
    return y, (xhat, gamma, inv_std, mean, var)


def batchnorm_backward(dy, cache):
    """Gradients of training-mode batch norm (batch statistics depend on x).

    dbeta = sum dy;  dgamma = sum dy * xhat
    dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat))
    (sums and means per feature over the reduced axes)
    """
    xhat, gamma, inv_std, _, _ = cache
    axes, shape = _reduce_axes(dy)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    m = dy.size // dy.shape[1]
    dx = (gamma * inv_std).reshape(shape) * (
        dy - (dbeta / m).reshape(shape) - xhat * (dgamma / m).reshape(shape)
    )
    return dx, dgamma, dbeta


def batchnorm_eval_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Evaluation-mode batch norm: a fixed per-feature affine map."""
    xp = get_array_module(x)
    _, shape = _reduce_axes(x)
    inv_std = 1.0 / xp.sqrt(running_var + eps)
    xhat = (x - running_mean.reshape(shape)) * inv_std.reshape(shape)
    y = gamma.reshape(shape) * xhat + beta.reshape(shape)
    return y, (xhat, gamma, inv_std)


def batchnorm_eval_backward(dy, cache):
    """dx = gamma * inv_std * dy;  dgamma = sum dy * xhat;  dbeta = sum dy."""
    xhat, gamma, inv_std = cache
    axes, shape = _reduce_axes(dy)
    dx = dy * (gamma * inv_std).reshape(shape)
    return dx, (dy * xhat).sum(axis=axes), dy.sum(axis=axes)
