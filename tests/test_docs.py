"""The docs stay true: the API page matches the docstrings, and every test a doc cites exists."""
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# names in the docs that look like tests but are metrics columns or variables
NOT_TESTS = {"test_loss", "test_recon", "test_kl", "test_images", "test_labels", "test_u8"}


def test_api_page_matches_docstrings():
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    gen_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_api)
    assert (ROOT / "docs" / "api.md").read_text() == gen_api.render(), (
        "docs/api.md is stale: run python docs/gen_api.py > docs/api.md"
    )


def test_every_cited_test_exists():
    defined = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_\w+)", path.read_text(), re.M))
    files = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    cited = set()
    for doc in list((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        cited |= set(re.findall(r"\b(test_\w+)", doc.read_text()))
    missing = sorted(cited - defined - files - NOT_TESTS)
    assert not missing, f"docs cite tests that do not exist: {missing}"
