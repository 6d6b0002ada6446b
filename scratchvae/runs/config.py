"""A run's settings: ``TrainConfig`` (saved as config.json and inside every checkpoint), the
checks that make a setting valid, the settings a resume must keep, and a new run's default
folder name. Everything else about a run's files is in ``scratchvae.runs``'s other modules.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ..models import ARCHITECTURES

MAX_LATENT_DIM = 65_536  # a model with more latent dimensions than this is refused, not built
DATASET_IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why and what to do."""


@dataclass
class TrainConfig:
    """Every setting of a run; saved as config.json and inside each checkpoint."""

    model: str = "paper-mlp"
    latent_dim: int | None = None
    likelihood: str | None = None
    beta: float = 1.0
    kl: str | None = None  # the architecture's: "mc" for resnet18-vae, else "analytic"
    variance: float = 0.5
    kl_warmup: float = 0.0
    free_bits: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None  # the architecture's: 1e-4 for resnet18-vae, else 1e-3
    lr_decay: float = 1.0
    seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None
    binarize: bool = False
    dataset: str = "mnist"
    data_dir: str | None = None
    backend: str = "numpy"
    dtype: str = "float32"
    preprocess: str = field(default="", init=False)

    def resolve(self):
        """Fill architecture defaults and derived fields; validate ranges."""
        if self.model not in ARCHITECTURES:
            raise TrainingError(f"unknown --model {self.model!r}: choose one of {', '.join(ARCHITECTURES)}")
        spec = ARCHITECTURES[self.model]
        self.latent_dim = spec["latent_dim"] if self.latent_dim is None else int(self.latent_dim)
        self.likelihood = spec["likelihood"] if self.likelihood is None else self.likelihood
        defaults = dict(dict(kl="analytic", lr=1e-3), **spec["defaults"])
        self.kl = defaults["kl"] if self.kl is None else self.kl
        self.lr = defaults["lr"] if self.lr is None else self.lr
        shape = DATASET_IMAGE_SHAPES.get(self.dataset)
        if shape is not None and spec["image_shape"] != shape:
            raise TrainingError(f"--model {self.model} reads {'x'.join(map(str, spec['image_shape']))} "
                                f"images but --dataset {self.dataset} has {'x'.join(map(str, shape))}: "
                                "use resnet18-vae with cifar10 and the other models with MNIST")
        symmetric = spec["data_range"] == (-1.0, 1.0)
        if self.binarize and symmetric:
            raise TrainingError(f"--binarize gives 0/1 pixels, but {self.model} expects [-1, 1] data")
        self.preprocess = "binarize" if self.binarize else ("symmetric" if symmetric else "unit")
        for name in ("epochs", "batch_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.latent_dim > MAX_LATENT_DIM:
            raise TrainingError(f"--latent-dim must be at most {MAX_LATENT_DIM:,}, got {self.latent_dim:,}")
        if self.seed < 0:
            raise TrainingError(f"--seed must be an integer >= 0, got {self.seed}")
        for name in ("lr", "beta", "variance"):
            if not math.isfinite(getattr(self, name)):
                raise TrainingError(f"--{name} must be a finite number, got {getattr(self, name)}")
        if self.variance <= 0:
            raise TrainingError(f"--variance must be positive, got {self.variance}")
        for name in ("train_limit", "val_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.lr <= 0:
            raise TrainingError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise TrainingError(f"--lr-decay must be in (0, 1], the factor applied to the learning "
                                f"rate after every epoch (1 = constant), got {self.lr_decay}")
        for name, unit in (("kl_warmup", "epochs"), ("free_bits", "nats per latent dimension")):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise TrainingError(f"--{name.replace('_', '-')} must be a finite number >= 0 "
                                    f"({unit}), got {value}")
        if self.free_bits > 0 and self.kl != "analytic":
            raise TrainingError(f"--free-bits needs --kl analytic (it floors each dimension's "
                                f"analytic KL), got --kl {self.kl}")
        return self


# Settings a resumed run must keep: the model, its objective (beta, KL warm-up, free bits),
# the data and the optimizer.
ARCHITECTURE_KEYS = ("model", "latent_dim", "likelihood", "beta", "kl", "variance", "kl_warmup",
                     "free_bits", "dtype", "dataset", "seed", "batch_size", "lr", "lr_decay",
                     "binarize", "train_limit")




def default_run_name(cfg: TrainConfig, when=None) -> str:
    """A new run's folder name when no --out is given: the model, its latent size, every
    setting that differs from the defaults (so runs started together with other --beta, say,
    are told apart) and the local time, ``paper-mlp-z2-beta4-20261207-013000``. ``cfg`` must
    be resolved. Runs started in the same second with the same settings are told apart by the
    ``-2``, ``-3``, ... that ``RunFolder.create_new`` adds."""
    spec, base = ARCHITECTURES[cfg.model], TrainConfig(model=cfg.model).resolve()
    tags = []
    if cfg.dataset != base.dataset:
        tags.append(cfg.dataset)
    if cfg.likelihood != spec["likelihood"]:
        tags.append(cfg.likelihood)
    if cfg.likelihood == "gaussian-fixed" and cfg.variance != base.variance:
        tags.append(f"var{cfg.variance:g}")
    for name, short in (("beta", "beta"), ("kl", "kl"), ("kl_warmup", "warmup"), ("free_bits", "freebits"),
                        ("lr", "lr"), ("lr_decay", "decay"), ("batch_size", "batch"), ("seed", "seed"),
                        ("train_limit", "limit"), ("dtype", "")):
        value = getattr(cfg, name)
        if value != getattr(base, name):
            tags.append(f"{short}{value:g}" if isinstance(value, float) else f"{short}{value}")
    if cfg.binarize:
        tags.append("binarized")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return "-".join([cfg.model, f"z{cfg.latent_dim}", *tags, stamp])
