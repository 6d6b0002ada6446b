"""``python -m scratchvae.explore RUN``: write ``RUN/explorer.html``, a page to move through the
run's latent space (``scratchvae.explorer``; docs/explorer.md). One self-contained file: open it
by double-click, offline.

A run still training is read as ``plot`` and ``evaluate`` read it: its latest checkpoint, one
consistent snapshot; before its first checkpoint there is nothing to show, and the command says so.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .atomic import check_writable
from .backend import BACKENDS, BackendUnavailableError
from .cli import ArgumentParser, run_command
from .data import DataNotFoundError, IDXError, load_split
from .estimators import preprocess_test_images
from .explorer import EXPLORER_NAME, ExplorerError, check_replaceable, write_dataset_explorer
from .runs import CHECKPOINT_NAME, CheckpointError, RunFileError, load_model


def build_parser():
    p = ArgumentParser(
        prog="python -m scratchvae.explore",
        description=f"Write RUN/{EXPLORER_NAME}: the test set's posterior means coloured by class, the "
        "image decoded under the pointer, interpolations and the decoded grid, in one HTML file "
        "that opens offline in a browser.",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by python -m scratchvae.train")
    p.add_argument("--out", metavar="FILE", default=None,
                   help=f"where to write the page (default RUN/{EXPLORER_NAME}); an existing file is "
                   "replaced only if it is an explorer page")
    p.add_argument("--limit", type=int, default=None,
                   help="show the first N test images (default: all)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="array backend that encodes the test images (default numpy)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run)
    out = Path(args.out) if args.out else run_dir / EXPLORER_NAME

    def body():
        if not run_dir.is_dir():
            raise ExplorerError(f"{run_dir}: no such run folder (train one with python -m "
                                f"scratchvae.train --out {run_dir})")
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise ExplorerError(f"{run_dir}: no {CHECKPOINT_NAME} (a run still before its first "
                                "checkpoint, or not a run folder); nothing to explore yet")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {args.limit}")
        check_replaceable(out)  # refuse now, before the encoding
        if out.parent.is_dir():  # (a folder still to make is made by the write itself)
            check_writable(out)
        vae, config = load_model(run_dir, backend=args.backend)
        dataset = config.get("dataset", "mnist")
        images, labels = load_split("test", dataset, config.get("data_dir"))
        mode = config.get("preprocess", "unit")
        x = preprocess_test_images(images[: args.limit], mode, config.get("seed", 0), vae.dtype)
        page = write_dataset_explorer(vae, x, labels[: args.limit], out, run_dir.name, dataset, mode)
        print(f"wrote {page.path} ({page.size / 2**20:.1f} MiB); open it in a browser")
        if not page.live:
            print(f"note: the page shows the codes only, no decoded images: {page.note}")
        return 0

    return run_command(body, user_errors=(ExplorerError, CheckpointError, RunFileError,
                                          DataNotFoundError, IDXError, BackendUnavailableError),
                       memory_hint="try a smaller --limit",
                       interrupted=f"interrupted; {out} was not written (an earlier page there is as it was)")


if __name__ == "__main__":
    sys.exit(main())
