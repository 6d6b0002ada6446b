"""scratchvae: a from-scratch Variational Autoencoder engine with hand-derived gradients.

Modules:
    backend     NumPy/CuPy selection, seeded generators, host/device moves
    functional  the math of each op: forward returns (out, cache), backward takes it
    layers      Dense, Conv2d, ConvTranspose2d, BatchNorm, activations, Dropout, ...
    optim       SGD and Adam
    gradcheck   finite-difference checks of any backward pass
"""
__version__ = "0.1.0"

from .cli import command_environment, quiet_startup, started_as_command

if started_as_command():  # python -m scratchvae.<command>: a Ctrl-C while it loads is one line,
    quiet_startup()       # and OpenBLAS's threads sleep soon after a product
    command_environment()
