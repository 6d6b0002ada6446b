"""Everything about a run's files, and nothing else: the run's settings (``config``), the
schemas of config.json, metrics.csv and sessions.json (``schema``), the checkpoint format and
its loader (``checkpoint``), and the folder with its lock (``folder``). Atomic writes are
``scratchvae.atomic``, below it. This package imports the models (to build the model a
checkpoint describes) and nothing above them: the training loop, the estimators, the figures
and the command lines all use it, never the reverse.
"""
from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_model, read_checkpoint, read_meta
from .config import TrainConfig, TrainingError
from .folder import (CONFIG_NAME, EVALUATION_NAME, LOCK_NAME, METRICS_NAME, SESSIONS_NAME, RunFolder,
                     RunFolderError, read_metrics)
from .schema import METRICS_FIELDS, RunFileError

__all__ = ["CHECKPOINT_NAME", "CONFIG_NAME", "EVALUATION_NAME", "LOCK_NAME", "METRICS_FIELDS", "METRICS_NAME",
           "SESSIONS_NAME", "CheckpointError", "RunFileError", "RunFolder", "RunFolderError", "TrainConfig",
           "TrainingError", "load_model", "read_checkpoint", "read_meta", "read_metrics"]
