"""``python -m scratchvae.experiments paper``: marked sections, the quick experiment end to end
(with a stub classifier and FID, so it takes seconds), resumability and refusals."""
import os
import re
import signal

import numpy as np
import pytest

from scratchvae.runs.checkpoint import load_model
from scratchvae.estimators import preprocess_test_images
from scratchvae.experiments import paper, write_section
from scratchvae.experiments.__main__ import main
from scratchvae.experiments.paper import QUICK, PaperSettings, ensure_trained
from scratchvae.runs import TrainingError, read_metrics
from scratchvae.training import TrainingInterrupted, train

from mnist_data import mnist_dir

TINY = dict(train_limit=128, val_limit=64)  # replaces QUICK's slice: seconds, not a minute
FID_IMAGES = 60


def quiet(*_args, **_kwargs):
    pass


# -- write_section ----------------------------------------------------------------------------

def test_write_section_replaces_only_its_block(tmp_path):
    doc = tmp_path / "doc.md"
    before = "# Title\n\nhand-written\n\n<!-- paper:begin -->\nold\ntable\n<!-- paper:end -->\n\nmiddle\n"
    after = "\n<!-- side-by-side:begin -->\nkept\n<!-- side-by-side:end -->\ntail, no newline"
    doc.write_text(before + after)
    write_section(doc, "paper", "new\n")
    expected = before.replace("old\ntable", "new") + after
    assert doc.read_text() == expected
    write_section(doc, "paper", "new")  # idempotent
    assert doc.read_text() == expected
    write_section(doc, "side-by-side", "")
    assert doc.read_text() == before.replace("old\ntable", "new") + after.replace("kept\n", "\n")
    assert [p.name for p in tmp_path.iterdir()] == ["doc.md"]  # no temporary file left


def test_write_section_appends_when_absent_and_creates_the_file(tmp_path):
    doc = tmp_path / "new.md"
    write_section(doc, "paper", "| a |")
    assert doc.read_text() == "<!-- paper:begin -->\n| a |\n<!-- paper:end -->\n"
    doc.write_text("# Doc\ntext")
    write_section(doc, "side-by-side", "b")
    assert doc.read_text() == "# Doc\ntext\n\n<!-- side-by-side:begin -->\nb\n<!-- side-by-side:end -->\n"


@pytest.mark.parametrize("text", [
    "<!-- paper:begin -->\nno end\n",
    "<!-- paper:end -->\n<!-- paper:begin -->\n",
    "<!-- paper:begin -->\n<!-- paper:end -->\n<!-- paper:begin -->\n<!-- paper:end -->\n",
])
def test_write_section_refuses_broken_markers(tmp_path, text):
    doc = tmp_path / "doc.md"
    doc.write_text(text)
    with pytest.raises(ValueError, match="paper:begin"):
        write_section(doc, "paper", "x")
    assert doc.read_text() == text


# -- the experiment, with a stub classifier and FID -------------------------------------------

def stub_fid(images_a, images_b, classifier, batch_size=1000):
    """Stands in for scratchvae.fid.classifier_fid: checks the inputs, returns a cheap distance."""
    assert classifier == "stub-classifier"
    for images in (images_a, images_b):
        assert isinstance(images, np.ndarray) and images.dtype.kind == "f"
        assert images.shape == (FID_IMAGES, 1, 28, 28)
        assert 0.0 <= images.min() and images.max() <= 1.0
    return float(np.abs(images_a.mean(axis=0) - images_b.mean(axis=0)).sum())


def stub_classifier(cache_dir=None, dataset="mnist", data_dir=None, backend="numpy", log=print):
    """Stands in for scratchvae.classifier.load_or_train_classifier (no training, no cache)."""
    return "stub-classifier", 0.9871


def stub_scoring(monkeypatch):
    monkeypatch.setattr(paper, "load_or_train_classifier", stub_classifier)
    monkeypatch.setattr(paper, "classifier_fid", stub_fid)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick experiment on a tiny slice, run once through the command line."""
    out = tmp_path_factory.mktemp("paper") / "runs"
    with pytest.MonkeyPatch.context() as mp:
        stub_scoring(mp)
        for key, value in TINY.items():
            mp.setitem(QUICK, key, value)
        code = main(["paper", "--quick", "--out", str(out), "--data-dir", str(mnist_dir()),
                     "--fid-images", str(FID_IMAGES), "--no-figures"])  # figures: tested below
    assert code == 0
    return out


def table_rows(markdown):
    """{(table title, z): [cells]} of the generated tables."""
    rows, title = {}, None
    for line in markdown.splitlines():
        if line.startswith("### "):
            title = line[4:]
        elif re.match(r"\| \d+ \|", line):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[(title, int(cells[0]))] = cells[1:]
    return rows


def test_quick_experiment_writes_the_tables_from_the_runs(quick_run):
    markdown = (quick_run / "reproduction.md").read_text()
    assert markdown.startswith("<!-- paper:begin -->") and "<!-- paper:end -->" in markdown
    assert "98.71%" in markdown and "python -m scratchvae.experiments paper --quick" in markdown
    rows = table_rows(markdown)
    expected = {("Table 1: vanilla VAE (`paper-mlp`)", 2): ("paper-mlp", "404,244", "37.49"),
                ("Table 2: convolutional VAE (`paper-conv`)", 2): ("paper-conv", "184,421", "36.72")}
    assert set(rows) == set(expected)
    for key, (model, parameters, paper_train) in expected.items():
        train_loss, val_loss, _, fid_samples, params, p_train, _, _, p_params = rows[key]
        last = read_metrics(quick_run / f"{model}-z2" / "metrics.csv")[-1]
        assert last["epoch"] == "1"
        assert train_loss == f"{float(last['train_loss']):.2f}"
        assert val_loss == f"{float(last['test_loss']):.2f}"
        assert params == p_params == parameters and p_train == paper_train
        assert float(fid_samples) > 0
    # the recon FID is the stub's distance between the test images and their reconstructions
    vae, _ = load_model(quick_run / "paper-mlp-z2")
    from scratchvae.data import load_split

    test = preprocess_test_images(load_split("test", "mnist", str(mnist_dir()))[0][:FID_IMAGES], "unit", 0)
    fid = stub_fid(test, np.asarray(vae.reconstruct(test)), "stub-classifier")
    assert rows[("Table 1: vanilla VAE (`paper-mlp`)", 2)][2] == f"{fid:.2f}"


def test_the_papers_figures_and_their_links(quick_run, tmp_path):
    pytest.importorskip("matplotlib", reason="figures need the plot extra (matplotlib)")
    from scratchvae.experiments.figures import paper_figures

    vae, _ = load_model(quick_run / "paper-mlp-z2")
    images = np.random.default_rng(0).random((50, 1, 28, 28), dtype=np.float32)
    paths = paper_figures(vae, "paper-mlp", images, np.arange(50) % 10, tmp_path / "figs", log=quiet)
    assert [p.name for p in paths] == [f"fig{n}_{what}_paper-mlp_z2.png" for n, what in
                                       ((5, "latent_scatter"), (6, "reconstructions"), (8, "manifold"))]
    for p in paths:
        assert p.read_bytes()[:4] == b"\x89PNG"
    rows = [dict(model="paper-mlp", latent_dim=2, train_loss=1.0, val_loss=2.0, fid_recon=3.0,
                 fid_samples=4.0, parameters=404244, train_seconds=60.0, trained_on="numpy",
                 versions={})]
    links = [f"figures/reproduction/{p.name}" for p in paths]
    markdown = paper.render(rows, 0.99, PaperSettings(), "cmd", 120.0, links)
    assert "Figure 6: reconstructions, z = 2" in markdown and "Figure 7" not in markdown
    for link in links:
        assert f"]({link})" in markdown


def test_a_second_call_trains_nothing(quick_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("train() called for a complete run")

    stub_scoring(monkeypatch)
    monkeypatch.setattr(paper, "train", refuse)
    for key, value in TINY.items():
        monkeypatch.setitem(QUICK, key, value)
    before = table_rows((quick_run / "reproduction.md").read_text())
    assert main(["paper", "--quick", "--out", str(quick_run), "--data-dir", str(mnist_dir()),
                 "--fid-images", str(FID_IMAGES), "--no-figures"]) == 0
    assert not (quick_run / "figures").exists()
    assert table_rows((quick_run / "reproduction.md").read_text()) == before


# -- resuming and refusing run folders ---------------------------------------------------------

def tiny_config(**kw):
    return PaperSettings(data_dir=str(mnist_dir()), **{**TINY, **kw}).train_config("paper-mlp", 2)


def test_an_interrupted_run_is_resumed(tmp_path):
    run_dir = tmp_path / "paper-mlp-z2"

    def ctrl_c(epoch, step, vae):
        if (epoch, step) == (1, 0):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends: saves mid-epoch 2

    with pytest.raises(TrainingInterrupted):  # saved, and said so
        train(tiny_config(epochs=2), out=run_dir, log=quiet, progress=False, figures=False,
              step_hook=ctrl_c)
    assert len(read_metrics(run_dir / "metrics.csv")) == 1
    said = []
    assert ensure_trained(tiny_config(epochs=2), run_dir, log=said.append) is True
    assert "resuming after 1 of 2 epochs" in said[0]
    assert [r["epoch"] for r in read_metrics(run_dir / "metrics.csv")] == ["1", "2"]
    assert ensure_trained(tiny_config(epochs=2), run_dir, log=quiet) is False


def test_a_folder_made_otherwise_is_refused(tmp_path):
    run_dir = tmp_path / "paper-mlp-z2"
    ensure_trained(tiny_config(epochs=2), run_dir, log=quiet)
    files = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(TrainingError, match="train_limit=128, not train_limit=64"):
        ensure_trained(tiny_config(epochs=2, train_limit=64), run_dir, log=quiet)
    with pytest.raises(TrainingError, match="already has 2 epochs, more than 1"):
        ensure_trained(tiny_config(epochs=1), run_dir, log=quiet)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == files


def test_bad_flags_are_clear(tmp_path, capsys):
    assert main(["paper", "--quick", "--fid-images", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--fid-images must be between 2" in capsys.readouterr().err
    assert main(["paper", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["paper", "--doc", str(tmp_path / "no" / "doc.md"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["paper", "--help"])
    assert "--fid-images" in capsys.readouterr().out
