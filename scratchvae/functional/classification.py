"""Softmax cross-entropy: the loss of a K-way classifier on its raw scores (logits), and
its gradient with respect to those logits. Derivation: docs/layers.md#softmax-cross-entropy.

    loss_n = -log softmax(logits_n)[y_n] = logsumexp(logits_n) - logits_n[y_n]
    dlogits_n = dloss_n * (softmax(logits_n) - onehot(y_n))

The log-sum-exp subtracts each row's maximum first, so no ``exp`` sees a positive
argument: the loss stays finite for any finite logits (1e4 included, float32 too).
"""
import numpy as np

from ..backend import backend_of, get_array_module, to_device


def _check_labels(logits, labels):
    """Validate ``logits`` (N, K) float and ``labels`` (N,) integer in [0, K); return the
    labels as int64 on the logits' backend and whether their range is still unchecked.
    Raises ``ValueError`` saying what to fix.

    Host (NumPy) labels are range-checked on the host. Labels already on the GPU are not:
    reading their minimum and maximum back would stop the GPU twice every classifier step.
    Their out-of-range rows get a NaN loss instead, which the caller's next loss read sees."""
    shape = getattr(logits, "shape", None)
    if shape is None or len(shape) != 2 or np.dtype(logits.dtype).kind != "f":
        raise ValueError(
            "softmax_cross_entropy: logits must be a float array of shape (N, K), got "
            f"{type(logits).__name__} of shape {shape} and dtype {getattr(logits, 'dtype', None)}"
        )
    n, k = shape
    if k < 1:
        raise ValueError(f"softmax_cross_entropy: logits of shape {tuple(shape)} have no class (K = 0)")
    lshape = getattr(labels, "shape", None)
    if lshape is None or tuple(lshape) != (n,):
        raise ValueError(
            f"softmax_cross_entropy: labels must have shape ({n},), one class index per row of "
            f"the logits {tuple(shape)}; got shape {None if lshape is None else tuple(lshape)}"
        )
    if np.dtype(labels.dtype).kind not in "iu":
        raise ValueError(
            f"softmax_cross_entropy: labels must be integer class indices, got dtype {labels.dtype}; "
            "convert them with labels.astype(np.int64) (after checking they are whole numbers)"
        )
    on_host = backend_of(labels) == "numpy"
    if n and on_host:
        low, high = int(np.min(labels)), int(np.max(labels))  # host values: no device sync
        if low < 0 or high >= k:
            raise ValueError(
                f"softmax_cross_entropy: labels must lie in [0, {k - 1}] for {k} classes, got values "
                f"from {low} to {high}; check that the labels match the classifier's classes"
            )
    return to_device(labels, backend_of(logits)).astype(np.int64, copy=False), not on_host


def softmax_cross_entropy_forward(logits, labels):
    """Cross-entropy of a softmax over K classes, per sample, in nats.

    loss_n = logsumexp_k(logits_nk) - logits_{n, y_n}, with
    logsumexp(a) = max(a) + log(sum_k exp(a_k - max(a))).

    Parameters
    ----------
    logits : (N, K) float, raw class scores (numpy or cupy)
    labels : (N,) integer class indices in [0, K) (moved to the logits' backend)

    Returns
    -------
    loss : (N,), dtype of ``logits``
    cache : (probs (N, K) = softmax(logits), labels (N,) int64)
    """
    labels, unchecked = _check_labels(logits, labels)
    xp = get_array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)  # every entry <= 0: exp cannot overflow
    log_norm = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))  # in [0, log K]
    log_probs = shifted - log_norm
    if not unchecked:
        loss = -log_probs[xp.arange(logits.shape[0]), labels]  # row n, column y_n
        return loss, (xp.exp(log_probs), labels)
    valid = (labels >= 0) & (labels < logits.shape[1])  # device labels: checked without a sync
    loss = -log_probs[xp.arange(logits.shape[0]), xp.where(valid, labels, 0)]
    return xp.where(valid, loss, xp.nan), (xp.exp(log_probs), labels)


def softmax_cross_entropy_backward(dloss, cache):
    """dlogits = dloss[:, None] * (softmax(logits) - onehot(labels)), shape (N, K).

    ``dloss`` (N,) is d(objective)/d(loss_n); for the batch mean it is 1/N everywhere.
    """
    probs, labels = cache
    xp = get_array_module(probs)
    onehot = xp.arange(probs.shape[1])[None, :] == labels[:, None]  # (N, K) bool
    return dloss[:, None] * (probs - onehot)
