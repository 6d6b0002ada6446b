"""Optional PyTorch statement of scratchvae's ``resnet18-vae``: the PyTorch tutorial's CIFAR-10
VAE, written here from PyTorch Lightning Bolts' ``resnet18_encoder(first_conv=False,
maxpool1=False)`` and ``resnet18_decoder(latent_dim, input_height=32, first_conv=False,
maxpool1=False)`` without importing Bolts.

Nothing in ``scratchvae/`` imports this file; ``step_time.py``, ``profile_step.py`` and
``lockstep_resnet.py`` use it as the independent reference.

* Encoder: conv3x3(3, 64) (no bias), BN, ReLU; four stages of two basic blocks (64, 128, 256,
  512; stride 2 into stages 2-4); a basic block is conv3x3-BN-ReLU-conv3x3-BN plus the identity
  or conv1x1(stride)-BN, then ReLU; adaptive average pooling to 1x1, flatten: 512 features.
* fc_mu, fc_var: Linear(512, latent).
* Decoder: Linear(latent, 512*4*4), view; four stages of two decoder blocks (256, 128, 64, 64;
  x2 nearest upsampling into the first three); a decoder block is conv3x3(in, in)-BN-ReLU,
  [upsample] conv3x3(in, out)-BN, plus the identity or [upsample] conv1x1-BN, then ReLU;
  conv3x3(64, 3) (no bias).
* log_scale: one parameter, 0 at the start. Loss per image: -sum log N(x; x_hat,
  exp(log_scale)^2) + the single-sample KL log q(z|x) - log p(z), averaged over the batch;
  z = mu + exp(lv / 2) eps with lv scratchvae's smooth clamp of the log-variance (the identity
  to 1e-11 for |lv| <= 22).

``widths`` and ``image_size`` shrink it like scratchvae's ``options`` (tests use them).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from torch_reference import bound_logvar

WIDTHS = (64, 128, 256, 512)


def conv3x3(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in, c_out, stride=1):
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class Interpolate(nn.Module):
    def __init__(self, scale_factor):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale_factor, mode="nearest")


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class DecoderBlock(nn.Module):
    def __init__(self, c_in, c_out, scale=1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, c_in), nn.BatchNorm2d(c_in)
        up = [Interpolate(scale)] if scale != 1 else []
        self.conv2 = nn.Sequential(*up, conv3x3(c_in, c_out))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.upsample = None
        if scale != 1 or c_in != c_out:
            self.upsample = nn.Sequential(*up, conv1x1(c_in, c_out), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.upsample is None else self.upsample(x)
        return F.relu(out + identity)


class ResNetVAE(nn.Module):
    def __init__(self, latent_dim=256, widths=WIDTHS, image_size=32):
        super().__init__()
        layers = [conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        c_in = widths[0]
        for stage, c_out in enumerate(widths):
            layers += [BasicBlock(c_in, c_out, 1 if stage == 0 else 2), BasicBlock(c_out, c_out)]
            c_in = c_out
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc_mu = nn.Linear(widths[-1], latent_dim)
        self.fc_var = nn.Linear(widths[-1], latent_dim)
        self.start = (widths[-1], image_size // 8, image_size // 8)
        blocks = []
        for stage, c_out in enumerate((widths[2], widths[1], widths[0], widths[0])):
            scale = 2 if stage < 3 else 1
            blocks += [DecoderBlock(c_in, c_out, scale), DecoderBlock(c_out, c_out)]
            c_in = c_out
        self.linear = nn.Linear(latent_dim, math.prod(self.start))
        self.decoder = nn.Sequential(*blocks, conv3x3(c_in, 3))
        self.log_scale = nn.Parameter(torch.zeros(1))

    def decode(self, z):
        return self.decoder(self.linear(z).view(z.shape[0], *self.start))

    def forward(self, x, eps=None):
        """(recon, kl) per image: -log p(x|z) and log q(z|x) - log p(z), in nats."""
        h = self.encoder(x)
        mu, logvar = self.fc_mu(h), self.fc_var(h)
        lv = bound_logvar(logvar)
        if eps is None:
            eps = torch.randn_like(mu)
        z = mu + torch.exp(0.5 * lv) * eps
        x_hat = self.decode(z)
        recon = (0.5 * (x - x_hat) ** 2 * torch.exp(-2 * self.log_scale) + self.log_scale
                 + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
        kl = (-0.5 * lv - 0.5 * (z - mu) ** 2 * torch.exp(-lv) + 0.5 * z ** 2).sum(1)
        return recon, kl


def copy_from_scratchvae(twin, vae):
    """Give ``twin`` the weights of the scratchvae model ``vae`` exactly; returns the pairs
    (scratchvae name, torch parameter, transposed?). Both list their parameters in the same
    order (encoder, head, decoder, log-scale; conv before batch norm, body before shortcut),
    which is checked name kind by name kind and shape by shape."""
    ours = list(vae.params.items())
    head = [("head.mu.W", twin.fc_mu.weight), ("head.mu.b", twin.fc_mu.bias),
            ("head.logvar.W", twin.fc_var.weight), ("head.logvar.b", twin.fc_var.bias)]
    theirs = ([p for p in twin.encoder.parameters()] + [p for _, p in head]
              + [twin.linear.weight, twin.linear.bias] + list(twin.decoder.parameters())
              + [twin.log_scale])
    if len(ours) != len(theirs):
        raise RuntimeError(f"{len(ours)} scratchvae parameters, {len(theirs)} torch ones")
    pairs = []
    with torch.no_grad():
        for (name, value), param in zip(ours, theirs):
            transpose = value.ndim == 2  # Dense W is (in, out), Linear weight (out, in)
            array = value.T if transpose else value
            if tuple(array.shape) != tuple(param.shape):
                raise RuntimeError(f"{name}: shape {tuple(array.shape)} vs torch {tuple(param.shape)}")
            param.copy_(torch.from_numpy(array.copy()))
            pairs.append((name, param, transpose))
    return pairs
