"""The named architectures. Each is one small function that returns the encoder
(images -> features), the feature width and the decoder (z -> raw likelihood
outputs, shaped like the images with ``out_channels`` channels).

To add one: write a function with the signature below, decorate it with
``@architecture("my-name", latent_dim=..., likelihood=...)``, and
``build_vae("my-name")`` finds it (see docs/vae.md#adding-an-architecture).
"""
from ..layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    LeakyReLU,
    ReLU,
    Reshape,
    Residual,
    Sequential,
    Tanh,
    Upsample,
)

ARCHITECTURES = {}


def architecture(name, latent_dim, likelihood="bernoulli", data_range=(0.0, 1.0),
                 image_shape=(1, 28, 28), defaults=None):
    """Register an architecture under ``name`` with its defaults, expected data range and
    image shape (C, H, W). ``defaults`` holds training settings that differ from the
    general ones for this model (``kl``, ``lr``), used where no flag sets them."""

    def register(fn):
        ARCHITECTURES[name] = dict(build=fn, latent_dim=latent_dim, likelihood=likelihood,
                                   data_range=data_range, image_shape=tuple(image_shape),
                                   defaults=dict(defaults or {}), doc=(fn.__doc__ or "").strip())
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


# -- the PyTorch tutorial's second model: a ResNet-18 VAE for 32x32 colour images ----------
# PyTorch Lightning Bolts' resnet18_encoder(first_conv=False, maxpool1=False) and
# resnet18_decoder(latent_dim, input_height=32, first_conv=False, maxpool1=False).
RESNET18_WIDTHS = (64, 128, 256, 512)


def _bn_conv(c_in, c_out, k, stride, kw):
    """A convolution without bias (k = 3: padding 1) followed by BatchNorm2d."""
    return [Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False, **kw),
            BatchNorm2d(c_out, **kw)]


def basic_block(c_in, c_out, stride, kw):
    """ResNet's basic block: relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)); the
    shortcut is the identity, or conv1x1 (with the stride) and BN where the shape changes."""
    body = Sequential(*_bn_conv(c_in, c_out, 3, stride, kw), ReLU(**kw),
                      *_bn_conv(c_out, c_out, 3, 1, kw))
    shortcut = Sequential(*_bn_conv(c_in, c_out, 1, stride, kw)) if stride != 1 or c_in != c_out else None
    return Sequential(Residual(body, shortcut), ReLU(**kw))


def decoder_block(c_in, c_out, scale, kw):
    """Bolts' DecoderBlock: conv3x3(in, in)-BN-ReLU, [Upsample] conv3x3(in, out)-BN, plus a
    shortcut (identity, or [Upsample] conv1x1 and BN where the shape changes), then ReLU."""
    up = [Upsample(scale, **kw)] if scale != 1 else []
    body = Sequential(*_bn_conv(c_in, c_in, 3, 1, kw), ReLU(**kw),
                      *up, *_bn_conv(c_in, c_out, 3, 1, kw))
    shortcut = Sequential(*up, *_bn_conv(c_in, c_out, 1, 1, kw)) if scale != 1 or c_in != c_out else None
    return Sequential(Residual(body, shortcut), ReLU(**kw))


def resnet18_encoder(kw, widths=RESNET18_WIDTHS, in_channels=3):
    """(N, 3, H, W) -> (N, widths[-1]): conv3x3-BN-ReLU, four stages of two basic blocks (the
    first block of stages 2-4 with stride 2), global average pooling."""
    layers = [*_bn_conv(in_channels, widths[0], 3, 1, kw), ReLU(**kw)]
    c_in = widths[0]
    for stage, c_out in enumerate(widths):
        layers += [basic_block(c_in, c_out, 1 if stage == 0 else 2, kw), basic_block(c_out, c_out, 1, kw)]
        c_in = c_out
    return Sequential(*layers, GlobalAvgPool2d(**kw))


def resnet18_decoder(latent_dim, out_channels, kw, widths=RESNET18_WIDTHS, image_size=32):
    """z (N, latent_dim) -> (N, out_channels, image_size, image_size): Linear to
    widths[-1] x s x s (s = image_size / 8), four stages of two decoder blocks (widths
    reversed, ending at widths[0] twice; the first block of the first three upsamples x2),
    then conv3x3 to ``out_channels`` without bias."""
    if image_size % 8:
        raise ValueError(f"resnet18 decoder: image_size must be a multiple of 8, got {image_size}")
    s, c_in = image_size // 8, widths[-1]
    layers = [Dense(latent_dim, c_in * s * s, **kw), Reshape((c_in, s, s), **kw)]
    for stage, c_out in enumerate((widths[2], widths[1], widths[0], widths[0])):
        scale = 2 if stage < 3 else 1
        layers += [decoder_block(c_in, c_out, scale, kw), decoder_block(c_out, c_out, 1, kw)]
        c_in = c_out
    return Sequential(*layers, Conv2d(c_in, out_channels, 3, padding=1, bias=False, **kw))


@architecture("resnet18-vae", latent_dim=256, likelihood="gaussian-learned-scale",
              image_shape=(3, 32, 32), defaults=dict(kl="mc", lr=1e-4))
def resnet18_vae(latent_dim, out_channels, kw, widths=RESNET18_WIDTHS, image_size=32):
    """The PyTorch tutorial's ResNet-18 VAE for CIFAR-10 (32x32 colour, pixels in [0, 1]).

    Encoder: Conv 3x3/64 (no bias), BN, ReLU, four stages of two basic blocks (64, 128, 256,
    512 channels; stride 2 into stages 2-4), global average pooling to 512 features.
    Decoder: Dense 512*4*4, Reshape, four stages of two decoder blocks (256, 128, 64, 64;
    nearest upsampling x2 into the first three), Conv 3x3 64 -> 3 (no bias). Defaults as the
    tutorial: latent 256, the learned Gaussian log-scale, the Monte-Carlo KL, Adam at 1e-4.
    20,057,089 parameters.
    """
    return (resnet18_encoder(kw, widths, 3), widths[-1],
            resnet18_decoder(latent_dim, out_channels, kw, widths, image_size))
