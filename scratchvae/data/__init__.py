"""Datasets: IDX parsing (``idx``), where the files come from (``sources``), the splits (``mnist``)."""
from .idx import IDXError, load_idx, parse_idx
from .mnist import PREPROCESSING, load_split, prepare_batch
from .sources import DATASETS, DataNotFoundError, cache_root, locate

DATASET_NAMES = tuple(DATASETS) + ("cifar10",)  # what load_split reads (cifar10: data/cifar10.py)

__all__ = ["DATASETS", "DATASET_NAMES", "DataNotFoundError", "IDXError", "cache_root", "load_idx",
           "load_split", "locate", "parse_idx", "prepare_batch", "PREPROCESSING"]
