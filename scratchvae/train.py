"""``python -m scratchvae.train``: train a VAE on MNIST, Fashion-MNIST or CIFAR-10.

Defaults (paper-mlp, z = 2, batch 64, Adam 1e-3, 10 epochs, numpy) give a usable model in
about a minute on a laptop CPU; see the README for measured times.
"""
from __future__ import annotations

import argparse
import sys

from .backend import BACKENDS, BackendUnavailableError
from .cli import ArgumentParser, finite_float, nonnegative_int, run_command
from .data import DATASET_NAMES, DataNotFoundError, IDXError
from .exercises import train_with_exercises
from .likelihoods import LIKELIHOODS
from .models import ARCHITECTURES, KL_ESTIMATORS
from .runs import CheckpointError, RunFileError, RunFolderError, TrainConfig, TrainingError, read_metrics
from .training import train

DEFAULTS = TrainConfig()


def build_parser():
    p = ArgumentParser(
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
    a("--variance", type=finite_float, help=f"fixed variance c of gaussian-fixed (default {DEFAULTS.variance})")
    a("--beta", type=finite_float, help=f"weight of the KL term; 1 is the ELBO (default {DEFAULTS.beta})")
    a("--kl", choices=KL_ESTIMATORS, help="KL estimator (default: the architecture's, "
      "mc for resnet18-vae as in the tutorial, analytic otherwise)")
    a("--lr-decay", type=finite_float, metavar="FACTOR", help="multiply the learning rate by FACTOR "
      f"after every epoch, in (0, 1] (default {DEFAULTS.lr_decay}: constant)")
    a("--kl-warmup", type=finite_float, metavar="EPOCHS", help="KL warm-up against posterior collapse: the "
      "KL weight grows linearly from 0 to --beta over this many epochs (fractions allowed); the "
      f"reported losses always use --beta (default {DEFAULTS.kl_warmup}: no warm-up)")
    a("--free-bits", type=finite_float, metavar="NATS", help="free bits against posterior collapse: the "
      "loss uses max(NATS, batch-mean KL) for each latent dimension, so a dimension below NATS "
      "gets no KL gradient; the reported KL stays the true one; needs --kl analytic (default "
      f"{DEFAULTS.free_bits}: off)")
    a("--epochs", type=int, help=f"total epochs (default {DEFAULTS.epochs}); with --resume, the new total "
      "(without it, the run's own target)")
    a("--batch-size", type=int, help=f"images per step (default {DEFAULTS.batch_size})")
    a("--lr", type=finite_float, help="Adam learning rate (default: the architecture's, 1e-4 for "
      "resnet18-vae as in the tutorial, 1e-3 otherwise)")
    a("--seed", type=nonnegative_int, help=f"seeds weights, shuffling, noise and dropout (default {DEFAULTS.seed})")
    a("--train-limit", type=int, help="train on the first N training images (default: all, 60,000 for MNIST, 50,000 for CIFAR-10)")
    a("--val-limit", type=int, help="evaluate each epoch on the first N test images (default: all 10,000)")
    a("--binarize", action="store_true", help="dynamic binarization, redrawn every epoch (the standard "
      "for likelihood comparisons)")
    a("--dataset", choices=list(DATASET_NAMES), help=f"dataset (default {DEFAULTS.dataset}; cifar10 "
      "for resnet18-vae)")
    a("--data-dir", help="folder holding the four IDX files (raw or .gz), or for cifar10 "
      "cifar-10-binary.tar.gz or cifar-10-batches-bin/; default: SCRATCHVAE_DATA, "
      "the cache, then download")
    a("--dtype", choices=("float32", "float64"), help=f"float type (default {DEFAULTS.dtype})")
    a("--out", help="run folder to create (default runs/<model>-z<dim>-<changed settings>-<time>, "
      "numbered -2, -3, ... if taken); never overwritten")
    a("--resume", metavar="RUN", help="continue the run in folder RUN from its checkpoint")
    a("--no-progress", action="store_true", help="no progress bar (one line per epoch only)")
    a("--no-figures", action="store_true", help="skip the figures at the end")
    a("--exercises", metavar="DIR", help="train with the exercise pairs you wrote in DIR (python -m "
      "scratchvae.exercises) in place of the engine's, then the same run with the engine's own code, "
      "and print both test losses (docs/exercises.md)")
    return p


def main(argv=None):
    """Exit codes: 0 trained, 2 a user error, 1 an OS fault or out of memory, 130 interrupted
    (Ctrl-C or SIGTERM; the position is saved once training has started)."""
    args = vars(build_parser().parse_args(argv))
    out, resume = args.pop("out", None), args.pop("resume", None)
    progress = not args.pop("no_progress", False)
    figures = not args.pop("no_figures", False)
    exercises = args.pop("exercises", None)

    def one_run(cfg, label):
        """One of --exercises' two runs (``label``: "yours" or "scratchvae"); its test loss."""
        run_dir = train(cfg, out=None if out is None else f"{out}-{label}", overrides=set(args),
                        progress=progress, figures=figures)
        print(f"done: {run_dir}")
        return float(read_metrics(run_dir)[-1]["test_loss"])

    def body():
        cfg = TrainConfig(**args)
        if exercises is not None:
            if resume is not None:
                raise TrainingError("--exercises starts two new runs (yours and the engine's); drop --resume")
            train_with_exercises(exercises, cfg, one_run)
            return 0
        run_dir = train(cfg, out=out, resume=resume, overrides=set(args), progress=progress,
                        figures=figures)
        print(f"done: {run_dir}")
        return 0

    return run_command(body, user_errors=(TrainingError, CheckpointError, RunFolderError, RunFileError,
                                          DataNotFoundError, IDXError, BackendUnavailableError),
                       memory_hint="try a smaller --batch-size, --latent-dim or --val-limit",
                       interrupted="interrupted during start-up; nothing was saved")


if __name__ == "__main__":
    sys.exit(main())
