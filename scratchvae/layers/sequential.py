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

    skips_input_grad = True  # passed on to its own first layer

    def backward(self, dy, input_grad=True):
        """Run every layer's backward in reverse; return dL/dx.

        ``input_grad=False`` (when the input is the data) returns None and skips what only dx
        needs: the first layer with parameters computes its parameter gradients alone if it
        can (``skips_input_grad``: Dense, Conv2d, a nested Sequential), and the layers before
        it (a Flatten, say) are not run.
        """
        if input_grad:
            for layer in reversed(self.layers):
                dy = layer.backward(dy)
            return dy
        first = next((i for i, layer in enumerate(self.layers) if layer.params), None)
        if first is None:
            return None
        for layer in reversed(self.layers[first + 1 :]):
            dy = layer.backward(dy)
        if self.layers[first].skips_input_grad:
            self.layers[first].backward(dy, input_grad=False)
        else:
            self.layers[first].backward(dy)
        return None

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
