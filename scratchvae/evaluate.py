"""``python -m scratchvae.evaluate RUN``: the test negative ELBO and the importance-weighted
NLL = -log p(x) of a trained run (the estimators are ``scratchvae.estimators``), printed and
written to ``RUN/evaluation.json``.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .atomic import check_writable, write_atomically
from .backend import BACKENDS, BackendUnavailableError
from .cli import ArgumentParser, nonnegative_int, run_command
from .data import DataNotFoundError, IDXError, load_split
from .estimators import (TEST_BINARIZATION_TAG, as_model_input, bits_per_dim,
                         importance_weighted_log_likelihood, negative_elbo, preprocess_test_images)
from .runs import CHECKPOINT_NAME, CONFIG_NAME, EVALUATION_NAME, CheckpointError, RunFileError, load_model


def evaluate_run(run_dir, vae, config, test_u8, k=5000, batch_size=100, seed=0, log=print,
                 progress=False):
    """Both estimates on ``test_u8`` for a loaded run; writes RUN/evaluation.json; returns it.

    ``progress=True`` shows a tqdm bar with a time estimate for the IWAE NLL, and for the
    negative ELBO pass when it lasts over a second."""
    run_dir = Path(run_dir)
    mode = config.get("preprocess", "unit")
    x = as_model_input(vae, preprocess_test_images(test_u8, mode, config.get("seed", 0), vae.dtype))
    n = x.shape[0]
    note = {"unit": "x / 255", "symmetric": "2 x / 255 - 1",
            "binarize": f"fixed binarization, host generator seeded with (run seed "
                        f"{config.get('seed', 0)}, {TEST_BINARIZATION_TAG})"}[mode]
    log(f"{vae!r}\ntest images: {n:,} | preprocessing: {mode} ({note}) | backend: {vae.backend}")
    log(f"computing the negative ELBO (one pass over the {n:,} images), then the importance-"
        f"weighted NLL = -log p(x) with K = {k:,} samples per image: {n * k:,} decoder passes, "
        f"a time that grows as K x images (--k and --limit shorten it)")

    t0 = time.perf_counter()
    with _bar(progress, n, "negative ELBO", "image", delay=1.0) as bar:
        elbo = negative_elbo(vae, x, seed=seed, progress=bar)
    t_elbo = time.perf_counter() - t0
    log(f"negative ELBO        {elbo['negative_elbo']:9.3f} nats/image "
        f"(recon {elbo['recon']:.3f} + KL {elbo['kl']:.3f}; one z sample per image) [{t_elbo:.2f} s]; "
        f"{bits_per_dim(elbo['negative_elbo'], vae, mode):.4f} bits/dim")

    t0 = time.perf_counter()
    with _bar(progress, n * k, f"IWAE NLL, K = {k}", "sample") as bar:
        log_px = importance_weighted_log_likelihood(vae, x, k=k, batch_size=batch_size, seed=seed,
                                                    progress=bar)
    t_iwae = time.perf_counter() - t0
    nll = float(-log_px.mean())
    stderr = float(log_px.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    log(f"IWAE NLL = -log p(x) {nll:9.3f} nats/image (K = {k}; +- {stderr:.3f} standard error over "
        f"images) [{t_iwae:.2f} s]; {bits_per_dim(nll, vae, mode):.4f} bits/dim")
    if config.get("beta", 1.0) != 1.0:
        log(f"note: the model was trained with beta = {config['beta']}; the negative ELBO above "
            f"uses beta = 1 (its training loss was {elbo['loss']:.3f})")

    result = dict(
        images=n, dataset=config.get("dataset", "mnist"), split="test", preprocess=mode,
        preprocess_note=note, backend=vae.backend, seed=seed,
        negative_elbo=elbo["negative_elbo"], recon=elbo["recon"], kl=elbo["kl"],
        kl_estimator=vae.kl, beta=vae.beta, training_loss=elbo["loss"],
        iwae_nll=nll, iwae_nll_stderr=stderr, iwae_k=k,
        negative_elbo_bits_per_dim=bits_per_dim(elbo["negative_elbo"], vae, mode),
        iwae_nll_bits_per_dim=bits_per_dim(nll, vae, mode),
        seconds=dict(negative_elbo=round(t_elbo, 3), iwae=round(t_iwae, 3)),
        units="nats per image",
    )
    if not all(math.isfinite(v) for v in (nll, elbo["negative_elbo"], elbo["recon"], elbo["kl"])):
        raise ValueError(f"the evaluation is not finite (negative ELBO {elbo['negative_elbo']}, IWAE "
                         f"NLL {nll}): the model gives NaN or infinity on these images; "
                         f"{EVALUATION_NAME} was not written")
    if not math.isfinite(stderr):  # one image: no standard error (JSON null, never NaN)
        result["iwae_nll_stderr"] = None
    write_atomically(run_dir / EVALUATION_NAME, json.dumps(result, indent=2, allow_nan=False) + "\n")
    log(f"wrote {run_dir / EVALUATION_NAME}")
    return result


@contextlib.contextmanager
def _bar(show, total, desc, unit, delay=0.0):
    """A tqdm bar's ``update`` (None when ``show`` is false), closed on the way out."""
    if not show:
        yield None
        return
    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False,
               dynamic_ncols=True, delay=delay)
    try:
        yield bar.update
    finally:
        bar.close()


def build_parser():
    p = ArgumentParser(
        prog="python -m scratchvae.evaluate",
        description="Test negative ELBO and importance-weighted NLL (nats/image) of a trained run; "
        "writes RUN/evaluation.json. The IWAE NLL's time grows as K x images: --k and --limit "
        "shorten it.",
    )
    p.add_argument("run", metavar="RUN", help="run folder written by python -m scratchvae.train")
    p.add_argument("--k", type=int, default=5000,
                   help="importance samples per image for the IWAE NLL (default 5000)")
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate the first N test images (default: all)")
    p.add_argument("--backend", choices=BACKENDS, default="numpy", help="array backend (default numpy)")
    p.add_argument("--batch-size", type=int, default=100, help="images per IWAE pass (default 100)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seeds the noise of both estimates (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the result lines only)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run)

    def body():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run folder (train one with python -m scratchvae.train --out {run_dir})")
        for name in (CONFIG_NAME, CHECKPOINT_NAME):
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"{run_dir}: not a run folder, {name} is missing")
        for name in ("k", "batch_size", "limit"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        check_writable(run_dir / EVALUATION_NAME)  # refused now, not after the IWAE pass
        vae, config = load_model(run_dir, backend=args.backend)
        test_u8, _ = load_split("test", config.get("dataset", "mnist"), config.get("data_dir"))
        evaluate_run(run_dir, vae, config, test_u8[: args.limit], k=args.k,
                     batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress)
        return 0

    return run_command(body, user_errors=(FileNotFoundError, CheckpointError, RunFileError, DataNotFoundError,
                                          IDXError, BackendUnavailableError),
                       memory_hint="try a smaller --batch-size (and --k or --limit)",
                       interrupted=f"interrupted; {EVALUATION_NAME} was not written")


if __name__ == "__main__":
    sys.exit(main())
