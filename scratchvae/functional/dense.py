"""Dense (fully connected) layer: y = x @ W + b. Derivation: docs/layers.md#dense."""


def dense_forward(x, W, b):
    """Affine map of a batch.

    Parameters
    ----------
    x : (N, in)
    W : (in, out)
    b : (out,)

    Returns
    -------
    y : (N, out), equal to ``x @ W + b``
    cache : what ``dense_backward`` needs
    """
    return x @ W + b, (x, W)


def dense_backward(dy, cache, input_grad=True):
    """Gradients of the dense layer.

    dx = dy @ W.T (N, in);  dW = x.T @ dy (in, out);  db = sum_n dy (out,)

    ``input_grad=False`` skips dx (returned as None): a network's first layer has no use for
    the gradient with respect to the data.
    """
    x, W = cache
    return (dy @ W.T if input_grad else None), x.T @ dy, dy.sum(axis=0)
