"""Dense layer: y = x @ W + b with W (in, out). Math in ``functional/dense.py``."""
from ..functional import dense as F  # F.name at call time: exercises swap in a learner's pair
from .base import Layer


class Dense(Layer):
    """Fully connected layer.

    Parameters: ``W`` (in_features, out_features), ``b`` (out_features,), both
    drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)) as PyTorch's Linear.
    Input (N, in_features) -> output (N, out_features).
    """

    def __init__(self, in_features, out_features, *, dtype=None, seed=None, rng=None, backend=None):
        super().__init__(dtype=dtype, seed=seed, rng=rng, backend=backend)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.add_param("W", self.uniform_init((self.in_features, self.out_features), self.in_features))
        self.add_param("b", self.uniform_init((self.out_features,), self.in_features))

    def forward(self, x, training=True):
        self.check_input(x, 2, self.in_features, "features")
        y, cache = F.dense_forward(x, self.params["W"], self.params["b"])
        return self.remember(cache, y)

    skips_input_grad = True

    def backward(self, dy, input_grad=True):
        """dL/dx (None with ``input_grad=False``), and the parameter gradients into ``grads``."""
        dx, dW, db = F.dense_backward(dy, self.take_cache(dy), input_grad)
        self.set_grads(W=dW, b=db)
        return dx

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"
