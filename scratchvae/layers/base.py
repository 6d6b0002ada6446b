"""The ``Layer`` protocol shared by every layer, and the checks that turn bad
input into clear errors.

A layer holds three dicts of arrays:

* ``params``: what the optimizer updates (writing into ``params[name][...]``
  changes the weights the next forward uses);
* ``grads``: same names and shapes; ``backward`` *overwrites* them in place
  with the gradient of the last forward's input batch (no accumulation, so no
  ``zero_grad`` is needed between steps);
* ``buffers``: state that is not trained (batch norm's running statistics).

``forward(x, training=True)`` keeps what backward needs; ``backward(dy)``
returns dx and fills ``grads``. Neither modifies its argument.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import (
    DEFAULT_BACKEND,
    Generator,
    as_generator,
    backend_of,
    resolve_dtype,
    to_device,
)


class Layer:
    """Base class: parameter bookkeeping, input checks and the forward/backward contract."""

    #: True where ``backward(dy, input_grad=False)`` computes the parameter gradients alone
    skips_input_grad = False

    def __init__(self, dtype=None, seed=None, rng=None, backend=None):
        self.dtype = resolve_dtype(dtype)
        self.rng = _make_generator(seed, rng, backend)
        self.backend = self.rng.backend
        self.xp = self.rng.xp
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self._cache = None
        self._out_shape = None

    # -- the contract -------------------------------------------------------
    def forward(self, x, training=True):
        """Compute the output and keep what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dy):
        """Return dL/dx for the last forward and fill ``grads``."""
        raise NotImplementedError

    def __call__(self, x, training=True):
        return self.forward(x, training=training)

    # -- parameters ----------------------------------------------------------
    def add_param(self, name, value):
        """Register a parameter and a zero gradient of the same shape and dtype."""
        self.params[name] = value
        self.grads[name] = self.xp.zeros_like(value)

    def set_grads(self, **grads):
        """Overwrite ``grads`` in place, so references held elsewhere stay valid."""
        for name, g in grads.items():
            self.grads[name][...] = g

    def zero_grad(self):
        """Fill every gradient with zeros (backward overwrites, so this is optional)."""
        for g in self.grads.values():
            g[...] = 0

    def num_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def to_backend(self, backend: str):
        """Move parameters, gradients and buffers to ``backend`` (returns self)."""
        for d in (self.params, self.grads, self.buffers):
            for k in d:
                d[k] = to_device(d[k], backend)
        self.rng = Generator(self.rng.seed, backend)
        self.backend, self.xp = backend, self.rng.xp
        self._cache = None
        return self

    def uniform_init(self, shape, fan_in):
        """PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        bound = 1.0 / math.sqrt(fan_in)
        return self.rng.uniform(shape, -bound, bound, dtype=self.dtype)

    # -- checks --------------------------------------------------------------
    def _name(self) -> str:
        return type(self).__name__

    def check_input(self, x, expected_rank_or_ranks, features=None, feature_desc="channels"):
        """Raise ``ValueError`` for a non-array, wrong rank, dtype, backend or feature count."""
        name = self._name()
        ranks = (
            (expected_rank_or_ranks,)
            if isinstance(expected_rank_or_ranks, int)
            else tuple(expected_rank_or_ranks)
        )
        shape = getattr(x, "shape", None)
        if shape is None or not hasattr(x, "dtype"):
            raise ValueError(f"{name}: expected an array, got {type(x).__name__}")
        if len(shape) not in ranks:
            want = " or ".join(_rank_desc(r) for r in ranks)
            raise ValueError(f"{name}: expected input of shape {want}, got shape {tuple(shape)}")
        if np.dtype(x.dtype).kind != "f":
            raise ValueError(
                f"{name}: expected a float array, got dtype {x.dtype} with shape {tuple(shape)}; "
                f"convert with x.astype({self.dtype.name!r})"
            )
        if self.params and np.dtype(x.dtype) != self.dtype:
            raise ValueError(
                f"{name}: parameters are {self.dtype.name} but input is {np.dtype(x.dtype).name} "
                f"(shape {tuple(shape)}); convert with x.astype({self.dtype.name!r})"
            )
        if (self.params or self.buffers) and backend_of(x) != self.backend:
            raise ValueError(
                f"{name}: input is a {backend_of(x)} array but the layer lives on "
                f"{self.backend}; move it with scratchvae.backend.to_device(x, {self.backend!r})"
            )
        if features is not None and shape[1] != features:
            raise ValueError(
                f"{name}: expected {features} {feature_desc} (axis 1), got shape {tuple(shape)}"
            )

    def remember(self, cache, out):
        """Keep the cache and output shape for backward; return ``out``."""
        self._cache = cache
        self._out_shape = tuple(out.shape)
        return out

    def take_cache(self, dy):
        """The cache of the last forward, after checking ``dy`` matches its output."""
        name = self._name()
        if self._cache is None:
            raise ValueError(f"{name}: backward called before forward; run forward(x) first")
        shape = getattr(dy, "shape", None)
        if shape is None or tuple(shape) != self._out_shape:
            raise ValueError(
                f"{name}: backward expected dy of shape {self._out_shape} (the forward output), "
                f"got {None if shape is None else tuple(shape)}"
            )
        return self._cache

    def __repr__(self) -> str:
        return f"{self._name()}()"


def _rank_desc(rank: int) -> str:
    return {1: "(N,)", 2: "(N, F)", 3: "(N, C, L)", 4: "(N, C, H, W)"}.get(rank, f"rank {rank}")


def _make_generator(seed, rng, backend) -> Generator:
    """Resolve the ``seed``/``rng``/``backend`` constructor arguments to one generator."""
    if seed is not None and rng is not None:
        raise ValueError("give either seed= or rng=, not both")
    source = rng if rng is not None else seed
    gen = as_generator(source, backend or DEFAULT_BACKEND)
    if backend is not None and gen.backend != backend:
        raise ValueError(
            f"the generator lives on {gen.backend!r} but backend={backend!r} was asked for"
        )
    return gen



def gather(children, attr):
    """Merge ``attr`` dicts ("params", "grads", "buffers") of named children under dotted names.

    ``children`` is an iterable of ``(name, obj)``; returns ``{"name.key": array}``
    holding the children's own array objects (nothing is copied).
    """
    return {f"{name}.{k}": v for name, child in children for k, v in getattr(child, attr).items()}


class Composite:
    """A model made of named parts: subclasses define ``_children()`` (``(name, part)`` pairs)
    and get ``params`` and ``grads`` gathered under dotted names, e.g. ``"head.mu.W"``."""

    def _children(self):
        raise NotImplementedError

    @property
    def params(self):
        return gather(self._children(), "params")

    @property
    def grads(self):
        return gather(self._children(), "grads")


def iter_layers(model):
    """Every ``Layer`` inside a layer, a ``Sequential``, a ``GaussianHead`` or a ``VAE``."""
    if hasattr(model, "layers"):  # Sequential
        for layer in model.layers:
            yield from iter_layers(layer)
    elif hasattr(model, "_children"):  # VAE, GaussianHead, Residual
        for _, child in model._children():
            yield from iter_layers(child)
    elif isinstance(model, Layer):
        yield model
