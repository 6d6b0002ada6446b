"""The K = 5000 importance-weighted pass against its matrix-product bound.

    python benchmarks/iwae_bound.py                          # untrained paper-mlp z = 2, 200 images
    python benchmarks/iwae_bound.py --run runs/paper-mlp-z2-... --images 100 --repeats 5

The bound: the decoder's matrix products alone, the same shapes (one product per Dense layer
for each decoder call of the pass), the same dtype and the same BLAS, with the pass's own
weights. FLOPs per importance sample: 2 x in x out for every Dense layer of the decoder.
The pass is ``scratchvae.estimators.importance_weighted_log_likelihood``, timed as ``evaluate``
runs it (K = 5000, batch 100, the default codes per decoder call); ``--codes`` changes the
codes per call. It runs in two forms: ``value`` (the likelihood's ``nll_value``, what the
pass uses) and ``log1p`` (the training likelihood's ``nll`` with its cache, as before). The
three timings alternate in one process, ``--repeats`` times, so a shared machine's load
hits all of them alike; the ratios are taken within each repetition. ``--ops`` also times
the elementwise operations of the Bernoulli likelihood on one call's logits (ns per value).

Prints medians and ranges, and the time the pass would take on the 10,000 MNIST test images
(the measured images scaled up: each image costs the same).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from scratchvae.estimators import IWAE_CODES_PER_CALL, importance_weighted_log_likelihood, preprocess_test_images
from scratchvae.layers import Dense
from scratchvae.likelihoods import Likelihood
from scratchvae.models import build_vae

TEST_IMAGES = 10_000


def decoder_denses(vae):
    """The decoder's Dense layers, in order; refuses a decoder with other parametrized layers."""
    denses = []
    for layer in vae.decoder.layers:
        if isinstance(layer, Dense):
            denses.append(layer)
        elif layer.params:
            sys.exit(f"iwae_bound: the decoder has a {type(layer).__name__}; only Dense products are counted")
    return denses


def test_images(count, preprocess, seed):
    """The first ``count`` MNIST test images as the pass reads them (noise if MNIST is absent)."""
    try:
        from scratchvae.data import load_split

        u8, _ = load_split("test", "mnist", None)
        return preprocess_test_images(u8[:count], preprocess, seed), "MNIST test images"
    except Exception as exc:  # noqa: BLE001 - a benchmark falls back to noise and says so
        rng = np.random.default_rng(0)
        return rng.random((count, 1, 28, 28), dtype=np.float32), f"noise ({exc})"


def products_only(denses, calls, dtype):
    """Each decoder call's products: (rows, in) @ (in, out) for every Dense layer."""
    rng = np.random.default_rng(0)
    inputs = {rows: [rng.standard_normal((rows, d.in_features)).astype(dtype) for d in denses]
              for rows in set(calls)}

    def run():
        for rows in calls:
            for a, d in zip(inputs[rows], denses):
                a @ d.params["W"]
    return run


def elementwise_costs(vae, rows):
    """ns per value of each elementwise operation of the Bernoulli likelihood, on ``rows`` codes."""
    z = np.random.default_rng(1).standard_normal((rows, vae.latent_dim)).astype(vae.dtype)
    logits = vae.decoder.forward(z, training=False).reshape(rows, -1)
    x = np.random.default_rng(2).random(logits.shape, dtype=np.float32).astype(vae.dtype)
    t = np.empty_like(logits)
    minus_abs = -np.abs(logits)
    e = np.exp(minus_abs)
    one_plus_e = 1 + e
    ops = {
        "abs": lambda: np.abs(logits, out=t), "negative": lambda: np.negative(logits, out=t),
        "exp": lambda: np.exp(minus_abs, out=t), "1 + e": lambda: np.add(e, 1, out=t),
        "log": lambda: np.log(one_plus_e, out=t), "log1p": lambda: np.log1p(e, out=t),
        "maximum(l, 0)": lambda: np.maximum(logits, 0, out=t), "x * l": lambda: np.multiply(x, logits, out=t),
        "row sums": lambda: logits.sum(axis=1),
    }
    result = {}
    for name, op in ops.items():
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            op()
            times.append(time.perf_counter() - t0)
        result[name] = min(times) / logits.size * 1e9
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a run folder to load (default: an untrained paper-mlp, z = 2)")
    p.add_argument("--images", type=int, default=200,
                   help="test images (default 200: two batches, so that both workers have one)")
    p.add_argument("--k", type=int, default=5000, help="importance samples per image (default 5000)")
    p.add_argument("--batch-size", type=int, default=100, help="images per pass (default 100)")
    p.add_argument("--codes", type=int, default=IWAE_CODES_PER_CALL,
                   help=f"latent codes per decoder call (default {IWAE_CODES_PER_CALL})")
    p.add_argument("--repeats", type=int, default=5, help="alternating repetitions (default 5)")
    p.add_argument("--forms", default="value,log1p", help="pass forms to time (default value,log1p)")
    p.add_argument("--ops", action="store_true", help="also time the likelihood's elementwise operations")
    args = p.parse_args(argv)

    if args.run:
        from scratchvae.runs.checkpoint import load_model

        vae, config = load_model(args.run)
    else:
        vae, config = build_vae("paper-mlp", latent_dim=2, seed=0), {"preprocess": "unit", "seed": 0}
    x, source = test_images(args.images, config.get("preprocess", "unit"), config.get("seed", 0))
    denses = decoder_denses(vae)
    flops = sum(2 * d.in_features * d.out_features for d in denses)
    chunk = max(1, args.codes // args.batch_size)
    calls = []  # rows of each decoder call, as the pass makes them
    for start in range(0, x.shape[0], args.batch_size):
        b = min(args.batch_size, x.shape[0] - start)
        calls += [min(chunk, args.k - c0) * b for c0 in range(0, args.k, chunk)]
    samples = sum(calls)
    print(f"{vae!r}, {vae.dtype}; {x.shape[0]} {source}, K = {args.k}, batch {args.batch_size}, "
          f"up to {max(calls)} codes per decoder call ({len(calls)} calls)")
    print("decoder products per importance sample: " + " + ".join(
        f"2 x {d.in_features} x {d.out_features}" for d in denses) + f" = {flops:,} FLOP; "
        f"{flops * samples / 1e9:.1f} GFLOP for these images")

    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    value_method = type(vae.likelihood).nll_value

    def run_pass(form):
        type(vae.likelihood).nll_value = value_method if form == "value" else Likelihood.nll_value
        try:
            return importance_weighted_log_likelihood(vae, x, k=args.k, batch_size=args.batch_size,
                                                      chunk=chunk, seed=0)
        finally:
            type(vae.likelihood).nll_value = value_method

    timed = {"products": products_only(denses, calls, vae.dtype)}
    timed.update({f"pass ({form})": (lambda form=form: run_pass(form)) for form in forms})
    estimates = {}
    times = {name: [] for name in timed}
    timed["products"]()  # warm-up: page in the weights, start BLAS's threads
    for _ in range(args.repeats):
        for name, fn in timed.items():
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if name != "products":
                estimates[name] = -float(np.mean(out))

    def spread(values, unit="s", digits=3):
        return (f"median {statistics.median(values):.{digits}f} {unit} "
                f"(range {min(values):.{digits}f}-{max(values):.{digits}f})")

    bound = times["products"]
    print(f"products alone: {spread(bound)}, {flops * samples / statistics.median(bound) / 1e9:.0f} GFLOP/s")
    for name in timed:
        if name == "products":
            continue
        ratios = [t / b for t, b in zip(times[name], bound)]
        per_image = statistics.median(times[name]) / x.shape[0]
        print(f"{name}: {spread(times[name])}; ratio to the bound {spread(ratios, unit='', digits=2)}; "
              f"10,000 test images: about {per_image * TEST_IMAGES / 60:.1f} min; "
              f"NLL {estimates[name]:.6f}")
    if args.ops:
        print("elementwise, ns per value, on one call's logits: " + ", ".join(
            f"{name} {ns:.2f}" for name, ns in elementwise_costs(vae, chunk * args.batch_size).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
