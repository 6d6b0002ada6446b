"""One buffer for all parameters, one for all gradients.

``flatten_parameters(model)`` copies every parameter of a model into one contiguous 1-D array
and every gradient into another, and makes each layer's ``params[name]`` and ``grads[name]`` a
view of its slice. Nothing else changes: layers read and write the same numbers through the
views (``backward`` writes gradients in place, optimizers update parameters in place).

What it buys: an optimizer handed ``model.params, model.grads`` can find the two buffers
(``shared_buffer``) and run each operation of its update once over all parameters instead of
once per parameter. Adam's 13 operations stay 13 whatever the number of parameters; on a GPU,
where every operation is a kernel launch costing more than the arithmetic of a small model,
that is 13 launches a step instead of 13 per parameter (lesson 08's exercise counts them).
"""
from __future__ import annotations

from .backend import get_array_module


def _holders(model):
    """The objects that own ``params``/``grads`` dicts, in the order of ``model.params``."""
    if hasattr(model, "layers"):  # Sequential
        for layer in model.layers:
            yield from _holders(layer)
    elif hasattr(model, "_children"):  # VAE, GaussianHead, Classifier, Residual
        for _, child in model._children():
            yield from _holders(child)
    elif getattr(model, "params", None):  # a layer or a likelihood with parameters
        yield model


def flatten_parameters(model):
    """Move every parameter and gradient of ``model`` into two contiguous buffers (in place).

    Returns ``(params_buffer, grads_buffer)``, 1-D arrays whose consecutive slices are the
    parameters (gradients) in ``model.params`` order. Values are copied in unchanged. All
    parameters must share one dtype and one backend.
    """
    entries = [(holder, name) for holder in _holders(model) for name in holder.params]
    if not entries:
        raise ValueError(f"{type(model).__name__} has no parameters to flatten")
    first = entries[0][0].params[entries[0][1]]
    xp = get_array_module(first)
    for holder, name in entries:
        p = holder.params[name]
        if p.dtype != first.dtype or get_array_module(p) is not xp:
            raise ValueError(
                f"flatten_parameters: parameter {name!r} of {type(holder).__name__} is "
                f"{p.dtype} on {xp.__name__ if get_array_module(p) is xp else 'another backend'}, "
                f"the first is {first.dtype}: move the whole model to one dtype and backend first"
            )
    params = [holder.params[name] for holder, name in entries]
    grads = [holder.grads[name] for holder, name in entries]
    params_buffer = xp.concatenate([p.ravel() for p in params])  # fresh, contiguous copies
    grads_buffer = xp.concatenate([g.ravel() for g in grads])
    for (holder, name), p_view, g_view in zip(entries, views_like(params_buffer, params),
                                             views_like(grads_buffer, params)):
        holder.params[name], holder.grads[name] = p_view, g_view
    return params_buffer, grads_buffer


def views_like(buffer, arrays):
    """Consecutive slices of the 1-D ``buffer``, shaped like ``arrays`` in turn."""
    views, offset = [], 0
    for a in arrays:
        views.append(buffer[offset : offset + a.size].reshape(a.shape))
        offset += a.size
    return views


def _address(a):
    """The address of an array's first element (CuPy: ``a.data.ptr``; NumPy: the interface)."""
    ptr = getattr(a.data, "ptr", None)
    return ptr if ptr is not None else a.__array_interface__["data"][0]


def shared_buffer(arrays):
    """The 1-D buffer that ``arrays`` tile exactly, in order and contiguously, or None.

    True of ``model.params.values()`` (and of the gradients) after ``flatten_parameters``;
    a copied, moved or reassigned parameter breaks the tiling and gives None.
    """
    arrays = list(arrays)
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    position = _address(base)
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or _address(a) != position:
            return None
        position += a.nbytes
    return base if position == _address(base) + base.nbytes else None
