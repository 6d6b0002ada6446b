"""Where a scratchvae training step spends its time, layer by layer (forward and backward).

    python benchmarks/profile_step.py                         # paper-conv, batch 64, numpy
    python benchmarks/profile_step.py --model paper-mlp --steps 200
    python benchmarks/profile_step.py --backend cupy          # synchronizes after every layer
    python benchmarks/profile_step.py --model resnet18-vae --batch 32 --steps 5 --warmup 1 --by-type

Every layer of the encoder and decoder Sequentials is timed by wrapping its ``forward`` and
``backward``; the rest of the step (Gaussian head, reparameterization, KL, likelihood, Adam)
is timed as a whole. Prints the minimum and the median over ``--steps`` steps after a
warm-up. ``--by-type`` times the innermost layers instead (inside residual blocks too) and
sums them by kind (every Conv2d 3x3 stride 1, every BatchNorm2d, ...), with the residual
additions inside "the rest"; resnet18-vae runs on random colour images. On cupy each timing synchronizes the device, which the real step never does, so
the GPU numbers show where kernels go rather than the step's true speed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import RESNET, colour_batch, real_batch  # noqa: E402

from scratchvae.backend import get_xp, to_device  # noqa: E402
from scratchvae.layers.base import iter_layers  # noqa: E402
from scratchvae.models import build_vae  # noqa: E402
from scratchvae.optim import Adam  # noqa: E402


def _wrap(layer, label, times, sync):
    fwd, bwd = layer.forward, layer.backward

    def forward(x, training=True):
        t0 = time.perf_counter()
        y = fwd(x, training=training)
        sync()
        times[(label, "forward")].append(time.perf_counter() - t0)
        return y

    def backward(dy, **kwargs):
        t0 = time.perf_counter()
        dx = bwd(dy, **kwargs)
        sync()
        times[(label, "backward")].append(time.perf_counter() - t0)
        return dx

    layer.forward, layer.backward = forward, backward


def _kind(layer):
    """A layer's kind for --by-type: the class, and a convolution's geometry."""
    name = type(layer).__name__
    if hasattr(layer, "kernel_size"):
        return (f"{name} {layer.kernel_size[0]}x{layer.kernel_size[1]} stride {layer.stride[0]} "
                f"{'in->out' if layer.in_channels != layer.out_channels else 'same width'}")
    return name


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="paper-conv")
    p.add_argument("--latent-dim", type=int, default=None, help="default: 2, or 256 for resnet18-vae")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--by-type", action="store_true", help="innermost layers, summed by kind")
    args = p.parse_args(argv)

    resnet = args.model == RESNET
    latent = args.latent_dim if args.latent_dim is not None else (None if resnet else 2)
    vae = build_vae(args.model, latent, seed=0, backend=args.backend)
    opt = Adam(vae.params, vae.grads, lr=1e-4 if resnet else 1e-3)
    x = to_device(colour_batch(args.batch) if resnet else real_batch(args.batch), args.backend)
    xp = get_xp(args.backend)
    sync = (lambda: xp.cuda.Stream.null.synchronize()) if args.backend == "cupy" else (lambda: None)

    times = defaultdict(list)
    order = []
    for part in ("encoder", "decoder"):
        layers = list(iter_layers(getattr(vae, part))) if args.by_type else getattr(vae, part).layers
        for i, layer in enumerate(layers):
            label = f"{part} {_kind(layer)}" if args.by_type else f"{part}.{i} {layer!r}".split("\n")[0]
            if label not in order:
                order.append(label)
            _wrap(layer, label, times, sync)

    steps = []
    for s in range(args.warmup + args.steps):
        if s == args.warmup:
            times.clear()
            steps.clear()
        t0 = time.perf_counter()
        vae.forward(x, training=True)
        vae.backward()
        opt.step()
        sync()
        steps.append(time.perf_counter() - t0)

    n = len(steps)
    if args.by_type:  # several layers share a label: one sum per step and direction
        for key, ts in list(times.items()):
            per_step = len(ts) // n
            times[key] = [sum(ts[k * per_step:(k + 1) * per_step]) for k in range(n)]
    layer_total = [sum(v[k] for v in times.values()) for k in range(n)]
    rest = [s - t for s, t in zip(steps, layer_total)]
    print(f"{args.model} z={vae.latent_dim} batch {args.batch} on {args.backend}: "
          f"step median {statistics.median(steps) * 1e3:.2f} ms, min {min(steps) * 1e3:.2f} ms "
          f"over {n} steps")
    print(f"{'layer':<72} {'fwd min':>8} {'fwd med':>8} {'bwd min':>8} {'bwd med':>8}")
    def cells(ts):  # a layer whose backward never runs (before the first weights) shows "-"
        if not ts:
            return f"{'-':>8} {'-':>8}"
        return f"{min(ts) * 1e3:>8.2f} {statistics.median(ts) * 1e3:>8.2f}"

    for label in order:
        print(f"{label[:72]:<72} {cells(times[(label, 'forward')])} {cells(times[(label, 'backward')])}")
    print(f"{'head, sampling, KL, likelihood, Adam (the rest of the step)':<72} "
          f"{min(rest) * 1e3:>8.2f} {statistics.median(rest) * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
