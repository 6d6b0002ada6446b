"""Datasets: IDX parsing (``idx``), where the files come from (``sources``), the splits (``mnist``)."""
from .idx import IDXError, load_idx, parse_idx
from .mnist import load_split, to_unit_interval
from .sources import DATASETS, DataNotFoundError, cache_root, locate

__all__ = ["DATASETS", "DataNotFoundError", "IDXError", "cache_root", "load_idx", "load_split",
           "locate", "parse_idx", "to_unit_interval"]
