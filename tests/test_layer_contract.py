"""The contract every non-conv layer keeps (see ``scratchvae.layers.base``): forward and
backward never modify their arguments, bad input raises a ``ValueError`` that names
the layer and both shapes, and backward before forward is an error, not a crash."""
import numpy as np
import pytest

from scratchvae.backend import to_device, to_host
from scratchvae.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    Sequential,
    Sigmoid,
    Tanh,
)


def _kw(backend):
    return dict(dtype=np.float64, backend=backend, seed=0)


# name -> (builder, input shape); every non-conv layer type, float64
LAYERS = {
    "Dense": (lambda be: Dense(4, 3, **_kw(be)), (5, 4)),
    "ReLU": (lambda be: ReLU(**_kw(be)), (5, 4)),
    "LeakyReLU": (lambda be: LeakyReLU(0.2, **_kw(be)), (2, 3, 4)),
    "Sigmoid": (lambda be: Sigmoid(**_kw(be)), (5, 4)),
    "Tanh": (lambda be: Tanh(**_kw(be)), (2, 3, 2, 2)),
    "BatchNorm1d": (lambda be: BatchNorm1d(4, **_kw(be)), (5, 4)),
    "BatchNorm2d": (lambda be: BatchNorm2d(3, **_kw(be)), (2, 3, 2, 2)),
    "Dropout": (lambda be: Dropout(0.5, **_kw(be)), (5, 4)),
    "Flatten": (lambda be: Flatten(**_kw(be)), (2, 3, 2, 2)),
    "Reshape": (lambda be: Reshape((2, 6), **_kw(be)), (2, 3, 2, 2)),
    "Sequential": (lambda be: Sequential(Dense(4, 3, **_kw(be)), Tanh(**_kw(be))), (5, 4)),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_leaves_arguments_unchanged(backend, name, training):
    build, shape = LAYERS[name]
    layer = build(backend)
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal(shape)
    x = to_device(x_host.copy(), backend)

    y = layer.forward(x, training=training)
    dy_host = rng.standard_normal(y.shape)
    dy = to_device(dy_host.copy(), backend)
    layer.backward(dy)

    np.testing.assert_array_equal(to_host(x), x_host)
    np.testing.assert_array_equal(to_host(dy), dy_host)


def _expect_value_error(layer, x, *fragments):
    with pytest.raises(ValueError) as info:
        layer.forward(x)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# (layer name, bad input as (shape, dtype), what the message must say beyond the layer
# name: the expected shape or what is wrong, and the received shape)
BAD_INPUTS = [
    ("Dense", (5,), np.float64, ["(N, F)", "(5,)"]),
    ("Dense", (2, 5, 4), np.float64, ["(N, F)", "(2, 5, 4)"]),
    ("Dense", (5, 3), np.float64, ["4 features", "(5, 3)"]),
    ("Dense", (5, 4), np.int64, ["float", "int64", "(5, 4)"]),
    ("Dense", (5, 4), np.float32, ["float64", "float32", "(5, 4)"]),
    ("BatchNorm1d", (5, 4, 1, 1), np.float64, ["(N, F)", "(5, 4, 1, 1)"]),
    ("BatchNorm1d", (5, 2), np.float64, ["4 features", "(5, 2)"]),
    ("BatchNorm1d", (5, 4), np.int32, ["float", "int32", "(5, 4)"]),
    ("BatchNorm1d", (5, 4), np.float32, ["float64", "float32", "(5, 4)"]),
    ("BatchNorm2d", (2, 3), np.float64, ["(N, C, H, W)", "(2, 3)"]),
    ("BatchNorm2d", (2, 4, 2, 2), np.float64, ["3 features", "(2, 4, 2, 2)"]),
    ("BatchNorm2d", (2, 3, 2, 2), np.int64, ["float", "int64", "(2, 3, 2, 2)"]),
    ("BatchNorm2d", (2, 3, 2, 2), np.float32, ["float64", "float32", "(2, 3, 2, 2)"]),
    ("ReLU", (1, 1, 1, 1, 1, 1), np.float64, ["expected input of shape", "(1, 1, 1, 1, 1, 1)"]),
    ("ReLU", (5, 4), np.int64, ["float", "int64", "(5, 4)"]),
    ("Sigmoid", (5, 4), np.int64, ["float", "int64", "(5, 4)"]),
    ("Dropout", (5, 4), np.int64, ["float", "int64", "(5, 4)"]),
    ("Flatten", (6,), np.float64, ["(N, F)", "(6,)"]),
    ("Reshape", (6,), np.float64, ["(N, F)", "(6,)"]),
]


@pytest.mark.parametrize(
    "name, shape, dtype, fragments", BAD_INPUTS, ids=[f"{c[0]}-{c[1]}-{np.dtype(c[2]).name}" for c in BAD_INPUTS]
)
def test_bad_input_errors(backend, name, shape, dtype, fragments):
    build, _ = LAYERS[name]
    x = to_device(np.ones(shape, dtype=dtype), backend)
    _expect_value_error(build(backend), x, f"{name}:", *fragments)


def test_non_array_input_errors(backend):
    _expect_value_error(Dense(2, 3, **_kw(backend)), [[1.0, 2.0]], "Dense:", "expected an array", "list")


@pytest.mark.parametrize("name", list(LAYERS))
def test_backward_before_forward_errors(backend, name):
    build, shape = LAYERS[name]
    layer = build(backend)
    dy = to_device(np.ones(shape), backend)

    with pytest.raises(ValueError, match="backward called before forward"):
        layer.backward(dy)


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "Sequential"])
def test_backward_wrong_dy_shape_errors(backend, name):
    build, shape = LAYERS[name]
    layer = build(backend)
    y = layer.forward(to_device(np.random.default_rng(0).standard_normal(shape), backend))
    wrong = (y.shape[0] + 1,) + tuple(y.shape[1:])

    with pytest.raises(ValueError) as info:
        layer.backward(to_device(np.ones(wrong), backend))
    message = str(info.value)
    assert message.startswith(f"{name}:") and str(tuple(y.shape)) in message and str(wrong) in message
