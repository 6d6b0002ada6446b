"""benchmarks/side_by_side.py: the plan of the study, resumable per-run results, a failed run
losing only itself, and the --quick smoke test end to end (that one needs PyTorch)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from optional import torch_or_skip

from mnist_data import mnist_dir

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("side_by_side", ROOT / "benchmarks" / "side_by_side.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sbs = _load()


def test_plan_of_the_full_study():
    runs = sbs.plan()
    assert len(runs) == len(set(runs)) == 70  # 4 configs x 2 x 5, +10 collapse seeds x 2, +2 x 10 remedies
    assert all((r.train_limit, r.epochs) == (6000, 10) for r in runs)
    conv2 = [r for r in runs if (r.model, r.latent_dim) == ("paper-conv", 2)]
    assert sorted((r.framework, r.remedy) for r in conv2 if r.seed == 9) == [
        ("scratchvae", ""), ("scratchvae", "free_bits=0.5"), ("scratchvae", "kl_warmup=2"), ("torch", "")]
    assert {r.seed for r in runs if r.model == "paper-mlp"} == set(range(5))
    assert runs[0].model == "paper-conv"  # the long runs first
    assert len({r.name for r in runs}) == 70
    assert sbs.canonical_remedy("free_bits=0.50, kl_warmup=2") == "kl_warmup=2,free_bits=0.5"
    assert sbs.Run("scratchvae", "paper-conv", 2, 3, 6000, 10, "kl_warmup=2,free_bits=0.5").name == \
        "scratchvae_paper-conv_z2_kl_warmup2+free_bits0.5_n6000_e10_s3"
    for bad in ("warmup=2", "kl_warmup", "free_bits=x", "free_bits=-1"):
        with pytest.raises(ValueError, match="remedy"):
            sbs.parse_remedy(bad)
    assert len(sbs.plan(quick=True)) == 4


def test_a_failed_run_loses_only_itself_and_reruns_skip(tmp_path):
    good = sbs.Run("scratchvae", "paper-mlp", 2, 0, 128, 1)
    bad = sbs.Run("torch", "paper-mlp", 2, 0, 128, 1, remedy="kl_warmup=1")  # refused by the worker
    lines = []
    failed = sbs.execute([bad, good], tmp_path, str(mnist_dir()), jobs=2, log=lines.append)
    assert failed == [bad]
    result = json.loads((tmp_path / f"{good.name}.json").read_text())
    assert result["run"]["train_limit"] == 128 and len(result["kl_per_dim"]) == 2
    assert abs(result["test_negative_elbo"] - result["test_recon"] - result["test_kl"]) < 1e-6
    assert abs(sum(result["kl_per_dim"]) - result["test_kl"]) < 1e-3
    assert not (tmp_path / f"{bad.name}.json").exists()
    assert "no posterior-collapse remedies" in (tmp_path / "logs" / f"{bad.name}.log").read_text()
    assert any("FAILED" in line for line in lines)
    assert sbs.load_result(tmp_path, good) is not None and sbs.load_result(tmp_path, bad) is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the run folder is gone


def test_quick_end_to_end(tmp_path, capsys):
    torch_or_skip()
    results, md, doc = tmp_path / "results", tmp_path / "report.md", tmp_path / "doc.md"
    doc.write_text("# Reproduction\n\nhand-written text\n")
    args = ["--quick", "--jobs", "2", "--results", str(results), "--markdown", str(md),
            "--data-dir", str(mnist_dir())]
    assert sbs.main(args + ["--section", "--doc", str(doc)]) == 0
    assert len(list(results.glob("*.json"))) == 4
    text = md.read_text()
    assert "| paper-mlp | 2 | 0 |" in text and "smoke test" in text
    for row in ("| scratchvae | ", "| PyTorch | ", "| scratchvae + KL warm-up over 2 epochs | ",
                "| scratchvae + free bits 0.5 nats/dim | "):
        assert row in text, row
    written = doc.read_text()
    assert written.startswith("# Reproduction\n\nhand-written text\n")
    assert "<!-- side-by-side:begin -->" in written and text.strip() in written
    capsys.readouterr()
    assert sbs.main(args) == 0  # everything finished: nothing is run again
    assert "4 already finished" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # quick numbers never go into docs/reproduction.md
        sbs.main(["--quick", "--section", "--report-only", "--results", str(results)])
