"""benchmarks/lockstep_resnet.py: resnet18-vae in scratchvae and in an independent PyTorch
statement (benchmarks/torch_resnet.py), from the same weights, batches and noise, compute the
same losses to float32 rounding. CI-sized: reduced widths and 16x16 images (the full model:
python benchmarks/lockstep_resnet.py). Skips without PyTorch, which is optional."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from optional import torch_or_skip

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("lockstep_resnet", ROOT / "benchmarks" / "lockstep_resnet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_resnet_lockstep_losses_agree_to_float32_rounding():
    torch_or_skip()
    lockstep = _load()
    record = lockstep.train_pair(widths=(4, 6, 8, 10), image_size=16, latent_dim=6, batch=8,
                                 steps=4, seed=3, threads=1)
    assert record["num_params"] == record["torch_num_params"]
    losses = np.array(record["losses"])
    # float32 rounding: ~1e-7 relative per loss; a wrong weight copy, block order, shortcut,
    # upsampling or likelihood term would show as whole nats on a ~1000-nat loss
    np.testing.assert_allclose(losses[:, 0], losses[:, 1], rtol=2e-6)
    assert not np.allclose(losses[0, 0], losses[1:, 0], rtol=1e-4)  # the batches differ
    ours, theirs = record["test_losses"]
    assert abs(ours - theirs) < 2e-6 * abs(theirs)  # evaluation mode: the running statistics agree
    # Adam moves each weight by about lr = 1e-4 a step; rounding-level gradients may move a few
    # weights differently, a wrong update would put whole steps (~1e-4 absolute) between them
    assert record["param_relative_difference"] < 1e-4
    a, b = record["log_scale"]
    assert a != 0 and abs(a - b) < 1e-6  # the learned log-scale moved, and identically


def test_resnet_lockstep_in_float64_agrees_to_1e_12():
    """In float64 the rounding that float32 amplifies (see the benchmark's docstring) is gone:
    every step's loss and the weights after Adam agree to ~1e-13."""
    torch_or_skip()
    lockstep = _load()
    record = lockstep.train_pair(widths=(4, 6, 8, 10), image_size=16, latent_dim=6, batch=8,
                                 steps=4, seed=5, threads=1, dtype="float64")
    losses = np.array(record["losses"])
    np.testing.assert_allclose(losses[:, 0], losses[:, 1], rtol=1e-12)
    assert record["param_relative_difference"] < 1e-10
