"""End-to-end training on a slice of real MNIST: the run folder, exact resume,
Ctrl-C, NaN handling and refusals. Small slices keep each run to a few seconds."""
import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from scratchvae.runs.checkpoint import CheckpointError, load_model, read_checkpoint
from scratchvae.train import main
from scratchvae.runs.folder import RunFolderError
from scratchvae.training import (TrainConfig, TrainingError, TrainingInterrupted, epoch_lr, kl_warmup_beta,
                                 train)

from mnist_data import mnist_dir

SLICE = dict(train_limit=320, val_limit=128, batch_size=64)  # + data_dir, from the fixture below


@pytest.fixture(autouse=True)
def mnist_in_slice(monkeypatch):
    """Every test here trains on real MNIST (skips, saying how to get it, where there is none)."""
    monkeypatch.setitem(SLICE, "data_dir", str(mnist_dir()))


def quiet(*_args, **_kwargs):
    pass


def run(out, **kw):
    settings = {**SLICE, **kw}
    return train(TrainConfig(**settings), out=out, overrides=set(settings), log=quiet,
                 progress=False, figures=False)


def metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


LOSS_COLUMNS = ("train_loss", "test_loss", "test_recon", "test_kl")


def test_cli_run_writes_every_file(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="figures need the plot extra (matplotlib)")
    out = tmp_path / "run"
    code = main(["--data-dir", SLICE["data_dir"], "--train-limit", "256", "--val-limit", "200",
                 "--epochs", "2", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "parameters: 404,244" in printed and "nats/image" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "paper-mlp" and config["latent_dim"] == 2 and config["backend"] == "numpy"
    assert config["versions"]["numpy"] == np.__version__
    rows = metrics(out)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert abs(float(r["test_loss"]) - float(r["test_recon"]) - float(r["test_kl"])) < 2e-3
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])  # it learns
    for name in ("checkpoint.npz", "latent_scatter.png", "manifold_15x15.png", "manifold_30x30.png",
                 "reconstructions.png", "samples.png", "loss_curves.png"):
        assert (out / name).is_file(), name
    vae, cfg = load_model(out)
    assert vae.num_params() == 404244 and cfg["epochs"] == 2


def test_resume_gives_the_same_metrics_as_a_straight_run(tmp_path):
    straight = run(tmp_path / "straight", epochs=4)
    part = run(tmp_path / "part", epochs=2)
    train(TrainConfig(**SLICE, epochs=4), resume=part, overrides={"epochs"}, log=quiet,
          progress=False, figures=False)
    a, b = metrics(straight), metrics(part)
    assert len(a) == len(b) == 4
    for ra, rb in zip(a, b):
        assert [ra[k] for k in LOSS_COLUMNS] == [rb[k] for k in LOSS_COLUMNS]
    pa, pb = read_checkpoint(straight / "checkpoint.npz")[1], read_checkpoint(part / "checkpoint.npz")[1]
    for k in pa:
        if k.startswith(("param/", "optim/")):
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(tmp_path):
    straight = run(tmp_path / "straight", epochs=2, model="paper-conv", train_limit=192, val_limit=64)

    def interrupt(epoch, step, vae):
        if (epoch, step) == (0, 1):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    out = tmp_path / "interrupted"
    settings = {**SLICE, "epochs": 2, "model": "paper-conv", "train_limit": 192, "val_limit": 64}
    with pytest.raises(TrainingInterrupted, match="saved epoch 1 step 2") as info:
        train(TrainConfig(**settings), out=out, log=quiet, progress=False, figures=False,
              step_hook=interrupt)
    assert f"--resume {out} --epochs 2" in info.value.message
    meta, _ = read_checkpoint(out / "checkpoint.npz")
    assert meta["position"]["epoch"] == 0 and meta["position"]["step"] == 2
    assert metrics(out) == []
    train(TrainConfig(**settings), resume=out, log=quiet, progress=False, figures=False)
    for ra, rb in zip(metrics(straight), metrics(out), strict=True):
        assert [ra[k] for k in LOSS_COLUMNS] == [rb[k] for k in LOSS_COLUMNS]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = run(tmp_path / "run", epochs=1)
    before = (out / "checkpoint.npz").read_bytes()

    def poison(epoch, step, vae):
        if step == 1:
            vae.params["decoder.2.b"][...] = np.nan

    with pytest.raises(TrainingError, match="last good checkpoint") as info:
        train(TrainConfig(**SLICE, epochs=2), resume=out, overrides={"epochs"}, log=quiet,
              progress=False, figures=False, step_hook=poison)
    assert "nan" in str(info.value)
    assert (out / "checkpoint.npz").read_bytes() == before


def test_resume_refuses_another_architecture_and_overwrites_nothing(tmp_path, capsys):
    out = run(tmp_path / "run", epochs=1)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    code = main(["--resume", str(out), "--model", "paper-conv", "--epochs", "3", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "model='paper-mlp'" in err and "--out" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    with pytest.raises(RunFolderError, match="already holds a run"):
        run(out, epochs=1)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_checkpoint_for_another_architecture_is_refused(tmp_path):
    from scratchvae.runs.checkpoint import restore
    from scratchvae.models import build_vae

    out = run(tmp_path / "run", epochs=1)
    meta, arrays = read_checkpoint(out / "checkpoint.npz")
    other = build_vae("paper-mlp", latent_dim=5)
    with pytest.raises(CheckpointError, match="latent_dim=2"):
        restore(other, None, meta, arrays, out / "checkpoint.npz")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    out = run(tmp_path / "run", epochs=1)
    (out / "checkpoint.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="not a readable scratchvae checkpoint"):
        load_model(out)


def test_bad_flags_are_clear(tmp_path, capsys):
    assert main(["--epochs", "0", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "y"), "--no-progress"]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_resume_keeps_the_runs_own_settings(tmp_path):
    """Flags left out on resume come from the run (backend, slice, validation size), not defaults."""
    from scratchvae.training import prepare_run

    out = run(tmp_path / "run", epochs=1, val_limit=96)
    cfg = TrainConfig(epochs=2, backend="cupy")  # what the run was made with must win
    prepare_run(cfg, None, out, {"epochs"})
    assert (cfg.train_limit, cfg.val_limit, cfg.backend) == (320, 96, "numpy")


# -- posterior-collapse remedies: KL warm-up and free bits -------------------------------------
def test_kl_warmup_beta_schedule():
    # 1.5 epochs of 10 steps: 0 at the first step, linear, the full beta from step 15 on
    assert [kl_warmup_beta(2.0, t, 10, 1.5) for t in (0, 3, 6, 15, 16, 400)] == \
        [0.0, 2.0 * 3 / 15, 2.0 * 6 / 15, 2.0, 2.0, 2.0]
    assert kl_warmup_beta(2.0, 7, 10, 1.0) == pytest.approx(1.4)
    assert kl_warmup_beta(1, 0, 10, 0.0) == 1.0 and kl_warmup_beta(0.5, 3, 10, 0) == 0.5
    assert isinstance(kl_warmup_beta(1, 0, 10, 0.0), float)


def test_options_off_are_the_plain_loop(tmp_path):
    """kl_warmup = 0 and free_bits = 0 train exactly the plain loop: forward, backward(), Adam."""
    from scratchvae.backend import to_device
    from scratchvae.data import load_split, prepare_batch
    from scratchvae.models import build_vae
    from scratchvae.optim import Adam

    out = run(tmp_path / "run", epochs=1, kl_warmup=0.0, free_bits=0.0)
    images = load_split("train", data_dir=SLICE["data_dir"])[0][: SLICE["train_limit"]]
    vae = build_vae("paper-mlp", seed=0)
    opt = Adam(vae.params, vae.grads, lr=1e-3)
    order = np.random.default_rng([0, 0]).permutation(len(images))
    for step in range(len(images) // 64):
        vae.rng.reseed(0, 0, step)
        x = prepare_batch(to_device(images[order[step * 64 : (step + 1) * 64]], "numpy"), "unit",
                          vae.rng, vae.dtype)
        vae.forward(x, training=True)
        vae.backward()
        opt.step()
    saved = read_checkpoint(out / "checkpoint.npz")[1]
    for k, v in vae.params.items():
        np.testing.assert_array_equal(saved[f"param/{k}"], v, err_msg=k)


def test_resume_is_exact_with_kl_warmup_and_free_bits(tmp_path):
    remedies = dict(kl_warmup=1.5, free_bits=0.3)  # the warm-up runs across the resume point
    straight = run(tmp_path / "straight", epochs=2, **remedies)
    part = run(tmp_path / "part", epochs=1, **remedies)
    train(TrainConfig(**SLICE, epochs=2, **remedies), resume=part, overrides={"epochs"}, log=quiet,
          progress=False, figures=False)
    a, b = metrics(straight), metrics(part)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        assert [ra[k] for k in LOSS_COLUMNS] == [rb[k] for k in LOSS_COLUMNS]
        # the reported test loss is the true negative ELBO (beta = 1): recon + the true KL
        assert abs(float(ra["test_loss"]) - float(ra["test_recon"]) - float(ra["test_kl"])) < 2e-3
    pa, pb = read_checkpoint(straight / "checkpoint.npz")[1], read_checkpoint(part / "checkpoint.npz")[1]
    for k in pa:
        if k.startswith(("param/", "optim/")):
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    # the remedies change training, and each one on its own does
    plain = metrics(run(tmp_path / "plain", epochs=2))
    warm = metrics(run(tmp_path / "warm", epochs=2, kl_warmup=1.5))
    floor = metrics(run(tmp_path / "floor", epochs=2, free_bits=0.3))
    for other in (a, warm, floor):
        assert [r["test_loss"] for r in other] != [r["test_loss"] for r in plain]
    config = json.loads((straight / "config.json").read_text())
    assert (config["kl_warmup"], config["free_bits"]) == (1.5, 0.3)
    from scratchvae.runs.checkpoint import load_model
    assert load_model(straight)[0].free_bits == 0.3


def test_remedy_flags_are_checked(tmp_path, capsys):
    for flags, message in ((["--free-bits", "-1"], "--free-bits must be a finite number >= 0"),
                           (["--free-bits", "0.5", "--kl", "mc"], "--free-bits needs --kl analytic")):
        assert main(flags + ["--out", str(tmp_path / "x"), "--no-progress"]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    # neither may change on resume
    out = run(tmp_path / "run", epochs=1, kl_warmup=1.0)
    for flags, shown in ((["--kl-warmup", "2"], "kl_warmup=1.0"), (["--free-bits", "0.5"], "free_bits=0.0")):
        assert main(["--resume", str(out), "--epochs", "2", "--no-progress"] + flags) == 2
        err = capsys.readouterr().err
        assert shown in err and "cannot change on resume" in err


def test_lr_decay_schedule_resume_and_checks(tmp_path, capsys):
    """--lr-decay: epoch e trains at lr * decay**e (1 = exactly the constant rate), a resumed run
    repeats a straight one bit for bit, the rate changes training, and bad values are refused."""
    assert [epoch_lr(1e-3, 0.5, e) for e in range(3)] == [1e-3, 5e-4, 2.5e-4]
    assert all(epoch_lr(3e-3, 1.0, e) == 3e-3 for e in range(50))
    straight = run(tmp_path / "straight", epochs=2, lr_decay=0.5)
    part = run(tmp_path / "part", epochs=1, lr_decay=0.5)
    train(TrainConfig(**SLICE, epochs=2, lr_decay=0.5), resume=part, overrides={"epochs"}, log=quiet,
          progress=False, figures=False)
    pa, pb = read_checkpoint(straight / "checkpoint.npz")[1], read_checkpoint(part / "checkpoint.npz")[1]
    for k in pa:
        if k.startswith(("param/", "optim/")):
            np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)
    # epoch 1 runs at lr itself (decay**0), epoch 2 at half of it
    constant, decayed = metrics(run(tmp_path / "constant", epochs=2)), metrics(straight)
    assert [constant[0][k] for k in LOSS_COLUMNS] == [decayed[0][k] for k in LOSS_COLUMNS]
    assert [constant[1][k] for k in LOSS_COLUMNS] != [decayed[1][k] for k in LOSS_COLUMNS]
    for value in ("0", "1.5"):
        assert main(["--lr-decay", value, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
        assert "--lr-decay must be in (0, 1]" in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
