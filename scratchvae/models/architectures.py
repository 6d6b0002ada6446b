"""The named architectures. Each is one small function that returns the encoder
(images -> features), the feature width and the decoder (z -> raw likelihood
outputs, shaped like the images with ``out_channels`` channels).

To add one: write a function with the signature below, decorate it with
``@architecture("my-name", latent_dim=..., likelihood=...)``, and
``build_vae("my-name")`` finds it (see docs/vae.md#adding-an-architecture).
"""
from ..layers import (
    BatchNorm1d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    Sequential,
    Tanh,
)

ARCHITECTURES = {}


def architecture(name, latent_dim, likelihood="bernoulli", data_range=(0.0, 1.0)):
    """Register an architecture under ``name`` with its defaults and expected data range."""

    def register(fn):
        ARCHITECTURES[name] = dict(build=fn, latent_dim=latent_dim, likelihood=likelihood,
                                   data_range=data_range, doc=(fn.__doc__ or "").strip())
        return fn

    return register


@architecture("paper-mlp", latent_dim=2)
def paper_mlp(latent_dim, out_channels, kw):
    """The paper's vanilla VAE (Table 1): 784 -> 256 (ReLU) -> z; z -> 256 (ReLU) -> 784."""
    encoder = Sequential(Flatten(**kw), Dense(784, 256, **kw), ReLU(**kw))
    decoder = Sequential(
        Dense(latent_dim, 256, **kw), ReLU(**kw),
        Dense(256, 784 * out_channels, **kw), Reshape((out_channels, 28, 28), **kw),
    )
    return encoder, 256, decoder


@architecture("paper-conv", latent_dim=2)
def paper_conv(latent_dim, out_channels, kw):
    """The paper's convolutional VAE (Table 2, Figures 9 and 10; the slides' model).

    Encoder: Conv 3x3/32/s2, Conv 3x3/64/s2 (ReLU), Dropout 0.25, Flatten, Dense 32 (ReLU).
    Decoder: Dense 3136 (ReLU), Reshape 64x7x7, ConvT 3x3/64/s2, ConvT 3x3/32/s2 (ReLU),
    Dropout 0.25, ConvT 3x3/out/s1. Padding 1 keeps Keras's 'same' sizes: 28-14-7-14-28.
    """
    encoder = Sequential(
        Conv2d(1, 32, 3, stride=2, padding=1, **kw), ReLU(**kw),
        Conv2d(32, 64, 3, stride=2, padding=1, **kw), ReLU(**kw),
        Dropout(0.25, **kw), Flatten(**kw),
        Dense(3136, 32, **kw), ReLU(**kw),
    )
    decoder = Sequential(
        Dense(latent_dim, 3136, **kw), ReLU(**kw), Reshape((64, 7, 7), **kw),
        ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1, **kw), ReLU(**kw),
        ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1, **kw), ReLU(**kw),
        Dropout(0.25, **kw),
        ConvTranspose2d(32, out_channels, 3, stride=1, padding=1, **kw),
    )
    return encoder, 32, decoder


@architecture("tutorial-mlp", latent_dim=28, likelihood="gaussian-fixed", data_range=(-1.0, 1.0))
def tutorial_mlp(latent_dim, out_channels, kw):
    """The PyTorch tutorial's MLP: 784-196-49-28 with BatchNorm1d (momentum 0.7) and LeakyReLU;
    decoder z-49-196-784 with a Tanh output, for images scaled to [-1, 1]."""
    encoder = Sequential(
        Flatten(**kw),
        Dense(784, 196, **kw), ReLU(**kw), BatchNorm1d(196, momentum=0.7, **kw),
        Dense(196, 49, **kw), ReLU(**kw), BatchNorm1d(49, momentum=0.7, **kw),
        Dense(49, 28, **kw), LeakyReLU(**kw),
    )
    decoder = Sequential(
        Dense(latent_dim, 49, **kw), ReLU(**kw),
        Dense(49, 196, **kw), ReLU(**kw),
        Dense(196, 784 * out_channels, **kw), Tanh(**kw), Reshape((out_channels, 28, 28), **kw),
    )
    return encoder, 28, decoder


@architecture("nll-conv", latent_dim=32)
def nll_conv(latent_dim, out_channels, kw):
    """A deeper convolutional VAE for MNIST likelihoods (0/1 images, docs/reproduction.md).

    Encoder: Conv 3x3/32/s1, Conv 4x4/64/s2 (28 -> 14), Conv 3x3/64/s1, Conv 4x4/128/s2
    (14 -> 7), each followed by ReLU, Flatten, Dense 6272 -> 512 (ReLU).
    Decoder: Dense 512 (ReLU), Dense 6272 (ReLU), Reshape 128x7x7, ConvT 4x4/64/s2 (7 -> 14),
    Conv 3x3/64/s1, ConvT 4x4/32/s2 (14 -> 28), each followed by ReLU, ConvT 3x3/out/s1.
    Padding 1 throughout; no dropout (dynamic binarization regularizes).
    """
    encoder = Sequential(
        Conv2d(1, 32, 3, stride=1, padding=1, **kw), ReLU(**kw),
        Conv2d(32, 64, 4, stride=2, padding=1, **kw), ReLU(**kw),
        Conv2d(64, 64, 3, stride=1, padding=1, **kw), ReLU(**kw),
        Conv2d(64, 128, 4, stride=2, padding=1, **kw), ReLU(**kw),
        Flatten(**kw), Dense(6272, 512, **kw), ReLU(**kw),
    )
    decoder = Sequential(
        Dense(latent_dim, 512, **kw), ReLU(**kw),
        Dense(512, 6272, **kw), ReLU(**kw), Reshape((128, 7, 7), **kw),
        ConvTranspose2d(128, 64, 4, stride=2, padding=1, **kw), ReLU(**kw),
        Conv2d(64, 64, 3, stride=1, padding=1, **kw), ReLU(**kw),
        ConvTranspose2d(64, 32, 4, stride=2, padding=1, **kw), ReLU(**kw),
        ConvTranspose2d(32, out_channels, 3, stride=1, padding=1, **kw),
    )
    return encoder, 512, decoder
