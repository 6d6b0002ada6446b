"""Layers: thin objects over ``scratchvae.functional`` that hold parameters,
gradients and the forward cache. See ``base.Layer`` for the contract."""
from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .base import Layer
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d, ConvTranspose2d
from .dense import Dense
from .dropout import Dropout
from .gaussian_head import GaussianHead
from .resample import GlobalAvgPool2d, Upsample
from .residual import Residual
from .sequential import Sequential
from .shape import Flatten, Reshape

__all__ = [
    "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Dense", "Dropout", "Flatten", "GaussianHead",
    "GlobalAvgPool2d", "Layer", "LeakyReLU", "ReLU", "Reshape", "Residual", "Sequential", "Sigmoid",
    "Tanh", "Upsample",
]
