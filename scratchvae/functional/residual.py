"""A residual connection, y = f(x) + g(x), as functions. Derivation: docs/layers.md#residual.

``f`` (the body) and ``g`` (the shortcut, the identity when None) are given as their own
forward and backward functions in this package's convention: ``forward(x) -> (out, cache)``
and ``backward(dy, cache) -> dx``. The sum sends ``dy`` unchanged into both branches (the
derivative of a + b is 1 for each), so

    dL/dx = f_backward(dy) + g_backward(dy)   (= f_backward(dy) + dy for the identity)

The ``+ dy`` is why deep residual networks train: the gradient reaches x through the
identity however small f's Jacobian is (lesson 11).
"""


def residual_forward(x, body_forward, shortcut_forward=None):
    """y = body(x) + shortcut(x), or body(x) + x without a shortcut.

    Parameters
    ----------
    x : any shape the branches accept, e.g. (N, C, H, W)
    body_forward, shortcut_forward : ``x -> (out, cache)``; their outputs must have one shape

    Returns
    -------
    y : the branches' output shape
    cache : (body cache, shortcut cache or None)
    """
    body_out, body_cache = body_forward(x)
    if shortcut_forward is None:
        short_out, short_cache = x, None
    else:
        short_out, short_cache = shortcut_forward(x)
    if tuple(body_out.shape) != tuple(short_out.shape):
        raise ValueError(f"residual: the body gives shape {tuple(body_out.shape)} but the shortcut "
                         f"gives {tuple(short_out.shape)}; add a shortcut that maps x to the body's "
                         "output shape")
    return body_out + short_out, (body_cache, short_cache)


def residual_backward(dy, cache, body_backward, shortcut_backward=None):
    """dx = body_backward(dy) + shortcut_backward(dy)  (+ dy itself for the identity).

    ``body_backward`` and ``shortcut_backward`` are ``(dy, cache) -> dx``.
    """
    body_cache, short_cache = cache
    dx_body = body_backward(dy, body_cache)
    if shortcut_backward is None:
        return dx_body + dy
    return dx_body + shortcut_backward(dy, short_cache)
