"""Training speed of ``python -m scratchvae.train`` for the README: images per second of the
default model and of ``paper-conv``, measured alternately in one process.

    python benchmarks/epoch_time.py                       # 3 rounds, 6,000 training images each
    python benchmarks/epoch_time.py --images 60000 --rounds 1 --models paper-mlp

Each round trains one epoch of every model on the first ``--images`` training images (the
defaults otherwise: batch 64, Adam 1e-3, numpy, float32) through the command line, in a
temporary run folder, and reads the epoch's time from its line. An epoch's time is the
images per second over 60,000 images. Models alternate within each round, so a shared
machine's load falls on all of them alike; prints every round, then medians and ranges.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import statistics
import sys
import tempfile
from pathlib import Path

from scratchvae.train import main as train_main

LINE = re.compile(r"\| +([\d.]+) s \| +([\d.]+) img/s")
TRAIN_IMAGES = 60_000


def one_epoch(model, images, folder):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train_main(["--model", model, "--epochs", "1", "--train-limit", str(images),
                           "--val-limit", "1000", "--out", str(folder), "--no-progress", "--no-figures"])
    if code != 0:
        sys.exit(f"epoch_time: training {model} failed (exit {code}): {out.getvalue()[-500:]}")
    seconds, rate = LINE.search(out.getvalue()).groups()
    return float(seconds), float(rate)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="paper-mlp,paper-conv", help="comma-separated (default paper-mlp,paper-conv)")
    p.add_argument("--images", type=int, default=6000, help="training images per epoch (default 6000)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rates = {m: [] for m in models}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for m in models:
                seconds, rate = one_epoch(m, args.images, Path(tmp) / f"{m}-{r}")
                rates[m].append(rate)
                print(f"round {r + 1}: {m:12s} {seconds:7.2f} s for {args.images:,} images, {rate:8.0f} img/s", flush=True)
    for m in models:
        v = rates[m]
        print(f"{m:12s} median {statistics.median(v):7.0f} img/s (range {min(v):.0f}-{max(v):.0f}); "
              f"an epoch of {TRAIN_IMAGES:,}: {TRAIN_IMAGES / statistics.median(v):.1f} s "
              f"({TRAIN_IMAGES / max(v):.1f}-{TRAIN_IMAGES / min(v):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
