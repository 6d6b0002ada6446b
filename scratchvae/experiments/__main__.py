"""``python -m scratchvae.experiments paper``: reproduce the paper's Tables 1-2 and Figures 5-8.

The full run (the paper's settings, six runs; resumable: repeat the command after a stop):

    python -m scratchvae.experiments paper                  # writes docs/reproduction.md

A CI-sized check (600 training images, 1 epoch, z = 2, 1,000 FID images), writing
runs/paper-quick/reproduction.md and nothing under docs/:

    python -m scratchvae.experiments paper --quick

``python -m scratchvae.experiments nll``: nll-conv on dynamically binarized MNIST, scored with
the importance-weighted NLL (K = 5000) as it trains (see ``scratchvae.experiments.nll``);
``--quick`` is its CI-sized check.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..backend import BACKENDS, BackendUnavailableError
from ..cli import ArgumentParser, finite_float, nonnegative_int, run_command
from ..data import DataNotFoundError, IDXError
from ..runs import CheckpointError, TrainingError
from . import nll
from .paper import QUICK, ExperimentInterrupted, PaperSettings, run_paper

DOC = Path("docs") / "reproduction.md"
FULL = PaperSettings()


def build_parser():
    p = ArgumentParser(prog="python -m scratchvae.experiments",
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
    a("--seed", type=nonnegative_int, default=0, help="seed of every run and of the FID samples (default 0)")
    a("--data-dir", help="folder holding the MNIST IDX files (default: SCRATCHVAE_DATA, the cache, "
      "then download)")
    a("--doc", help=f"markdown file whose paper section is (re)written (default {DOC}; with --quick "
      "OUT/reproduction.md); figures go to DOC_FOLDER/figures/reproduction/")
    a("--fid-images", type=int, help=f"test images for the FIDs and the latent scatter (default "
      f"{FULL.fid_images:,}; with --quick {QUICK['fid_images']:,})")
    a("--no-figures", action="store_true", help="skip the figures")
    add_nll_parser(sub)
    return p


def add_nll_parser(sub):
    d = nll.NLLSettings()
    q = sub.add_parser(
        "nll", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="nll-conv on dynamically binarized MNIST, scored by the IWAE NLL (K = 5000) as it trains",
        description="Train nll-conv (one stochastic layer) on dynamically binarized MNIST with "
        "scratchvae.training.train, one run folder (--out), and after every --eval-every epochs and "
        "the last score the test set: negative ELBO and importance-weighted NLL with --k samples, "
        f"one row each in OUT/{nll.CURVE_NAME}. Repeating the command resumes (scored epochs are "
        "skipped; --epochs may grow). Then writes the curve, the best NLL against the published "
        f"{nll.PUBLISHED[0][1]} / {nll.PUBLISHED[1][1]} (Burda et al. 2015), the command, machine and "
        f"times into the 'nll' section of --doc (default {DOC}) and plots the curve.")
    a = q.add_argument
    a("--quick", action="store_true",
      help=f"CI-sized check: {nll.QUICK['train_limit']:,} training images, {nll.QUICK['epochs']} "
      f"epoch, {nll.QUICK['eval_images']} test images, K = {nll.QUICK['k']}; out runs/nll-quick, "
      "no doc written unless --doc")
    a("--latent-dim", type=int, help=f"size of z (default {d.latent_dim})")
    a("--epochs", type=int, help=f"epochs to train to (default {d.epochs}; with --quick "
      f"{nll.QUICK['epochs']})")
    a("--batch-size", type=int, help=f"images per step (default {d.batch_size})")
    a("--lr", type=finite_float, help=f"Adam's learning rate at the first epoch (default {d.lr:g})")
    a("--lr-decay", type=finite_float, help=f"factor applied to the learning rate after every epoch "
      f"(default {d.lr_decay:g}: constant)")
    a("--kl-warmup", type=finite_float, help=f"epochs over which the KL weight rises from 0 to 1 (default "
      f"{d.kl_warmup:g}; 0 = off)")
    a("--train-limit", type=int, help="train on the first N training images (default all 60,000; "
      f"with --quick {nll.QUICK['train_limit']:,})")
    a("--eval-every", type=int, help=f"score after every E epochs, and after the last (default "
      f"{d.eval_every})")
    a("--k", type=int, help=f"importance samples per image (default {d.k}; with --quick {nll.QUICK['k']})")
    a("--eval-images", type=int, help=f"test images scored after the last epoch, and after the "
      f"others unless --curve-images (default {d.eval_images:,}; with --quick {nll.QUICK['eval_images']})")
    a("--curve-images", type=int, help="test images scored after the epochs before the last, a "
      "cheaper curve (default: --eval-images)")
    a("--backend", choices=BACKENDS, default="numpy", help="array backend (default numpy)")
    a("--out", help="the run folder (default runs/nll; with --quick runs/nll-quick)")
    a("--seed", type=nonnegative_int, default=0, help="seed of the run, the test binarization and the "
      "scoring noise (default 0)")
    a("--data-dir", help="folder holding the MNIST IDX files (default: SCRATCHVAE_DATA, the "
      "cache, then download)")
    a("--doc", help=f"markdown file whose nll section is (re)written (default {DOC}; with --quick "
      "OUT/reproduction.md); the plot goes to DOC_FOLDER/figures/reproduction/")
    a("--no-figures", action="store_true", help="skip the plot")
    a("--render-only", action="store_true", help=f"train and score nothing: rewrite the section "
      f"and the plot from OUT's config.json, {nll.CURVE_NAME}, {nll.SUMMARY_NAME} and metrics.csv "
      "(e.g. copied back from the machine that trained)")
    return q


def nll_settings(args) -> nll.NLLSettings:
    """The ``NLLSettings`` the flags ask for (``QUICK`` first with --quick, then each flag given)."""
    settings = nll.NLLSettings(**(nll.QUICK if args.quick else {}))
    for name in ("latent_dim", "epochs", "batch_size", "lr", "lr_decay", "kl_warmup", "train_limit",
                 "eval_every", "k", "eval_images", "curve_images"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    settings.seed, settings.backend, settings.data_dir = args.seed, args.backend, args.data_dir
    return settings


def main_nll(args, argv):
    out = Path(args.out or ("runs/nll-quick" if args.quick else "runs/nll"))
    doc = args.doc if (args.doc or args.quick) else DOC
    t0 = time.perf_counter()
    try:
        if doc is not None and not Path(doc).parent.is_dir():
            raise ValueError(f"--doc {doc}: the folder {Path(doc).parent} does not exist (run from the "
                             "repository root, or give --doc PATH)")
        if args.render_only:
            if not (out / nll.CURVE_NAME).is_file() or not (out / "config.json").is_file():
                raise ValueError(f"--render-only: {out} holds no {nll.CURVE_NAME} and config.json")
            nll.write_up(out, doc, figures=not args.no_figures)
        else:
            nll.run_nll(nll_settings(args).check(), out, doc, figures=not args.no_figures,
                        command=shlex.join(["python", "-m", "scratchvae.experiments", *argv]))
    except ExperimentInterrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except (TrainingError, CheckpointError, DataNotFoundError, IDXError, BackendUnavailableError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv=None):
    """Exit codes: 0 done, 2 a user error, 1 an OS fault or out of memory, 130 interrupted."""
    return run_command(lambda: _main(argv), user_errors=(TrainingError, CheckpointError),
                       memory_hint="try a smaller --batch-size, --k or --eval-images",
                       interrupted="interrupted; run the same command again to resume")


def _main(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.experiment == "nll":
        return main_nll(args, argv)
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
