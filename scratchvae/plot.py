"""``python -m scratchvae.plot RUN``: draw a run's figures (``scratchvae.figures``) again, as
PNG files in the run folder, all or none. Needs matplotlib: ``pip install -e ".[plot]"``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .atomic import check_writable
from .backend import BACKENDS, BackendUnavailableError
from .cli import ArgumentParser, run_command
from .data import DataNotFoundError, IDXError, load_split
from .figures import FIGURES, check_matplotlib, write_figures
from .runs import CheckpointError, RunFileError, load_model, read_metrics


def build_parser():
    p = ArgumentParser(
        prog="python -m scratchvae.plot",
        description=f"Draw a run's figures ({', '.join(FIGURES)}) as PNG files in the run folder, "
        "replacing the previous ones all at once. Needs pip install -e \".[plot]\".",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by python -m scratchvae.train")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="array backend (default numpy)")
    p.add_argument("--limit", type=int, default=None,
                   help="use the first N test images for the scatter and reconstructions (default: all)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run)

    def body():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder")
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {args.limit}")
        check_matplotlib()  # fail early, with the install hint
        check_writable(run_dir / FIGURES[0])  # refused now, not after drawing
        vae, config = load_model(run_dir, backend=args.backend)
        rows = read_metrics(run_dir)
        images, labels = load_split("test", config.get("dataset", "mnist"), config.get("data_dir"))
        paths = write_figures(run_dir, vae, images[: args.limit], labels[: args.limit],
                              preprocess=config.get("preprocess", "unit"),
                              dataset=config.get("dataset", "mnist"), seed=config.get("seed", 0),
                              metrics_rows=rows, log=print)
        for p in paths:
            print(p)
        return 0

    return run_command(body, user_errors=(FileNotFoundError, ImportError, CheckpointError, RunFileError,
                                          DataNotFoundError, IDXError, BackendUnavailableError),
                       memory_hint="try a smaller --limit",
                       interrupted="interrupted; the previous figures are as they were")


if __name__ == "__main__":
    sys.exit(main())
