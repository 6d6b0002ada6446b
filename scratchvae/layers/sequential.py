"""Sequential: a chain of layers with dotted parameter names ("0.W", "3.b", ...)."""
from .base import Layer, gather


class Sequential(Layer):
    """Run layers in order; backward runs them in reverse.

    ``params``, ``grads`` and ``buffers`` gather every layer's arrays under
    ``"<index>.<name>"`` (nested containers give ``"1.0.W"``). They are built on
    each access from the layers' own dicts, so they always show the live arrays.
    """

    def __init__(self, *layers):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a Layer")
        self._cache = None

    @property
    def params(self):
        return self._gather("params")

    @property
    def grads(self):
        return self._gather("grads")

    @property
    def buffers(self):
        return self._gather("buffers")

    def _gather(self, attr):
        return gather(((str(i), layer) for i, layer in enumerate(self.layers)), attr)

    def forward(self, x, training=True):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy

    def zero_grad(self):
        for layer in self.layers:
            layer.zero_grad()

    def to_backend(self, backend):
        for layer in self.layers:
            layer.to_backend(backend)
        return self

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "\n".join(f"  ({i}) {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"
