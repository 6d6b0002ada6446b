"""benchmarks/lockstep.py: scratchvae and PyTorch from the same weights, batches, noise and
dropout masks compute the same losses (needs PyTorch and MNIST)."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from optional import torch_or_skip

from mnist_data import mnist_dir

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("lockstep", ROOT / "benchmarks" / "lockstep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lockstep = _load()


@pytest.mark.parametrize("model", ["paper-mlp", "paper-conv"])
def test_lockstep_losses_agree_to_float32_rounding(model):
    """A few steps in lockstep: the twin starts with scratchvae's weights exactly, every step's
    training loss agrees to float32 rounding (about 1e-7 relative; a wrong mask, eps, weight
    copy or gradient would show at once), and so do the test losses and the weights after
    Adam; a wrong dropout mask alone moves a loss by whole nats."""
    torch_or_skip()
    record = lockstep.train_pair(model, 3, seed=1, train_limit=192, epochs=1, test_limit=200,
                                 data_dir=mnist_dir())
    losses = np.array(record["losses"])
    assert losses.shape == (3, 2)
    np.testing.assert_allclose(losses[:, 0], losses[:, 1], rtol=2e-6)
    assert not np.allclose(losses[0, 0], losses[1:, 0], rtol=1e-3)  # the batches differ
    ours, theirs = record["test_nelbo_scratchvae"], record["test_nelbo_torch"]
    assert abs(ours - theirs) < 1e-4 * abs(theirs)
    # Adam moves every weight by about lr = 1e-3 per step whatever its gradient's size, so a
    # weight whose gradient is rounding noise may move differently in the two; a wrong update
    # rule would put whole steps (1e-3 absolute, ~3e-3 of the largest weight) between them.
    # Measured: 6e-7 (mlp) and 9e-5 (conv) of the largest weight, a few percent of a step.
    assert 0 < record["param_relative_difference"][0] < 3e-4
    json.dumps(record)  # the record is what the study saves


def test_report_of_finished_runs():
    records = [dict(model="paper-conv", latent_dim=16, seed=s, epochs=10, train_limit=6000,
                    test_images=10_000, test_nelbo_scratchvae=130.0 + s, test_nelbo_torch=130.5,
                    param_relative_difference=[1e-6, 1e-3], first_step_loss_gap=1e-5,
                    median_loss_gap_first_epoch=2e-5, median_loss_gap_last_epoch=0.3,
                    seconds=120.0, versions=dict(numpy="2", torch="2", python="3"))
               for s in range(3)]
    text = lockstep.report(records, "python benchmarks/lockstep.py")
    row = next(line for line in text.splitlines() if line.startswith("| paper-conv | 16 | 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:5] == ["+0.500", "+1.500"]  # median gap of (-0.5, +0.5, +1.5), largest gap
    assert cells[5:7] == ["131.00", "130.50"]
    assert lockstep.report([], "x") == "No lockstep run has finished yet."
