"""``python -m scratchvae.train``: train a VAE on MNIST or Fashion-MNIST.

Defaults (paper-mlp, z = 2, batch 64, Adam 1e-3, 10 epochs, numpy) give a usable model in
about a minute on a laptop CPU; see the README for measured times.
"""
from __future__ import annotations

import argparse
import sys

from .backend import BACKENDS, BackendUnavailableError
from .checkpoint import CheckpointError
from .data import DATASETS, DataNotFoundError, IDXError
from .likelihoods import LIKELIHOODS
from .models import ARCHITECTURES, KL_ESTIMATORS
from .training import TrainConfig, TrainingError, train

DEFAULTS = TrainConfig()


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m scratchvae.train",
        description="Train a VAE with hand-derived gradients. Writes a run folder with config.json, "
        "metrics.csv, checkpoint.npz and figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,  # so that flags given explicitly are known
    )
    a = p.add_argument
    a("--backend", choices=BACKENDS, help=f"array backend (default {DEFAULTS.backend}); cupy needs a CUDA GPU "
      "and pip install -e '.[cuda12]' or '.[cuda13]'")
    a("--model", choices=list(ARCHITECTURES), help=f"architecture (default {DEFAULTS.model})")
    a("--latent-dim", type=int, help="size of z (default: the architecture's, 2 for the paper models)")
    a("--likelihood", choices=LIKELIHOODS, help="p(x|z) (default: the architecture's, bernoulli for "
      "the paper models, gaussian-fixed for tutorial-mlp)")
    a("--variance", type=float, help=f"fixed variance c of gaussian-fixed (default {DEFAULTS.variance})")
    a("--beta", type=float, help=f"weight of the KL term; 1 is the ELBO (default {DEFAULTS.beta})")
    a("--kl", choices=KL_ESTIMATORS, help=f"KL estimator (default {DEFAULTS.kl})")
    a("--lr-decay", type=float, metavar="FACTOR", help="multiply the learning rate by FACTOR "
      f"after every epoch, in (0, 1] (default {DEFAULTS.lr_decay}: constant)")
    a("--kl-warmup", type=float, metavar="EPOCHS", help="KL warm-up against posterior collapse: the "
      "KL weight grows linearly from 0 to --beta over this many epochs (fractions allowed); the "
      f"reported losses always use --beta (default {DEFAULTS.kl_warmup}: no warm-up)")
    a("--free-bits", type=float, metavar="NATS", help="free bits against posterior collapse: the "
      "loss uses max(NATS, batch-mean KL) for each latent dimension, so a dimension below NATS "
      "gets no KL gradient; the reported KL stays the true one; needs --kl analytic (default "
      f"{DEFAULTS.free_bits}: off)")
    a("--epochs", type=int, help=f"total epochs; with --resume, the new total (default {DEFAULTS.epochs})")
    a("--batch-size", type=int, help=f"images per step (default {DEFAULTS.batch_size})")
    a("--lr", type=float, help=f"Adam learning rate (default {DEFAULTS.lr})")
    a("--seed", type=int, help=f"seeds weights, shuffling, noise and dropout (default {DEFAULTS.seed})")
    a("--train-limit", type=int, help="train on the first N training images (default: all 60,000)")
    a("--val-limit", type=int, help="evaluate each epoch on the first N test images (default: all 10,000)")
    a("--binarize", action="store_true", help="dynamic binarization, redrawn every epoch (the standard "
      "for likelihood comparisons)")
    a("--dataset", choices=list(DATASETS), help=f"dataset (default {DEFAULTS.dataset})")
    a("--data-dir", help="folder holding the four IDX files (raw or .gz); default: SCRATCHVAE_DATA, "
      "the cache, then download")
    a("--dtype", choices=("float32", "float64"), help=f"float type (default {DEFAULTS.dtype})")
    a("--out", help="run folder to create (default runs/<model>-z<dim>-<time>); never overwritten")
    a("--resume", metavar="RUN", help="continue the run in folder RUN from its checkpoint")
    a("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    a("--no-figures", action="store_true", help="skip the figures at the end")
    return p


def main(argv=None):
    args = vars(build_parser().parse_args(argv))
    out, resume = args.pop("out", None), args.pop("resume", None)
    progress = not args.pop("no_progress", False)
    figures = not args.pop("no_figures", False)
    cfg = TrainConfig(**args)
    try:
        run_dir = train(cfg, out=out, resume=resume, overrides=set(args), progress=progress,
                        figures=figures)
    except (TrainingError, CheckpointError, DataNotFoundError, IDXError, BackendUnavailableError,
            ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
