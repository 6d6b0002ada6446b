"""The CIFAR-10 loader on small archives built here in the official binary format (records of
one label byte and 3,072 pixel bytes in red, green, blue planes, under cifar-10-batches-bin/),
with their MD5 passed in: the images and labels that come back, every source (archive,
extracted folder, cache, download), and the corrupt cases, each a one-line error."""
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from scratchvae.data import DataNotFoundError, load_split
from scratchvae.data import cifar10

RECORDS = 6  # per file, for speed; the official files hold 10,000


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A fresh cache under tmp_path, and no SCRATCHVAE_DATA from the environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SCRATCHVAE_DATA", raising=False)


def _records(seed, n=RECORDS):
    """(labels, images): images (n, 3, 32, 32) uint8 and labels 0-9, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 10, n, dtype=np.uint8), rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _file_bytes(labels, images):
    """The official layout, written out byte by byte from its description, not via the loader."""
    out = bytearray()
    for label, image in zip(labels, images):
        out.append(int(label))
        for channel in image:          # red plane, then green, then blue
            for row in channel:
                out.extend(int(v) for v in row)
    return bytes(out)


def _contents(n=RECORDS):
    return {name: _records(i, n) for i, name in enumerate(cifar10.MEMBERS)}


def _build_archive(path, contents, extra=(), drop=(), prefix=cifar10.FOLDER, truncate=None):
    """A .tar.gz like the authors': batches.meta.txt, the six batch files, readme.html."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add(f"{prefix}/batches.meta.txt", b"airplane\nautomobile\nbird\n")
        for name, (labels, images) in contents.items():
            if name not in drop:
                add(f"{prefix}/{name}", _file_bytes(labels, images))
        for name, data in extra:
            add(name, data)
        add(f"{prefix}/readme.html", b"<html></html>")
    data = buf.getvalue()
    if truncate is not None:
        data = data[:truncate]
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def _load(split, data_dir, md5, **kw):
    return cifar10.load_split(split, data_dir, md5=md5, records=RECORDS, **kw)


def test_archive_in_data_dir_gives_the_images_and_labels(tmp_path):
    contents = _contents()
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, contents)

    images, labels = _load("train", tmp_path, md5)
    test_images, test_labels = _load("test", tmp_path, md5)

    assert images.shape == (5 * RECORDS, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (5 * RECORDS,) and labels.dtype == np.uint8
    want = [contents[n] for n in cifar10.SPLIT_MEMBERS["train"]]
    np.testing.assert_array_equal(labels, np.concatenate([w[0] for w in want]))
    np.testing.assert_array_equal(images, np.concatenate([w[1] for w in want]))
    np.testing.assert_array_equal(test_labels, contents["test_batch.bin"][0])
    np.testing.assert_array_equal(test_images, contents["test_batch.bin"][1])
    # extracted into the cache, only the six batch files, under our names
    cache = tmp_path / "cache" / "scratchvae" / "cifar10" / cifar10.FOLDER
    assert sorted(p.name for p in cache.iterdir()) == sorted(cifar10.MEMBERS)
    # the cache serves the next load without the archive
    (tmp_path / cifar10.ARCHIVE_NAME).unlink()
    np.testing.assert_array_equal(_load("test", None, md5, url="file:///nonexistent")[1], test_labels)


def test_extracted_folder_in_data_dir(tmp_path):
    contents = _contents()
    folder = tmp_path / "data" / cifar10.FOLDER
    folder.mkdir(parents=True)
    for name, (labels, images) in contents.items():
        (folder / name).write_bytes(_file_bytes(labels, images))

    for data_dir in (tmp_path / "data", folder):  # the parent or the folder itself
        images, labels = _load("test", data_dir, md5="unused")
        np.testing.assert_array_equal(images, contents["test_batch.bin"][1])
    assert not (tmp_path / "cache").exists()  # nothing copied


def test_load_split_dispatches_cifar10(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "RECORDS", RECORDS)
    contents = _contents()
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, contents)
    monkeypatch.setattr(cifar10, "ARCHIVE_MD5", md5)

    images, labels = load_split("test", "cifar10", str(tmp_path))

    np.testing.assert_array_equal(labels, contents["test_batch.bin"][0])
    assert images.shape == (RECORDS, 3, 32, 32)


def test_download_goes_through_the_cache(tmp_path):
    contents = _contents()
    md5 = _build_archive(tmp_path / "served.tar.gz", contents)

    images, _ = _load("test", None, md5, url=(tmp_path / "served.tar.gz").as_uri())

    np.testing.assert_array_equal(images, contents["test_batch.bin"][1])
    cache = tmp_path / "cache" / "scratchvae" / "cifar10"
    assert sorted(p.name for p in (cache / cifar10.FOLDER).iterdir()) == sorted(cifar10.MEMBERS)
    assert [p.name for p in cache.iterdir()] == [cifar10.FOLDER]  # the download is gone


def test_the_official_sizes():
    assert cifar10.RECORDS * cifar10.RECORD_BYTES == 30_730_000
    assert len(cifar10.MEMBERS) == 6 and cifar10.ARCHIVE_MD5 == "c32a1d4ab5d03f1284b67883e8d87530"


# -- what goes wrong -------------------------------------------------------------------
def _one_line_error(excinfo, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_wrong_hash(tmp_path):
    _build_archive(tmp_path / cifar10.ARCHIVE_NAME, _contents())
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5="0" * 32)
    _one_line_error(info, "MD5", "does not match the published " + "0" * 32, "download it again")
    assert not (tmp_path / "cache").exists()  # nothing extracted from an unverified archive


def test_truncated_archive(tmp_path):
    full = tmp_path / "full.tar.gz"
    _build_archive(full, _contents())
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, _contents(), truncate=full.stat().st_size // 2)
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, cifar10.ARCHIVE_NAME, "truncated")


# -- past the MD5 check: the gzip stream is read to its end ------------------------------------

@pytest.mark.parametrize("keep", [0.1, 0.3, 0.5, 0.7, 0.95, -4, -1])
def test_an_archive_cut_anywhere_is_called_truncated(tmp_path, keep):
    """Cut inside any member, between members or inside the gzip trailer: "truncated", never
    "has no data_batch_N.bin" (a tar stream that simply stops looks like a short archive)."""
    full = tmp_path / "full.tar.gz"
    _build_archive(full, _contents())
    size = full.stat().st_size
    cut = int(size * keep) if keep > 0 else size + keep
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, _contents(), truncate=cut)
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, cifar10.ARCHIVE_NAME, "truncated", "download")


def _rewrite(path, change):
    data = change(bytearray(path.read_bytes()))
    path.write_bytes(bytes(data))
    return hashlib.md5(bytes(data)).hexdigest()


def test_a_bad_gzip_crc_is_refused(tmp_path):
    path = tmp_path / cifar10.ARCHIVE_NAME
    _build_archive(path, _contents())

    def flip_crc(data):
        data[-8] ^= 0xFF  # the CRC-32 of the uncompressed data, first of the 8 trailer bytes
        return data

    md5 = _rewrite(path, flip_crc)
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, cifar10.ARCHIVE_NAME, "not a readable gzip'd tar archive", "CRC")


def test_bytes_after_the_gzip_stream_are_refused(tmp_path):
    path = tmp_path / cifar10.ARCHIVE_NAME
    _build_archive(path, _contents())
    md5 = _rewrite(path, lambda data: data + b"trailing garbage")
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, cifar10.ARCHIVE_NAME, "not a readable gzip'd tar archive")


def _declare_smaller(tar_bytes, member, by):
    """The tar with ``member``'s header declaring ``by`` bytes fewer than it holds (checksum fixed)."""
    data = bytearray(tar_bytes)
    offset = 0
    while True:
        header = data[offset:offset + 512]
        name = header[:100].rstrip(b"\0").decode()
        size = int(header[124:136].rstrip(b"\0 ").decode() or "0", 8)
        if name.endswith(member):
            header[124:136] = f"{size - by:011o}\0".encode()
            header[148:156] = b" " * 8
            header[148:156] = f"{sum(header):06o}\0 ".encode()
            data[offset:offset + 512] = header
            return bytes(data)
        offset += 512 + -(-size // 512) * 512


def test_a_member_longer_than_its_header_says_is_refused(tmp_path):
    """tar takes the surplus for a bad header and silently ends the archive there; the loader
    sees data after that end instead of reporting the next members as missing."""
    import gzip

    contents = _contents()
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name, (labels, images) in contents.items():
            data = _file_bytes(labels, images)
            if name == "data_batch_1.bin":
                data += bytes(range(1, 256)) * 8  # 2,040 bytes more than the header will declare
            info = tarfile.TarInfo(f"{cifar10.FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    damaged = _declare_smaller(plain.getvalue(), "data_batch_1.bin", 255 * 8)
    path = tmp_path / cifar10.ARCHIVE_NAME
    path.write_bytes(gzip.compress(damaged))
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, hashlib.md5(path.read_bytes()).hexdigest())
    _one_line_error(info, cifar10.ARCHIVE_NAME, "data follows the end of the tar archive")


def test_foreign_archive(tmp_path):
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, _contents(), prefix="cifar-10-batches-py")
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, "has no cifar-10-batches-bin/data_batch_1.bin", "not CIFAR-10's binary version")
    (tmp_path / cifar10.ARCHIVE_NAME).write_bytes(b"not a gzip file at all")
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, hashlib.md5(b"not a gzip file at all").hexdigest())
    _one_line_error(info, "not a readable gzip'd tar archive")


def test_missing_member(tmp_path):
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, _contents(), drop=("test_batch.bin",))
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, "has no cifar-10-batches-bin/test_batch.bin")


def test_member_of_the_wrong_size(tmp_path):
    contents = _contents()
    contents["data_batch_3.bin"] = _records(9, RECORDS - 1)
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, contents)
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, md5)
    _one_line_error(info, "cifar-10-batches-bin/data_batch_3.bin is not a file of 18,438 bytes (15,365)")


def test_paths_in_the_archive_are_never_used(tmp_path):
    """Members outside the folder (an absolute path, a '..' escape) are neither read nor written."""
    md5 = _build_archive(tmp_path / cifar10.ARCHIVE_NAME, _contents(),
                         extra=[("../escaped.bin", b"x"), ("/tmp/absolute-D.bin", b"x"),
                                (f"{cifar10.FOLDER}/../../evil.bin", b"x")])
    (tmp_path / "work").mkdir()
    _load("test", tmp_path, md5)
    assert not (tmp_path / "escaped.bin").exists() and not (tmp_path.parent / "escaped.bin").exists()
    assert not Path("/tmp/absolute-D.bin").exists()
    assert not (tmp_path / "cache" / "scratchvae" / "evil.bin").exists()
    cache = tmp_path / "cache" / "scratchvae" / "cifar10"
    assert sorted(p.name for p in cache.rglob("*")) == sorted((cifar10.FOLDER,) + cifar10.MEMBERS)


def test_a_link_member_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{cifar10.FOLDER}/data_batch_1.bin")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (tmp_path / cifar10.ARCHIVE_NAME).write_bytes(buf.getvalue())
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, hashlib.md5(buf.getvalue()).hexdigest())
    _one_line_error(info, "data_batch_1.bin is not a file of")


def test_bad_label_and_truncated_file_in_a_folder(tmp_path):
    contents = _contents()
    folder = tmp_path / cifar10.FOLDER
    folder.mkdir()
    for name, (labels, images) in contents.items():
        (folder / name).write_bytes(_file_bytes(labels, images))
    data = bytearray((folder / "test_batch.bin").read_bytes())
    data[2 * cifar10.RECORD_BYTES] = 10  # the label byte of record 2
    (folder / "test_batch.bin").write_bytes(bytes(data))
    with pytest.raises(cifar10.CIFARError) as info:
        _load("test", tmp_path, "unused")
    _one_line_error(info, "test_batch.bin: label 10 in record 2 is outside 0-9")

    (folder / "test_batch.bin").write_bytes(bytes(data[:-1]))
    with pytest.raises(cifar10.CIFARError) as info:
        _load("test", tmp_path, "unused")
    _one_line_error(info, "test_batch.bin: 18,437 bytes, expected 18,438")

    (folder / "data_batch_2.bin").unlink()
    with pytest.raises(cifar10.CIFARError) as info:
        _load("train", tmp_path, "unused")
    _one_line_error(info, "lacks data_batch_2.bin")


def test_nothing_there(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        _load("train", tmp_path, "unused")
    _one_line_error(info, "holds neither cifar-10-batches-bin/ nor cifar-10-binary.tar.gz")
    with pytest.raises(DataNotFoundError) as info:
        _load("train", None, "unused", url=(tmp_path / "absent.tar.gz").as_uri())
    _one_line_error(info, "could not download", "--data-dir")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        _load("valid", tmp_path, "unused")
