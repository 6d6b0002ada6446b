"""The explorer page without a browser: the decoder's program, what the page embeds (and that it
asks for nothing), its size, the refusal to write over anything but an explorer page, and the
``python -m scratchvae.explore`` command line. tests/test_explorer_browser.py runs the page."""
import base64
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest

from run_files import untrained_run

from scratchvae import explore
from scratchvae.explorer import (EXPLORER_NAME, MARKER, ExplorerError, UnsupportedDecoder, decoder_program, explorer_html,
                                 page_data, view_extent, write_explorer)
from scratchvae.layers import GlobalAvgPool2d
from scratchvae.models import ARCHITECTURES, build_vae
from scratchvae.optim import Adam
from scratchvae.runs.checkpoint import save_checkpoint

GRID = np.linspace(-1.64, 1.64, 15)


def synthetic_images(n, shape=(1, 28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + tuple(shape)).astype(np.float32), rng.integers(0, 10, n)


def embedded_data(html):
    """The page's JSON, as the page's script reads it."""
    text = re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    return json.loads(text)


SMALL = dict(options=dict(widths=(4, 8, 8, 8), image_size=16))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_the_program_embeds_every_decoder_parameter_once(name):
    """Weights: the decoder's parameters, every one (batch norm's gamma and beta become scale and
    shift, as many), and nothing else; every operation's offsets lie inside the buffer."""
    vae = build_vae(name, seed=0, **(SMALL if name == "resnet18-vae" else {}))
    program = decoder_program(vae)
    decoder_params = sum(v.size for k, v in vae.params.items() if k.startswith("decoder."))
    assert program["weights"].dtype == np.float32 and program["weights"].size == decoder_params
    assert program["output_shape"] == list(vae.image_shape)

    def offsets(ops):
        for op in ops:
            for key in ("w", "b", "scale", "shift"):
                if op.get(key, -1) >= 0:
                    yield op[key]
            for key in ("body", "shortcut"):
                yield from offsets(op.get(key) or [])

    assert all(0 <= o < program["weights"].size for o in offsets(program["ops"]))
    kinds = json.dumps(program["ops"])
    assert "dropout" not in kinds.lower()  # the identity in evaluation mode


def test_the_program_holds_the_engines_weights_in_the_documented_layouts():
    vae = build_vae("paper-conv", seed=0)
    program = decoder_program(vae)
    ops, w = program["ops"], program["weights"]
    dense = ops[0]
    assert dense["op"] == "dense" and (dense["in"], dense["out"]) == (2, 3136)
    np.testing.assert_array_equal(w[dense["w"]:dense["w"] + 2 * 3136].reshape(2, 3136), vae.params["decoder.0.W"])
    conv_t = next(op for op in ops if op["op"] == "conv_transpose2d")
    engine = vae.params["decoder.3.W"]  # (C_in, C_out, kh, kw) -> (kh, kw, C_in, C_out)
    np.testing.assert_array_equal(w[conv_t["w"]:conv_t["w"] + engine.size].reshape(3, 3, 64, 64),
                                  engine.transpose(2, 3, 0, 1))
    assert ops[-1] == {"op": "sigmoid"}  # the Bernoulli's mean
    # multiply-adds: the dense layer, then each transposed convolution's inputs x C_out x k^2
    assert program["macs"] == 2 * 3136 + 7 * 7 * 64 * 64 * 9 + 14 * 14 * 64 * 32 * 9 + 28 * 28 * 32 * 9


def test_batch_norm_becomes_one_affine_map_of_the_running_statistics():
    vae = build_vae("resnet18-vae", seed=0, **SMALL)
    name = next(k for k in vae.buffers if k.startswith("decoder.") and k.endswith("running_var"))
    prefix = name[: -len("running_var")]
    vae.buffers[prefix + "running_mean"][...] = 0.5
    vae.buffers[prefix + "running_var"][...] = 3.0
    vae.params[prefix + "gamma"][...] = 2.0
    vae.params[prefix + "beta"][...] = 0.25
    w = decoder_program(vae)["weights"]
    scale = 2.0 / np.sqrt(3.0 + 1e-5)
    hits = np.flatnonzero(np.isclose(w, scale, rtol=1e-6, atol=0))
    assert hits.size == vae.buffers[name].size  # one scale per channel, then the shifts
    np.testing.assert_allclose(w[hits + hits.size], 0.25 - 0.5 * scale, rtol=1e-6)


def test_a_layer_without_javascript_is_refused_by_name():
    vae = build_vae("paper-mlp", seed=0)
    vae.decoder.layers.insert(2, GlobalAvgPool2d())
    with pytest.raises(UnsupportedDecoder, match="GlobalAvgPool2d"):
        decoder_program(vae)


def test_view_extent_covers_the_codes_and_the_grid():
    rng = np.random.default_rng(0)
    mu = rng.normal(0, 1.5, (2000, 3))
    r = view_extent(mu, GRID)
    assert r % 0.5 == 0 and np.mean(np.abs(mu) <= r) >= 0.995 and r >= 1.64
    assert view_extent(np.zeros((5, 2)), GRID) == 2.0


def test_the_page_is_self_contained_and_asks_for_nothing(tmp_path):
    vae = build_vae("paper-mlp", seed=0)
    images, labels = synthetic_images(50)
    page = write_explorer(vae, images, labels, tmp_path / "e.html", grid=GRID)
    html = page.path.read_text(encoding="utf-8")
    assert page.size == page.path.stat().st_size and page.live
    assert MARKER in html[:200]
    assert not re.search(r"https?:|//[a-z]", html.split('<script id="explorer-data"')[0], re.I)
    assert not re.search(r"\b(src|href)\s*=\s*\"(?!data:)", html)  # nothing loaded but inline data
    assert "default-src 'none'" in html  # the browser refuses any request the page might make
    assert "@import" not in html and "url(" not in html
    data = embedded_data(html)
    codes = np.frombuffer(base64.b64decode(data["codes"]), "<f4").reshape(50, 2)
    assert np.array_equal(np.frombuffer(base64.b64decode(data["labels"]), np.uint8), labels)
    np.testing.assert_allclose(codes, vae.encode(images)[0], rtol=1e-6)


@pytest.mark.parametrize("model, limit_mib", [("paper-mlp", 2.0), ("paper-conv", 1.0)])
def test_a_full_test_set_page_is_small(tmp_path, model, limit_mib):
    """A few MB at most for the paper's models at z = 2 with all 10,000 test images."""
    vae = build_vae(model, seed=0)
    data = page_data(vae, np.random.default_rng(0).normal(size=(10_000, 2)),
                     np.arange(10_000) % 10, grid=GRID)
    size = len(explorer_html(data).encode())
    assert data["meta"]["points"] == 10_000 and size < limit_mib * 2**20


def test_many_dimensions_embed_the_first_codes_only():
    vae = build_vae("paper-mlp", latent_dim=256, seed=0)
    data = page_data(vae, np.zeros((10_000, 256)), np.zeros(10_000, int), max_code_bytes=2**20)
    assert data["meta"]["points"] == 2**20 // (4 * 256) and data["meta"]["total"] == 10_000
    assert len(base64.b64decode(data["codes"])) == data["meta"]["points"] * 256 * 4


def test_the_cifar10_model_gets_a_page_of_codes_and_says_why():
    vae = build_vae("resnet18-vae", seed=0)
    data = page_data(vae, np.zeros((10, 256)), np.arange(10))
    assert data["decoder"] is None
    assert "746 million multiply-adds per image" in data["meta"]["decoder_note"]


def test_labels_need_class_names_and_codes_must_be_finite():
    vae = build_vae("paper-mlp", seed=0)
    with pytest.raises(ExplorerError, match="not finite"):
        page_data(vae, np.full((10, 2), np.nan), np.arange(10))
    with pytest.raises(ValueError, match="label 9 has no class name"):
        page_data(vae, np.zeros((10, 2)), np.arange(10), class_names=["a", "b"])


def test_only_an_explorer_page_is_ever_replaced(tmp_path):
    vae = build_vae("paper-mlp", seed=0)
    images, labels = synthetic_images(10)
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    with pytest.raises(ExplorerError, match="is not an explorer page; it was left as it is"):
        write_explorer(vae, images, labels, mine)
    assert mine.read_text() == "<html>my notes</html>"
    (tmp_path / "folder.html").mkdir()
    with pytest.raises(ExplorerError, match="is a folder"):
        write_explorer(vae, images, labels, tmp_path / "folder.html")
    page = tmp_path / "explorer.html"
    write_explorer(vae, images, labels, page, title="first")
    write_explorer(vae, images, labels, page, title="second")  # its own page: replaced
    assert embedded_data(page.read_text())["meta"]["title"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explorer.html", "folder.html", "notes.html"]


# -- the command line ----------------------------------------------------------------------------

@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A run folder with a checkpoint of an untrained fashion-mnist paper-conv, and a fake test
    split (random uint8 images) in place of the dataset."""
    run = untrained_run(tmp_path / "run", "paper-conv", "fashion-mnist", "unit")
    rng = np.random.default_rng(0)
    fake = (rng.integers(0, 256, (40, 28, 28)).astype(np.uint8), rng.integers(0, 10, 40).astype(np.uint8))
    monkeypatch.setattr(explore, "load_split", lambda split, dataset, data_dir: fake)
    return run


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def test_explore_writes_the_page_and_says_where(run_dir, capsys):
    before = digests(run_dir)
    assert explore.main([str(run_dir), "--limit", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {run_dir / 'explorer.html'} (") and "open it in a browser" in out
    meta = embedded_data((run_dir / "explorer.html").read_text())["meta"]
    assert meta["class_names"][9] == "Ankle boot" and meta["points"] == 30 and meta["model"] == "paper-conv"
    assert len(meta["grid"]) == 15 and meta["grid"][0] == pytest.approx(-1.6449, abs=1e-4)
    after = digests(run_dir)
    assert {k: after[k] for k in before} == before and set(after) - set(before) == {"explorer.html"}


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_explore_refuses_bad_runs_in_one_line(run_dir, tmp_path, capsys):
    assert explore.main([str(tmp_path / "nope")]) == 2
    assert "no such run folder" in one_line_error(capsys)
    young = tmp_path / "young"  # a run before its first checkpoint: config.json only
    young.mkdir()
    (young / "config.json").write_text((run_dir / "config.json").read_text())
    assert explore.main([str(young)]) == 2
    assert "no checkpoint.npz" in one_line_error(capsys) and not (young / "explorer.html").exists()
    (young / "checkpoint.npz").write_bytes(b"not a zip")
    assert explore.main([str(young)]) == 2
    assert "not a readable scratchvae checkpoint" in one_line_error(capsys)
    assert explore.main([str(run_dir), "--limit", "0"]) == 2
    assert "--limit must be at least 1" in one_line_error(capsys)


def test_explore_never_writes_over_the_users_files(run_dir, capsys):
    before = digests(run_dir)
    assert explore.main([str(run_dir), "--out", str(run_dir / "checkpoint.npz")]) == 2
    assert "is not an explorer page; it was left as it is" in one_line_error(capsys)
    (run_dir / "explorer.html").mkdir()
    assert explore.main([str(run_dir)]) == 2
    assert "is a folder" in one_line_error(capsys)
    assert explore.main([str(run_dir), "--out", str(run_dir / "config.json" / "explorer.html")]) == 1
    assert "config.json" in one_line_error(capsys)  # an OS error: a file where a folder should be
    assert digests(run_dir) == before and not list(run_dir.glob(".*.tmp"))


def test_explore_reads_a_run_that_is_still_training(run_dir, capsys):
    """As plot and evaluate: a run whose trainer holds the lock is read through its latest
    checkpoint, without the lock, and nothing of the trainer's is touched."""
    from scratchvae.runs import RunFolder

    before = digests(run_dir)
    with RunFolder(run_dir).lock():
        assert explore.main([str(run_dir)]) == 0
    assert (run_dir / "explorer.html").is_file()
    capsys.readouterr()
    after = digests(run_dir)
    assert all(after[k] == v for k, v in before.items())


# -- the command line as a process: a folder it may not write, a file-size limit -------------------

SETPRIV = shutil.which("setpriv")
# root passes permission checks through its capabilities; without them (util-linux's setpriv) a
# root process meets a folder's mode bits as any user does
AS_USER = (SETPRIV, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--") \
    if os.geteuid() == 0 and SETPRIV else ()


def explore_process(args, prefix=(), limit_bytes=None, env=None):
    def preexec():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([*prefix, sys.executable, "-m", "scratchvae.explore", *args], capture_output=True,
                          text=True, timeout=120, preexec_fn=preexec, env=dict(os.environ, **(env or {})))


def test_explore_in_a_folder_it_may_not_write_says_so_in_one_line(run_dir):
    if os.geteuid() == 0 and not SETPRIV:
        pytest.skip("as root, a folder's mode bits bind only without root's capabilities (util-linux's setpriv)")
    before = digests(run_dir)
    run_dir.chmod(0o555)
    try:
        done = explore_process([str(run_dir)], prefix=AS_USER)
    finally:
        run_dir.chmod(0o755)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"error: Permission denied ({run_dir / 'explorer.html'}): permission denied; "
                                   "choose a folder you may write to, or fix its permissions")
    assert digests(run_dir) == before


def test_a_failed_write_leaves_the_previous_page(tmp_path):
    """A file-size limit stops the write: one line, exit 1, the old page as it was, no temporary
    file. Needs the MNIST test split (the command loads it in its own process)."""
    from mnist_data import mnist_dir

    data = mnist_dir()
    run = tmp_path / "run"
    run.mkdir()
    config = dict(model="paper-mlp", latent_dim=2, likelihood="bernoulli", beta=1.0, kl="analytic",
                  variance=0.5, seed=0, dataset="mnist", data_dir=None, preprocess="unit", dtype="float32")
    vae = build_vae("paper-mlp", seed=0)
    save_checkpoint(run / "checkpoint.npz", vae, Adam(vae.params, vae.grads),
                    dict(epoch=0, step=0, loss_sum=0.0), config, [])
    env = dict(SCRATCHVAE_DATA=str(data))
    assert explore_process([str(run), "--limit", "200"], env=env).returncode == 0
    old = (run / "explorer.html").read_bytes()
    done = explore_process([str(run), "--limit", "300"], limit_bytes=len(old) // 2, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: File too large") and len(done.stderr.strip().splitlines()) == 1
    assert (run / "explorer.html").read_bytes() == old and not list(run.glob(".*.tmp"))


def test_training_writes_the_page_with_its_figures_unless_told_not_to(tmp_path):
    """A default run of the real command writes RUN/explorer.html beside the PNG figures (also
    without matplotlib, which the page does not need); --no-figures writes neither."""
    from mnist_data import mnist_dir

    from scratchvae.train import main as train_main

    flags = ["--train-limit", "64", "--val-limit", "32", "--epochs", "1", "--no-progress",
             "--data-dir", str(mnist_dir())]
    assert train_main([*flags, "--out", str(tmp_path / "with")]) == 0
    page = (tmp_path / "with" / EXPLORER_NAME).read_text()
    assert MARKER in page and "paper-mlp" in page
    assert train_main([*flags, "--no-figures", "--out", str(tmp_path / "without")]) == 0
    assert not list((tmp_path / "without").glob("*.html")) and not list((tmp_path / "without").glob("*.png"))
