"""The math of every op as plain functions: ``*_forward`` returns ``(out, cache)``,
``*_backward`` takes the upstream gradient and that cache and returns the gradients.

Each function takes its array module from its inputs, so it runs unchanged on
NumPy and CuPy. The derivations are in ``docs/layers.md``.
"""
from .activations import (
    leaky_relu_backward,
    leaky_relu_forward,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_forward,
    sigmoid_given_exp,
    tanh_backward,
    tanh_forward,
)
from .batchnorm import (
    batchnorm_backward,
    batchnorm_eval_backward,
    batchnorm_eval_forward,
    batchnorm_forward,
)
from .classification import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from .conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_output_size,
    conv_transpose2d_backward,
    conv_transpose2d_forward,
    conv_transpose2d_output_size,
)
from .dense import dense_backward, dense_forward
from .dropout import dropout_backward, dropout_forward
from .resample import (
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    upsample_nearest_backward,
    upsample_nearest_forward,
)
from .residual import residual_backward, residual_forward

__all__ = [name for name in dir() if not name.startswith("_")]
