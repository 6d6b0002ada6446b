"""scratchvae and the PyTorch reference trained in lockstep: the same initial weights, the same
batches, the same noise and the same dropout masks, step by step in one process.

    python benchmarks/lockstep.py --jobs 2 --section    # 4 configurations x 5 seeds (CPU-hours/2)
    python benchmarks/lockstep.py --quick                # a smoke test (seconds)
    python benchmarks/lockstep.py --report-only          # the table from what has finished

The side-by-side study (``side_by_side.py``) compares independent seeds: the two frameworks
draw different initial weights, batches and noise, so each run lands somewhere in the
seed-to-seed spread (for paper-conv at z = 16 that spread is 25 nats wide after 10 epochs)
and a median over five seeds cannot resolve half a nat. Here the only difference left between
the two runs of a seed is the implementation itself: the PyTorch model starts from a copy of
scratchvae's initial weights, both see the batches of one shuffle, one eps per step
(``numpy.random.default_rng``) and the dropout masks scratchvae drew (read from its Dropout
layers after each forward and applied by a mask module in place of ``nn.Dropout``). Both run
Adam (lr 1e-3) in float32. What remains is float rounding: different summation orders in the
matrix products and convolutions, amplified by training.

Each run records the two training losses at every step, the largest parameter difference
relative to the largest parameter at the end of every epoch, and the test negative ELBO of
both on the 10,000 official test images (evaluation mode, one shared noise sample per image).
Settings are the paper's regime of the side-by-side study: the first 6,000 training images,
10 epochs, batch 64, x / 255, Bernoulli likelihood. One thread per run; ``--jobs N`` runs N at
once; each finished run writes ``RESULTS/<run>.json``, so a repeated command skips it.
PyTorch is needed by this script only; ``scratchvae/`` never imports it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
for _path in (str(REPO_ROOT), str(BENCHMARKS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import side_by_side  # noqa: E402  (the regime, the configurations and the data are the study's)

SHARED_MNIST, DEFAULT_DOC, ONE_THREAD = side_by_side.SHARED_MNIST, side_by_side.DEFAULT_DOC, side_by_side.ONE_THREAD
CONFIGS, BATCH_SIZE, LR = side_by_side.CONFIGS, side_by_side.BATCH_SIZE, side_by_side.LR
DEFAULT_RESULTS = REPO_ROOT / "runs" / "lockstep"
SECTION = "lockstep"
PAPER = dict(side_by_side.PAPER, test_limit=10_000)
QUICK = dict(train_limit=256, epochs=1, test_limit=500)


def run_name(model, latent_dim, seed, train_limit, epochs):
    return f"lockstep_{model}_z{latent_dim}_n{train_limit}_e{epochs}_s{seed}"


# -- the PyTorch side: scratchvae's weights and masks --------------------------------------
def _torch_twin(vae, model, latent_dim):
    """The reference VAE with scratchvae's current weights and mask modules for dropout."""
    import torch
    from torch import nn

    from torch_reference import VAE

    class GivenMask(nn.Module):
        """Dropout whose scaled keep-mask is set from outside before each training forward."""

        def __init__(self):
            super().__init__()
            self.mask = None

        def forward(self, x):
            return x * self.mask if self.training else x

    twin = VAE(model, latent_dim)
    for part in ("encoder", "decoder"):
        seq = getattr(twin, part)
        for i, module in enumerate(seq):
            if isinstance(module, nn.Dropout):
                seq[i] = GivenMask()
    ours = {k: v for k, v in vae.params.items()}
    pairs = []  # (scratchvae name, torch parameter, transpose?)
    for part in ("encoder", "decoder"):
        for i, module in enumerate(getattr(twin, part)):
            if hasattr(module, "weight"):
                pairs.append((f"{part}.{i}.W", module.weight, isinstance(module, nn.Linear)))
                pairs.append((f"{part}.{i}.b", module.bias, False))
    for head in ("mu", "logvar"):
        module = getattr(twin, head)
        pairs += [(f"head.{head}.W", module.weight, True), (f"head.{head}.b", module.bias, False)]
    if {name for name, _, _ in pairs} != set(ours):
        raise RuntimeError(f"parameter names differ: {sorted(set(ours) ^ {n for n, _, _ in pairs})}")
    with torch.no_grad():
        for name, param, transpose in pairs:
            value = torch.from_numpy(ours[name].T.copy() if transpose else ours[name].copy())
            if tuple(value.shape) != tuple(param.shape):
                raise RuntimeError(f"{name}: shape {tuple(value.shape)} vs {tuple(param.shape)}")
            param.copy_(value)
    masks = [m for part in ("encoder", "decoder") for m in getattr(twin, part) if isinstance(m, GivenMask)]
    return twin, pairs, masks


def _max_relative_difference(vae, pairs):
    """max |ours - torch| over every parameter, over max |ours| (the largest weight)."""
    import numpy as np

    diff, scale = 0.0, 0.0
    for name, param, transpose in pairs:
        ours = vae.params[name].T if transpose else vae.params[name]
        theirs = param.detach().numpy()
        diff = max(diff, float(np.max(np.abs(ours - theirs))))
        scale = max(scale, float(np.max(np.abs(ours))))
    return diff / scale


# -- one run ------------------------------------------------------------------------------------
def train_pair(model, latent_dim, seed, train_limit, epochs, test_limit, data_dir):
    """Train both in lockstep; return the run's record (a dict, JSON-ready)."""
    import numpy as np
    import torch

    from scratchvae.data import load_split
    from scratchvae.layers import Dropout
    from scratchvae.models import build_vae
    from scratchvae.optim import Adam

    torch.set_num_threads(1)
    train, _ = load_split("train", data_dir=data_dir, download=False)
    test, _ = load_split("test", data_dir=data_dir, download=False)
    x_train = (train[:train_limit].astype(np.float32) / 255.0)[:, None]
    x_test = (test[:test_limit].astype(np.float32) / 255.0)[:, None]

    vae = build_vae(model, latent_dim, seed=seed)
    opt = Adam(vae.params, vae.grads, lr=LR)
    dropouts = [layer for part in (vae.encoder, vae.decoder) for layer in part.layers
                if isinstance(layer, Dropout)]
    twin, pairs, masks = _torch_twin(vae, model, latent_dim)
    twin_opt = torch.optim.Adam(twin.parameters(), lr=LR)
    noise = np.random.default_rng(seed + 1_000_003)  # the shared shuffles and eps
    test_eps = np.random.default_rng(seed + 2_000_003).standard_normal(
        (len(x_test), latent_dim)).astype(np.float32)

    losses, param_diff, epoch_test = [], [], []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        twin.train()
        order = noise.permutation(len(x_train))
        for start in range(0, len(order), BATCH_SIZE):
            xb = x_train[order[start:start + BATCH_SIZE]]
            eps = noise.standard_normal((len(xb), latent_dim)).astype(np.float32)
            ours = vae.forward(xb, eps=eps, training=True)
            for module, layer in zip(masks, dropouts):
                module.mask = torch.from_numpy(np.ascontiguousarray(layer._cache[0]))
            vae.backward()
            opt.step()
            recon, kl = twin(torch.from_numpy(xb), eps=torch.from_numpy(eps))
            loss = (recon + kl).mean()
            twin_opt.zero_grad(set_to_none=True)
            loss.backward()
            twin_opt.step()
            losses.append((float(ours.loss), float(loss.item())))
        param_diff.append(_max_relative_difference(vae, pairs))
        epoch_test.append(_test_nelbo(vae, twin, x_test, test_eps))
    seconds = time.perf_counter() - t0
    ours_test, torch_test = epoch_test[-1]
    step_gaps = [abs(a - b) for a, b in losses]
    return dict(
        name=run_name(model, latent_dim, seed, train_limit, epochs), model=model,
        latent_dim=latent_dim, seed=seed, train_limit=train_limit, epochs=epochs,
        test_images=len(x_test), test_nelbo_scratchvae=ours_test, test_nelbo_torch=torch_test,
        epoch_test=epoch_test, param_relative_difference=param_diff,
        first_step_loss_gap=step_gaps[0], median_loss_gap_first_epoch=statistics.median(
            step_gaps[: len(step_gaps) // epochs]),
        median_loss_gap_last_epoch=statistics.median(step_gaps[-(len(step_gaps) // epochs):]),
        losses=losses, seconds=seconds,
        versions=dict(numpy=np.__version__, torch=torch.__version__,
                      python=platform.python_version()),
    )


def _test_nelbo(vae, twin, x_test, eps, batch=1000):
    """Test negative ELBO (nats per image) of both: evaluation mode, the same eps for both."""
    import torch

    twin.eval()
    ours = theirs = 0.0
    with torch.no_grad():
        for start in range(0, len(x_test), batch):
            xb, eb = x_test[start:start + batch], eps[start:start + batch]
            ours += float(vae.forward(xb, eps=eb, training=False).loss) * len(xb)
            recon, kl = twin(torch.from_numpy(xb), eps=torch.from_numpy(eb))
            theirs += float((recon + kl).double().sum())
    return ours / len(x_test), theirs / len(x_test)


def _run_and_save(args):
    config, results, data_dir = args
    from scratchvae.atomic import write_atomically

    record = train_pair(*config, data_dir=data_dir)
    write_atomically(results / f"{record['name']}.json", json.dumps(record).encode())
    return record["name"], record["test_nelbo_scratchvae"], record["test_nelbo_torch"]


# -- the report -------------------------------------------------------------------------------
def report(records, command):
    """Markdown: one row per configuration (medians over seeds) and one per run."""
    if not records:
        return "No lockstep run has finished yet."
    lines = [
        f"Command: `{command}`",
        "",
        f"Test negative ELBO, nats per image, on {records[0]['test_images']:,} test images, after "
        f"{records[0]['epochs']} epochs on {records[0]['train_limit']:,} images. *Gap*: "
        "scratchvae minus PyTorch, same seed; *param diff*: the largest parameter difference "
        "over the largest parameter, at the end.",
        "",
        "| model | z | seeds | median gap | largest gap | median scratchvae | median PyTorch "
        "| median param diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_config = {}
    for r in records:
        by_config.setdefault((r["model"], r["latent_dim"]), []).append(r)
    for (model, z), rs in sorted(by_config.items()):
        gaps = [r["test_nelbo_scratchvae"] - r["test_nelbo_torch"] for r in rs]
        lines.append(
            f"| {model} | {z} | {len(rs)} | {statistics.median(gaps):+.3f} | "
            f"{max(gaps, key=abs):+.3f} | "
            f"{statistics.median(r['test_nelbo_scratchvae'] for r in rs):.2f} | "
            f"{statistics.median(r['test_nelbo_torch'] for r in rs):.2f} | "
            f"{statistics.median(r['param_relative_difference'][-1] for r in rs):.1e} |")
    lines += ["", "Every run: the training-loss gap |scratchvae - PyTorch| at the first step and "
              "its median over the first and the last epoch; the parameter difference after "
              "epoch 1 and at the end.", "",
              "| model | z | seed | scratchvae | PyTorch | gap | loss gap step 1 | first epoch "
              "| last epoch | param diff epoch 1 | end | minutes |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(records, key=lambda r: (r["model"], r["latent_dim"], r["seed"])):
        lines.append(
            f"| {r['model']} | {r['latent_dim']} | {r['seed']} | {r['test_nelbo_scratchvae']:.3f} "
            f"| {r['test_nelbo_torch']:.3f} | "
            f"{r['test_nelbo_scratchvae'] - r['test_nelbo_torch']:+.3f} | "
            f"{r['first_step_loss_gap']:.1e} | {r['median_loss_gap_first_epoch']:.1e} | "
            f"{r['median_loss_gap_last_epoch']:.1e} | {r['param_relative_difference'][0]:.1e} | "
            f"{r['param_relative_difference'][-1]:.1e} | {r['seconds'] / 60:.1f} |")
    v = records[0]["versions"]
    lines += ["", f"Versions: NumPy {v['numpy']}, PyTorch {v['torch']}, Python {v['python']}; "
              "one thread per run."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=None, help="seeds per configuration (5; --quick 1)")
    p.add_argument("--configs", nargs="+", default=None,
                   help="MODEL:Z entries, e.g. paper-conv:16 (default: mlp and conv at z = 2 and 16)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="256 images, 1 epoch, 500 test images")
    p.add_argument("--data-dir", type=Path, default=SHARED_MNIST if SHARED_MNIST.is_dir() else None)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--section", action="store_true",
                   help=f"write the report into {DEFAULT_DOC.name} between the {SECTION} markers")
    args = p.parse_args(argv)
    regime = QUICK if args.quick else PAPER
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 5)
    if args.configs:
        try:
            configs = [(m, int(z)) for m, z in (c.split(":") for c in args.configs)]
        except ValueError:
            p.error("--configs entries look like paper-conv:16")
    else:
        configs = [CONFIGS[0]] if args.quick else list(CONFIGS)
    results = args.results or (DEFAULT_RESULTS.parent / "lockstep-quick" if args.quick else DEFAULT_RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    wanted = [(m, z, s, regime["train_limit"], regime["epochs"], regime["test_limit"])
              for m, z in configs for s in range(seeds)]
    todo = [c for c in wanted if not (results / f"{run_name(*c[:5])}.json").exists()]
    if todo and not args.report_only:
        os.environ.update(ONE_THREAD)  # the workers import NumPy with one BLAS thread
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            for name, ours, theirs in pool.map(_run_and_save, [(c, results, args.data_dir) for c in todo]):
                print(f"{name}: scratchvae {ours:.3f}, PyTorch {theirs:.3f}, gap {ours - theirs:+.3f}",
                      flush=True)
    records = [json.loads((results / f"{run_name(*c[:5])}.json").read_text())
               for c in wanted if (results / f"{run_name(*c[:5])}.json").exists()]
    command = "python benchmarks/lockstep.py" + (" --quick" if args.quick else " --jobs 2 --section")
    text = report(records, command)
    print(text)
    if args.section:
        from scratchvae.experiments import write_section

        write_section(DEFAULT_DOC, SECTION, text)


if __name__ == "__main__":
    main()
