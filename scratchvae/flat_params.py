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
    elif hasattr(model, "_children"):  # VAE, GaussianHead, Classifier
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
    total = sum(holder.params[name].size for holder, name in entries)
    params_buffer = xp.empty(total, dtype=first.dtype)
    grads_buffer = xp.empty(total, dtype=first.dtype)
    offset = 0
    for holder, name in entries:
        p, g = holder.params[name], holder.grads[name]
        end = offset + p.size
        params_buffer[offset:end] = p.ravel()
        grads_buffer[offset:end] = g.ravel()
        holder.params[name] = params_buffer[offset:end].reshape(p.shape)
        holder.grads[name] = grads_buffer[offset:end].reshape(p.shape)
        offset = end
    return params_buffer, grads_buffer


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
