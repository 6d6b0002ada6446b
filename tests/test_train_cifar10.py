"""Training resnet18-vae on CIFAR-10 through the same loop as the MNIST models: the tutorial's
defaults, exact resume, bits per dimension in the evaluation, colour figures and the refusal
of a model/dataset mismatch. CI-sized: small batch files in the official layout (8 records
each) and the architecture at reduced width (4 channels per stage; the full width is
measured in benchmarks/step_time.py)."""
import functools
import json

import numpy as np
import pytest

from scratchvae.runs.checkpoint import load_model, read_checkpoint
from scratchvae.data import cifar10
from scratchvae.models import ARCHITECTURES
from scratchvae.models.architectures import resnet18_vae
from scratchvae.train import main
from scratchvae.training import TrainConfig, train

RECORDS = 8


@pytest.fixture
def cifar_dir(tmp_path, monkeypatch):
    """A cifar-10-batches-bin/ of RECORDS random images per file, the model at width 4."""
    monkeypatch.setattr(cifar10, "RECORDS", RECORDS)
    monkeypatch.setitem(ARCHITECTURES["resnet18-vae"], "build",
                        functools.partial(resnet18_vae, widths=(4, 4, 4, 4)))
    folder = tmp_path / "data" / cifar10.FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in cifar10.MEMBERS:
        rows = rng.integers(0, 256, (RECORDS, cifar10.RECORD_BYTES), dtype=np.uint8)
        rows[:, 0] = rng.integers(0, 10, RECORDS)
        (folder / name).write_bytes(rows.tobytes())
    return str(tmp_path / "data")


def quiet(*_args, **_kwargs):
    pass


def _run(out, data_dir, resume=None, **kw):
    settings = dict(model="resnet18-vae", dataset="cifar10", data_dir=data_dir, batch_size=16, **kw)
    return train(TrainConfig(**settings), out=out, resume=resume, overrides=set(settings),
                 log=quiet, progress=False, figures=False)


def test_defaults_are_the_tutorials():
    cfg = TrainConfig(model="resnet18-vae", dataset="cifar10").resolve()
    assert (cfg.latent_dim, cfg.likelihood, cfg.kl, cfg.lr) == (256, "gaussian-learned-scale", "mc", 1e-4)
    assert cfg.preprocess == "unit"  # pixels / 255 in [0, 1]
    mlp = TrainConfig().resolve()
    assert (mlp.kl, mlp.lr) == ("analytic", 1e-3)
    assert TrainConfig(model="resnet18-vae", dataset="cifar10", kl="analytic", lr=3e-4).resolve().lr == 3e-4


def test_resume_is_exact(tmp_path, cifar_dir):
    straight = _run(tmp_path / "straight", cifar_dir, epochs=2)
    part = _run(tmp_path / "part", cifar_dir, epochs=1)
    train(TrainConfig(model="resnet18-vae", dataset="cifar10", data_dir=cifar_dir, epochs=2),
          resume=part, overrides={"epochs"}, log=quiet, progress=False, figures=False)
    config = json.loads((straight / "config.json").read_text())
    assert (config["kl"], config["lr"], config["dataset"]) == ("mc", 1e-4, "cifar10")
    a = read_checkpoint(straight / "checkpoint.npz")[1]
    b = read_checkpoint(part / "checkpoint.npz")[1]
    assert "param/likelihood.log_scale" in a
    assert float(a["param/likelihood.log_scale"][0]) != 0.0  # the scale is learned
    for k in a:
        if k.startswith(("param/", "optim/", "buffer/")):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_evaluation_reports_bits_per_dimension(tmp_path, cifar_dir):
    from scratchvae.evaluate import evaluate_run

    run_dir = _run(tmp_path / "run", cifar_dir, epochs=1)
    vae, config = load_model(run_dir)
    test_u8, _ = cifar10.load_split("test", cifar_dir)
    result = evaluate_run(run_dir, vae, config, test_u8, k=4, log=quiet)
    # 3072 values per image; a density on [0, 1] gives a 1/256-wide bin about p / 256
    for nats, bits in (("negative_elbo", "negative_elbo_bits_per_dim"), ("iwae_nll", "iwae_nll_bits_per_dim")):
        assert result[bits] == pytest.approx(result[nats] / (3072 * np.log(2)) + 8, rel=1e-12)


def test_figures_are_in_colour_and_the_2d_latent_plots_are_skipped(tmp_path, cifar_dir):
    pytest.importorskip("matplotlib", reason="figures need the plot extra (matplotlib)")
    from matplotlib.image import imread

    from scratchvae.figures import write_figures
    from scratchvae.runs import read_metrics

    run_dir = _run(tmp_path / "run", cifar_dir, epochs=1)
    vae, config = load_model(run_dir)
    test_u8, labels = cifar10.load_split("test", cifar_dir)
    said = []
    written = write_figures(run_dir, vae, test_u8, labels, preprocess=config["preprocess"],
                            dataset=config["dataset"], seed=config["seed"], metrics_rows=read_metrics(run_dir),
                            log=said.append)
    assert sorted(p.name for p in written) == ["loss_curves.png", "reconstructions.png", "samples.png"]
    assert any("latent_scatter.png and manifold_*.png skipped" in s and "256" in s for s in said)
    picture = imread(run_dir / "reconstructions.png")[..., :3]
    assert np.abs(picture[..., 0] - picture[..., 1]).max() > 0.2  # red differs from green: colour


def test_model_and_dataset_must_agree(capsys, cifar_dir):
    code = main(["--model", "resnet18-vae", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "resnet18-vae reads 3x32x32 images but --dataset mnist has 1x28x28" in err
    code = main(["--model", "paper-mlp", "--dataset", "cifar10", "--data-dir", cifar_dir])
    assert code == 2 and "paper-mlp reads 1x28x28 images but --dataset cifar10 has 3x32x32" in \
        capsys.readouterr().err
