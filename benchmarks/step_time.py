"""Time one full training step (forward, backward, Adam) of scratchvae against an independent
PyTorch implementation of the same architecture, alternating them in one process.

    python benchmarks/step_time.py                      # both models, batch 64 and 256, CPU
    python benchmarks/step_time.py --backend cupy       # scratchvae on the GPU, torch on cuda
    python benchmarks/step_time.py --models paper-mlp --batches 64 --steps 400
    python benchmarks/step_time.py --models resnet18-vae --batches 32 --steps 10 --block 5 --warmup 1

Prints milliseconds per step (median over ``--steps`` after ``--warmup``), the ratio
scratchvae / PyTorch (below 1 means scratchvae is faster), and the peak memory a step
adds for scratchvae on the CPU (tracemalloc sees every NumPy buffer). PyTorch's CPU
allocator keeps no statistics and its peak resident set is set by the import, not by a
step, so no honest per-step figure exists for it here: the column says n/a.
PyTorch is an optional dependency of this benchmark only (torch_reference.py holds its model;
torch_resnet.py the resnet18-vae, which runs on random 32x32 colour images in [0, 1] with the
tutorial's latent 256, learned log-scale, Monte-Carlo KL and Adam at 1e-4).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scratchvae.backend import get_xp, to_device  # noqa: E402
from scratchvae.models import build_vae  # noqa: E402
from scratchvae.optim import Adam  # noqa: E402


def real_batch(batch, seed=0, real=True):
    """``batch`` MNIST training images in [0, 1], (N, 1, 28, 28) float32 (noise if MNIST is
    absent, or if ``real`` is False: memory measurements must not load the whole data set)."""
    if not real:
        return np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)
    try:
        from scratchvae.data import load_split

        shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
        images, _ = load_split("train", data_dir=shared if shared.is_dir() else None, download=False)
        idx = np.random.default_rng(seed).choice(len(images), batch, replace=False)
        # reshape, not [:, None]: NumPy gives a new axis stride 0, and a (N, 1, H, W) tensor with
        # a stride-0 channel axis is one PyTorch's memory-format heuristics may read as channels-
        # last, a different (and on some builds far slower) convolution path than a plain model's
        return (images[idx].astype(np.float32) / 255.0).reshape(batch, 1, 28, 28)
    except Exception:  # benchmark on noise rather than not at all
        return np.random.default_rng(seed).random((batch, 1, 28, 28), dtype=np.float32)


RESNET = "resnet18-vae"


def colour_batch(batch, seed=0):
    """``batch`` random 32x32 colour images in [0, 1], (N, 3, 32, 32) float32."""
    return np.random.default_rng(seed).random((batch, 3, 32, 32), dtype=np.float32)


class ScratchStep:
    def __init__(self, model, batch, backend):
        resnet = model == RESNET
        self.vae = build_vae(model, None if resnet else 2, seed=0, backend=backend)
        self.opt = Adam(self.vae.params, self.vae.grads, lr=1e-4 if resnet else 1e-3)
        self.x = to_device(colour_batch(batch) if resnet else real_batch(batch), backend)
        self.xp = get_xp(backend)
        self.sync = (lambda: self.xp.cuda.Stream.null.synchronize()) if backend == "cupy" else (lambda: None)

    def __call__(self):
        self.vae.forward(self.x, training=True)
        self.vae.backward()
        self.opt.step()


class TorchStep:
    def __init__(self, model, batch, device, real=True):
        import torch

        from torch_reference import VAE

        torch.manual_seed(0)
        self.torch = torch
        if model == RESNET:
            from torch_resnet import ResNetVAE

            self.model = ResNetVAE().to(device).train()
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
            self.x = torch.from_numpy(colour_batch(batch)).to(device)
            self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            return
        self.model = VAE(model, 2).to(device).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.x = torch.from_numpy(real_batch(batch, real=real)).to(device)
        assert self.x.stride() == torch.empty(self.x.shape).stride(), "a plain model's input: canonical strides"
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def __call__(self):
        recon, kl = self.model(self.x)
        loss = (recon + kl).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def time_alternating(a, b, steps, warmup, block=50):
    """Median seconds per call of ``a`` and ``b``, alternating in blocks of ``block`` calls so
    both see the same machine state.

    Blocks, not single calls: right after one library's step, the other's thread pool is still
    spinning (OpenBLAS and PyTorch's OpenMP workers busy-wait for more work), so the first call
    after a switch runs with a core taken. Alternating call by call makes every call such a
    first call: on this project's 2-core machine that inflated PyTorch's conv step from 78 to
    138 ms (and ours less), which flattered the ratio. The slowdown lasts several calls after a
    switch (blocks of 10 still showed 111 ms), so blocks are 50 calls long by default; the
    medians then match each library timed alone in its own process.
    """
    for _ in range(warmup):
        a(), b()
    a.sync(), b.sync()
    ta, tb = [], []
    for _ in range(max(1, steps // block)):
        for f, out in ((a, ta), (b, tb)):
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                f.sync()
                out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def scratch_peak_mib(step):
    """Peak NumPy memory (MiB) allocated during one step, above what was held before it."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["paper-mlp", "paper-conv"])
    p.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--block", type=int, default=50,
                   help="steps of one library before switching to the other (1: alternate every step)")
    p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads (NumPy's BLAS: OPENBLAS_NUM_THREADS)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    device = "cuda" if args.backend == "cupy" else "cpu"
    print(f"scratchvae ({args.backend}) vs torch {torch.__version__} ({device}, {args.threads} threads) | "
          f"numpy {np.__version__} | python {platform.python_version()} | {platform.machine()}")
    print(f"{'model':<11} {'batch':>5} {'scratchvae ms':>14} {'torch ms':>9} {'ratio':>6} "
          f"{'scratch MiB':>12} {'torch MiB':>10}")
    for model in args.models:
        for batch in args.batches:
            ours, theirs = ScratchStep(model, batch, args.backend), TorchStep(model, batch, device)
            t_ours, t_theirs = time_alternating(ours, theirs, args.steps, args.warmup, args.block)
            mem_ours = f"{scratch_peak_mib(ours):.1f}" if args.backend == "numpy" else "n/a"
            print(f"{model:<11} {batch:>5} {t_ours * 1e3:>14.2f} {t_theirs * 1e3:>9.2f} "
                  f"{t_ours / t_theirs:>6.2f} {mem_ours:>12} {'n/a':>10}")


if __name__ == "__main__":
    main()
