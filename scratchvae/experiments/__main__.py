"""``python -m scratchvae.experiments paper``: reproduce the paper's Tables 1-2 and Figures 5-8.

The full run (the paper's settings, six runs; resumable: repeat the command after a stop):

    python -m scratchvae.experiments paper                  # writes docs/reproduction.md

A CI-sized check (600 training images, 1 epoch, z = 2, 1,000 FID images), writing
runs/paper-quick/reproduction.md and nothing under docs/:

    python -m scratchvae.experiments paper --quick
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..backend import BACKENDS, BackendUnavailableError
from ..data import DataNotFoundError, IDXError
from ..training import TrainingError
from .paper import QUICK, ExperimentInterrupted, PaperSettings, run_paper

DOC = Path("docs") / "reproduction.md"
FULL = PaperSettings()


def build_parser():
    p = argparse.ArgumentParser(prog="python -m scratchvae.experiments",
                                description="Experiments that reproduce published results.")
    sub = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    q = sub.add_parser(
        "paper", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the paper's Tables 1-2 and Figures 5-8 (paper-mlp, paper-conv; z = 2, 5, 16)",
        description=f"Train paper-mlp and paper-conv for z = 2, 5, 16 with the paper's settings "
        f"({FULL.train_limit:,} training images, {FULL.val_limit:,} validation images (the first "
        f"test images), batch {FULL.batch_size}, {FULL.epochs} epochs, Adam {FULL.lr:g}), one run "
        "folder each under --out (complete runs are skipped, interrupted ones resumed), score "
        "them (last-epoch losses, parameters, classifier-FID of reconstructions and samples) and "
        f"write the tables and figures into the 'paper' section of --doc (default {DOC}).")
    a = q.add_argument
    a("--quick", action="store_true",
      help=f"CI-sized check: {QUICK['train_limit']} training images, {QUICK['val_limit']} validation, "
      f"{QUICK['epochs']} epoch, z = 2 only, {QUICK['fid_images']:,} FID images; out "
      "runs/paper-quick, no doc written unless --doc")
    a("--backend", choices=BACKENDS, default="numpy", help="array backend (default numpy)")
    a("--out", help="folder of the run folders (default runs/paper; with --quick runs/paper-quick)")
    a("--epochs", type=int, help=f"epochs per run (default {FULL.epochs}; with --quick {QUICK['epochs']})")
    a("--seed", type=int, default=0, help="seed of every run and of the FID samples (default 0)")
    a("--data-dir", help="folder holding the MNIST IDX files (default: SCRATCHVAE_DATA, the cache, "
      "then download)")
    a("--doc", help=f"markdown file whose paper section is (re)written (default {DOC}; with --quick "
      "OUT/reproduction.md); figures go to DOC_FOLDER/figures/reproduction/")
    a("--fid-images", type=int, help=f"test images for the FIDs and the latent scatter (default "
      f"{FULL.fid_images:,}; with --quick {QUICK['fid_images']:,})")
    a("--no-figures", action="store_true", help="skip the figures")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    settings = replace(FULL, **QUICK) if args.quick else replace(FULL)
    settings = replace(settings, seed=args.seed, backend=args.backend, data_dir=args.data_dir)
    if args.epochs is not None:
        settings.epochs = args.epochs
    if args.fid_images is not None:
        settings.fid_images = args.fid_images
    out = Path(args.out or ("runs/paper-quick" if args.quick else "runs/paper"))
    doc = args.doc if (args.doc or args.quick) else DOC
    try:
        if settings.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {settings.epochs}")
        if not 2 <= settings.fid_images <= 10_000:
            raise ValueError(f"--fid-images must be between 2 and 10,000, got {settings.fid_images}")
        if doc is not None and not Path(doc).parent.is_dir():
            raise ValueError(f"--doc {doc}: the folder {Path(doc).parent} does not exist (run from the "
                             "repository root, or give --doc PATH)")
        t0 = time.perf_counter()
        run_paper(settings, out, doc, figures=not args.no_figures,
                  command=shlex.join(["python", "-m", "scratchvae.experiments", *argv]))
    except ExperimentInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except (TrainingError, DataNotFoundError, IDXError, BackendUnavailableError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
