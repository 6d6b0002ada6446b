"""Residual: y = body(x) + shortcut(x), the identity shortcut when None. Math in
``functional/residual.py``; derivation in docs/layers.md#residual."""
from ..functional.residual import residual_backward, residual_forward
from .base import Composite, Layer, gather


class Residual(Composite, Layer):
    """A skip connection around ``body`` (any layer, usually a ``Sequential``).

    ``shortcut`` maps x to the body's output shape where the two differ (a strided 1x1
    convolution and batch norm, say); None is the identity. Parameters, gradients and
    buffers are gathered under ``"body.<name>"`` and ``"shortcut.<name>"`` (``"body.0.W"``,
    ``"shortcut.1.gamma"``), built on each access from the branches' own dicts.

    Backward sends dy into both branches and adds their input gradients.
    """

    def __init__(self, body, shortcut=None):
        for role, part in (("body", body), ("shortcut", shortcut)):
            if part is not None and not isinstance(part, Layer):
                raise TypeError(f"Residual: {role} is a {type(part).__name__}, not a Layer")
        self.body, self.shortcut = body, shortcut
        self._cache = None

    def _children(self):
        return (("body", self.body),) + ((("shortcut", self.shortcut),) if self.shortcut else ())

    @property
    def buffers(self):
        return gather(self._children(), "buffers")

    def forward(self, x, training=True):
        shortcut = None if self.shortcut is None else (
            lambda a: (self.shortcut.forward(a, training=training), None))
        y, self._cache = residual_forward(x, lambda a: (self.body.forward(a, training=training), None),
                                          shortcut)
        return y

    skips_input_grad = True  # passed on to both branches

    def backward(self, dy, input_grad=True):
        """dL/dx = body's dx + shortcut's dx (+ dy for the identity); parameter gradients into
        both branches. ``input_grad=False`` returns None and asks each branch to skip its own."""
        if self._cache is None:
            raise ValueError("Residual: backward called before forward; run forward(x) first")
        if not input_grad:
            for _, part in self._children():
                if part.skips_input_grad:
                    part.backward(dy, input_grad=False)
                else:
                    part.backward(dy)
            return None
        shortcut = None if self.shortcut is None else (lambda g, _: self.shortcut.backward(g))
        return residual_backward(dy, self._cache, lambda g, _: self.body.backward(g), shortcut)

    def zero_grad(self):
        for _, part in self._children():
            part.zero_grad()

    def to_backend(self, backend):
        for _, part in self._children():
            part.to_backend(backend)
        return self

    def __repr__(self):
        body = "\n  ".join(repr(self.body).splitlines())
        short = "identity" if self.shortcut is None else "\n  ".join(repr(self.shortcut).splitlines())
        return f"Residual(\n  body={body}\n  shortcut={short}\n)"
