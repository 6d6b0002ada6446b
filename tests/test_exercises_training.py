"""Your code trains a real VAE: ``substituted`` swaps a learner's pairs into the engine and
restores them however the block ends; the engine's own code substituted for itself trains
bit for bit the same; a wrong KL gradient that trains shows up as a worse test loss; and
examples/train_vae.py runs."""
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_data import mnist_dir
from exercise_files import engine_copy
from scratchvae.exercises.substitute import substituted, train_with_exercises
from scratchvae.functional import dense as dense_module
from scratchvae.functional import latent
from scratchvae.layers import Dense
from scratchvae.models import build_vae
from scratchvae.runs import TrainConfig, read_metrics
from scratchvae.training import train

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_vae.py"


def counting(name, calls):
    from exercise_mistakes import engine_pair
    forward, backward = engine_pair(name)

    def counted_forward(*args):
        calls.append(name + " forward")
        return forward(*args)

    def counted_backward(dy, cache):
        calls.append(name + " backward")
        return backward(dy, cache)
    return counted_forward, counted_backward


def test_the_pairs_are_swapped_in_and_restored():
    original = dense_module.dense_forward, dense_module.dense_backward, latent.kl_standard_normal_forward
    calls = []
    layer = Dense(4, 3, dtype=np.float64, seed=0)
    with substituted({"dense": counting("dense", calls)}):
        layer.forward(np.ones((2, 4)))
        assert layer.backward(np.ones((2, 3)), input_grad=False) is None  # the engine's convention
    assert calls == ["dense forward", "dense backward"] and layer.grads["W"].shape == (4, 3)
    with pytest.raises(RuntimeError):
        with substituted({"kl_standard_normal": counting("kl_standard_normal", calls)}):
            raise RuntimeError("a learner's bug in the middle of training")
    assert (dense_module.dense_forward, dense_module.dense_backward,
            latent.kl_standard_normal_forward) == original


def test_a_vae_step_runs_the_learners_latent_and_likelihood_code():
    calls = []
    names = ("relu", "dense", "reparameterize", "kl_standard_normal", "bernoulli_nll")
    vae = build_vae("paper-mlp", 2, "bernoulli", 1.0, dtype="float64", seed=0)
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    with substituted({name: counting(name, calls) for name in names}):
        vae.forward(x)
        vae.backward()
    assert {c.split()[0] for c in calls} == set(names)
    assert {c.split()[1] for c in calls} == {"forward", "backward"}


def _trainer(tmp_path):
    def run(cfg, label):
        run_dir = train(cfg, out=tmp_path / label, progress=False, figures=False, log=lambda *a: None)
        return float(read_metrics(run_dir)[-1]["test_loss"])
    return run


SMALL = dict(epochs=1, train_limit=1024, val_limit=256, batch_size=64)


def test_the_engines_own_code_as_exercises_trains_bit_for_bit_the_same(tmp_path):
    exercises = tmp_path / "mine"
    exercises.mkdir()
    for name in ("relu", "dense", "reparameterize", "kl_standard_normal", "bernoulli_nll"):
        engine_copy(exercises, name)
    lines = []
    cfg = TrainConfig(**SMALL, data_dir=str(mnist_dir()))
    result = train_with_exercises(exercises, cfg, _trainer(tmp_path), out=lines.append)
    assert result.yours == result.engine
    assert lines[0].startswith("your functions in place of scratchvae's: relu (passes); dense")
    assert lines[-1] == f"your functions: test {result.yours:.1f} nats after 1 epoch; " \
                        f"scratchvae's: {result.engine:.1f}"


WRONG_KL = '''import numpy as np
from scratchvae.functional.latent import kl_standard_normal_forward


def kl_standard_normal_backward(dkl, cache):
    mu, var, slope = cache
    d = dkl[:, None]
    return 0.1 * d * mu, 0.1 * d * (var - 1) / 2 * slope  # a tenth of the KL's gradient
'''


def test_a_kl_gradient_off_by_a_factor_trains_visibly_worse(tmp_path):
    exercises = tmp_path / "mine"
    exercises.mkdir()
    (exercises / "kl_standard_normal.py").write_text(WRONG_KL)
    lines = []
    cfg = TrainConfig(**SMALL, data_dir=str(mnist_dir()))
    result = train_with_exercises(exercises, cfg, _trainer(tmp_path), out=lines.append)
    assert "kl_standard_normal (FAILS backward dmu" in lines[0]
    # seen: 270.1 against 260.3 nats (1,024 images, 500 test images): far beyond rounding
    assert result.yours > result.engine + 2.0, lines


def test_the_one_page_vae_trains(tmp_path, monkeypatch, capsys):
    lines = EXAMPLE.read_text().splitlines()
    assert len(lines) <= 150
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "--data-dir", str(mnist_dir()), "--epochs", "1",
                                      "--train-limit", "512", "--test-limit", "256",
                                      "--out", str(tmp_path / "samples.png")])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("epoch 1: train ") and " test " in out[-2]
    test_loss = float(out[-2].split(" test ")[1].split()[0])
    assert 100 < test_loss < 550  # an untrained decoder scores 784 log 2 = 543 nats
    assert (tmp_path / "samples.png").stat().st_size > 0 or out[-1].startswith("no matplotlib")


WRONG_KL_VALUE = '''from scratchvae.functional.latent import kl_standard_normal_backward
from scratchvae.functional.latent import kl_standard_normal_forward as _kl


def kl_standard_normal_forward(mu, logvar):
    kl, cache = _kl(mu, logvar)
    return kl / mu.shape[1], cache  # a mean over the latent dimensions, where the KL sums
'''


def test_a_wrong_forward_is_named_beside_the_comparison(tmp_path):
    exercises = tmp_path / "mine"
    exercises.mkdir()
    (exercises / "kl_standard_normal.py").write_text(WRONG_KL_VALUE)
    lines = []
    cfg = TrainConfig(**dict(SMALL, train_limit=256, val_limit=64), data_dir=str(mnist_dir()))
    train_with_exercises(exercises, cfg, _trainer(tmp_path), out=lines.append)
    # its backward is judged against its own (wrong) forward, so the backward parts fail too
    assert lines[0].startswith("your functions in place of scratchvae's: kl_standard_normal "
                               "(FAILS forward, backward dmu")
    assert lines[-1].startswith("note: the forward of kl_standard_normal fails its check")


def test_train_exercises_on_the_command_line(tmp_path, capsys):
    """``python -m scratchvae.train --exercises DIR``: both runs in their own folders, which
    pairs were used, and the two test losses; --resume cannot be combined with it."""
    from scratchvae.train import main

    exercises = tmp_path / "mine"
    exercises.mkdir()
    for name in ("dense", "kl_standard_normal"):
        engine_copy(exercises, name)
    flags = ["--epochs", "1", "--train-limit", "256", "--val-limit", "64", "--no-progress", "--no-figures",
             "--data-dir", str(mnist_dir())]
    assert main(["--exercises", str(exercises), "--out", str(tmp_path / "cmp"), *flags]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("your functions in place of scratchvae's: dense (passes); "
                               "kl_standard_normal (passes)") for line in out)
    yours, engine = (float(read_metrics(tmp_path / f"cmp-{label}")[-1]["test_loss"])
                     for label in ("yours", "scratchvae"))
    assert yours == engine  # the engine's own code, substituted for itself
    assert out[-1] == f"your functions: test {yours:.1f} nats after 1 epoch; scratchvae's: {engine:.1f}"
    assert main(["--exercises", str(exercises), "--resume", str(tmp_path / "cmp-yours")]) == 2
    assert "drop --resume" in capsys.readouterr().err
