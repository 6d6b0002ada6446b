"""``python -m scratchvae.experiments nll``: the quick run end to end on a tiny slice (its curve,
its section and their agreement with the checkpoint), resuming, re-scoring, interruptions,
``--render-only`` and refusals."""
import csv
import io
import json
import os
import re
import shutil

import numpy as np
import pytest

from scratchvae.runs.checkpoint import load_model
from scratchvae.data import load_split
from scratchvae.estimators import importance_weighted_log_likelihood, negative_elbo, preprocess_test_images
from scratchvae.experiments import nll, paper
from scratchvae.experiments.__main__ import main
from scratchvae.experiments.paper import ExperimentInterrupted
from scratchvae.runs import read_metrics

from mnist_data import mnist_dir

TINY = dict(train_limit=128, eval_images=32, k=10)  # replaces QUICK's slice: seconds, not a minute


def quick(out, *flags):
    """The quick command on the tiny slice, without the plot (tested on its own below)."""
    return ["nll", "--quick", "--out", str(out), "--data-dir", str(mnist_dir()), "--no-figures", *flags]


@pytest.fixture
def tiny(monkeypatch):
    for key, value in TINY.items():
        monkeypatch.setitem(nll.QUICK, key, value)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One epoch, then the same command with --epochs 2 (a resume); returns the run folder and
    what the first call left."""
    out = tmp_path_factory.mktemp("nll") / "run"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in TINY.items():
            mp.setitem(nll.QUICK, key, value)
        assert main(quick(out)) == 0
        after_one = {name: (out / name).read_text() for name in ("nll.csv", "metrics.csv")}
        assert main(quick(out, "--epochs", "2")) == 0
    return out, after_one


def copy_run(run, to):
    """The run folder, its checkpoint hard-linked (written atomically, so never shared after)."""
    shutil.copytree(run, to, copy_function=os.link)
    return to


def table(markdown):
    """{epoch: cells} of the generated curve table."""
    return {int(m[0]): [c.strip() for c in m[1].split("|")]
            for m in re.findall(r"^\| (\d+) \|(.*)\|$", markdown, re.MULTILINE)}


def test_the_curve_agrees_with_training_and_the_checkpoint(quick_run):
    out, _ = quick_run
    rows = nll.read_curve(out)
    assert sorted(rows) == [1, 2]
    metrics = read_metrics(out / "metrics.csv")
    config = json.loads((out / "config.json").read_text())
    assert (config["model"], config["latent_dim"], config["binarize"], config["train_limit"],
            config["val_limit"]) == ("nll-conv", 32, True, 128, 32)
    for epoch, row in rows.items():
        assert (int(row["images"]), int(row["k"])) == (32, 10)
        # the same images, binarization and noise as training's per-epoch test loss
        assert row["test_negative_elbo"] == metrics[epoch - 1]["test_loss"]
        elbo, iwae = float(row["test_negative_elbo"]), float(row["iwae_nll"])
        assert iwae < elbo  # K = 10 tightens the bound: nats, not noise, below the ELBO here
        assert float(row["train_seconds"]) == pytest.approx(
            sum(float(m["seconds"]) for m in metrics[:epoch]), abs=0.02)
    # the last row is the checkpoint's score, reproduced exactly; K = 1 is the negative ELBO
    # up to Monte-Carlo noise (a one-sample estimate, where the ELBO uses the analytic KL)
    vae, _ = load_model(out)
    x = preprocess_test_images(load_split("test", "mnist", str(mnist_dir()))[0][:32], "binarize", 0)
    log_px = importance_weighted_log_likelihood(vae, x, k=10, seed=0)
    assert rows[2]["iwae_nll"] == f"{-log_px.mean():.4f}"
    assert rows[2]["iwae_nll_stderr"] == f"{log_px.std(ddof=1) / np.sqrt(32):.4f}"
    one = importance_weighted_log_likelihood(vae, x, k=1, seed=0)
    elbo = negative_elbo(vae, x, seed=0)["negative_elbo"]
    assert abs(-one.mean() - elbo) < 3 * one.std(ddof=1) / np.sqrt(32)
    assert -log_px.mean() <= -one.mean() + 3 * one.std(ddof=1) / np.sqrt(32)


def test_the_section_is_the_curve(quick_run):
    out, _ = quick_run
    markdown = (out / "reproduction.md").read_text()
    assert markdown.startswith("<!-- nll:begin -->") and markdown.rstrip().endswith("<!-- nll:end -->")
    rows = nll.read_curve(out)
    cells = table(markdown)
    assert sorted(cells) == [1, 2]
    for epoch, row in rows.items():
        elbo, iwae, se, k, images, minutes = cells[epoch]
        assert (elbo, iwae, se) == tuple(f"{float(row[c]):.2f}" for c in
                                         ("test_negative_elbo", "iwae_nll", "iwae_nll_stderr"))
        assert (k, images) == ("10", "32")
        assert minutes == f"{float(row['train_seconds']) / 60:.1f}"
    command = "python -m scratchvae.experiments nll --quick --out"
    assert f"`{command} {out} " in markdown and "--epochs 2`" in markdown
    assert re.search(r"\(run [23] times, each resuming where the last stopped\)", markdown)
    assert f"**{float(rows[2]['iwae_nll']):.2f}**" in markdown
    assert "86.76" in markdown and "84.78" in markdown and "not reached" in markdown
    assert "6,881,473 parameters" in markdown and "the first 128 training images" in markdown


def test_resuming_keeps_the_first_epoch_and_a_repeat_does_nothing(quick_run, monkeypatch, tiny):
    out, after_one = quick_run
    one = after_one["nll.csv"].splitlines()
    assert one[0] == ",".join(nll.CURVE_FIELDS)
    assert (out / "nll.csv").read_text().splitlines()[:2] == one  # epoch 1's row kept as it was
    assert read_metrics(out / "metrics.csv")[0] == read_metrics_text(after_one["metrics.csv"])[0]

    def refuse(*args, **kwargs):
        raise AssertionError("trained or scored again")

    monkeypatch.setattr(paper, "train", refuse)
    monkeypatch.setattr(nll, "evaluate_epoch", refuse)
    before = (out / "nll.csv").read_text()
    assert main(quick(out, "--epochs", "2")) == 0
    assert (out / "nll.csv").read_text() == before
    invocations = json.loads((out / "nll.json").read_text())["invocations"]
    assert [r["epochs"] for r in invocations][:3] == [1, 2, 2]
    assert all(r["backend"] == "numpy" for r in invocations)
    assert invocations[0]["wall_seconds"] > 0 and invocations[1]["wall_seconds"] > 0  # they trained


def read_metrics_text(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_the_last_epoch_is_scored_again_with_other_settings(quick_run, tmp_path, tiny):
    run = copy_run(quick_run[0], tmp_path / "run")
    before = nll.read_curve(run)
    said = []
    nll.run_nll(nll.NLLSettings(**{**nll.QUICK, "epochs": 2, "eval_images": 24},
                                data_dir=str(mnist_dir())), run, figures=False, log=said.append)
    after = nll.read_curve(run)
    assert after[1] == before[1]  # the run is past epoch 1: its row stays as it was
    assert (int(after[2]["images"]), int(after[2]["k"])) == (24, 10)
    assert any("epoch 1: kept its row" in s for s in said)


def test_an_interruption_keeps_the_curve_and_writes_the_section(quick_run, tmp_path, monkeypatch, tiny):
    run = copy_run(quick_run[0], tmp_path / "run")
    before = (run / "nll.csv").read_text()

    def ctrl_c(cfg, run_dir, log=print, must_match=(), companions=()):
        raise ExperimentInterrupted(f"{run_dir}: interrupted; run the same command again to resume")

    monkeypatch.setattr(nll, "ensure_trained", ctrl_c)
    assert main(quick(run, "--epochs", "3")) == 130
    assert (run / "nll.csv").read_text() == before
    assert "2 of the planned 3 epochs" in (run / "reproduction.md").read_text()

    def stop(*args, **kwargs):  # Ctrl-C while scoring (no handler there: a KeyboardInterrupt)
        raise KeyboardInterrupt

    monkeypatch.setattr(nll, "ensure_trained", paper.ensure_trained)  # epoch 2 is complete
    monkeypatch.setattr(nll, "evaluate_epoch", stop)
    assert main(quick(run, "--epochs", "2", "--eval-images", "24")) == 130
    assert (run / "nll.csv").read_text() == before
    invocations = json.loads((run / "nll.json").read_text())["invocations"]
    assert [r["epochs"] for r in invocations[-2:]] == [3, 2]  # both recorded, with their time
    assert all(r["wall_seconds"] >= 0 for r in invocations[-2:])


def test_render_only_redraws_from_the_small_files(quick_run, tmp_path, monkeypatch, tiny):
    pytest.importorskip("matplotlib", reason="the plot needs the plot extra (matplotlib)")
    out = quick_run[0]
    copy = tmp_path / "copied"
    copy.mkdir()
    for name in ("config.json", "metrics.csv", "nll.csv", "nll.json"):
        shutil.copy(out / name, copy / name)
    doc = tmp_path / "docs" / "reproduction.md"
    doc.parent.mkdir()
    doc.write_text("# Reproduction\n\nhand-written\n")
    assert main(["nll", "--render-only", "--out", str(copy), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Reproduction\n\nhand-written\n\n<!-- nll:begin -->")
    assert table(text) == table((out / "reproduction.md").read_text())
    assert "![IWAE NLL and negative ELBO against epochs](figures/reproduction/nll_curve.png)" in text
    assert (doc.parent / "figures" / "reproduction" / "nll_curve.png").read_bytes()[:4] == b"\x89PNG"
    # training on from a copy without its checkpoint would start a new run under the old curve
    assert main(quick(copy, "--epochs", "3")) == 2


def test_evaluation_schedule():
    assert nll.evaluation_epochs(10, 3) == [3, 6, 9, 10]
    assert nll.evaluation_epochs(1, 10) == [1]
    assert nll.evaluation_epochs(20, 10) == [10, 20]
    s = nll.NLLSettings(epochs=20, eval_images=10_000, curve_images=1000)
    assert [s.images_at(e) for e in (10, 20)] == [1000, 10_000]
    assert nll.NLLSettings(epochs=20).images_at(10) == 10_000


def test_bad_flags_and_other_settings_are_refused(quick_run, tmp_path, capsys, tiny):
    out = quick_run[0]
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(quick(out, "--latent-dim", "8", "--epochs", "2")) == 2
    assert "latent_dim=32, not latent_dim=8" in capsys.readouterr().err
    assert main(quick(out, "--kl-warmup", "1", "--epochs", "2")) == 2
    assert "kl_warmup=10.0, not kl_warmup=1.0" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    for flags, message in ((["--eval-every", "0"], "--eval-every must be at least 1"),
                           (["--k", "0"], "--k must be at least 1"),
                           (["--eval-images", "10001"], "--eval-images must be between 1 and 10,000"),
                           (["--curve-images", "0"], "--curve-images must be between 1")):
        assert main(quick(tmp_path / "x", *flags)) == 2
        assert message in capsys.readouterr().err
    assert main(["nll", "--render-only", "--out", str(tmp_path / "x")]) == 2
    assert "holds no nll.csv" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["nll", "--help"])
    assert "--curve-images" in capsys.readouterr().out
