"""The explicit schemas of a run folder's small files: the run config (``config.json`` and
the checkpoint's copy), the per-epoch metrics rows (``metrics.csv`` and the checkpoint's
copy) and the training position. Every check raises ``RunFileError`` (or the subclass the
caller passes) naming the file and the fault; nothing else escapes, whatever the input.
"""
from __future__ import annotations

import dataclasses
import json
import math

from ..backend import BACKENDS
from ..data import DATASET_NAMES
from ..likelihoods import LIKELIHOODS
from ..models import KL_ESTIMATORS
from .config import MAX_LATENT_DIM, TrainConfig, TrainingError

METRICS_FIELDS = ("epoch", "train_loss", "test_loss", "test_recon", "test_kl", "seconds",
                  "images_per_second")
MAX_SMALL_FILE = 64 * 2**20  # config.json, metrics.csv and the checkpoint's meta: at most 64 MiB
_MAX_CELL = 40  # characters of one metrics.csv cell
_CONFIG_EXTRAS = {"versions": dict, "num_params": int}


class RunFileError(ValueError):
    """A file of a run folder is malformed; the message names the file and the fault."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _field_checks():
    """{TrainConfig field: predicate on its JSON value} from the dataclass's annotations."""
    kinds = {"int": _is_int, "float": _is_number, "str": lambda v: isinstance(v, str),
             "bool": lambda v: isinstance(v, bool)}
    checks = {}
    for f in dataclasses.fields(TrainConfig):
        parts = [p.strip() for p in str(f.type).split("|")]
        tests = [kinds[p] for p in parts if p in kinds]
        optional = "None" in parts
        if not tests:  # an annotation this schema does not know: any JSON scalar
            tests = [lambda v: isinstance(v, (str, int, float, bool))]
        checks[f.name] = (lambda v, t=tuple(tests), o=optional: (o and v is None) or any(x(v) for x in t))
    return checks


def check_config(config, source, error=RunFileError) -> dict:
    """``config`` (a run config from JSON) checked against ``TrainConfig``: an object whose keys
    are TrainConfig fields (plus ``versions`` and ``num_params``), each of its type, with the
    ranges ``TrainConfig.resolve`` enforces. Fields missing from older runs take the defaults.
    Returns it; raises ``error`` naming ``source``."""
    if not isinstance(config, dict):
        raise error(f"{source}: the run config is a JSON {type(config).__name__}, not an object")
    checks = _field_checks()
    for key in ("model", "latent_dim", "likelihood"):
        if key not in config:
            raise error(f"{source}: the run config lacks {key!r}")
    for key, value in config.items():
        if key in _CONFIG_EXTRAS:
            if not isinstance(value, _CONFIG_EXTRAS[key]) or isinstance(value, bool):
                raise error(f"{source}: config {key!r} is {value!r}, not a {_CONFIG_EXTRAS[key].__name__}")
            continue
        if key not in checks:
            raise error(f"{source}: unknown config key {key!r}")
        if not checks[key](value):
            raise error(f"{source}: config {key!r} has the value {value!r} of the wrong type or not finite")
    if not _is_int(config["latent_dim"]) or not 1 <= config["latent_dim"] <= MAX_LATENT_DIM:
        raise error(f"{source}: config latent_dim {config['latent_dim']!r} is not in 1..{MAX_LATENT_DIM}")
    if isinstance(config.get("seed"), int) and config["seed"] < 0:
        raise error(f"{source}: config seed {config['seed']} is negative")
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.init}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in fields})
    try:
        cfg.resolve()
    except (TrainingError, ValueError, TypeError) as exc:
        raise error(f"{source}: the run config is not valid ({exc})") from None
    for key, allowed in (("likelihood", LIKELIHOODS), ("kl", KL_ESTIMATORS), ("backend", BACKENDS),
                         ("dtype", ("float32", "float64")), ("dataset", DATASET_NAMES)):
        if key in config and config[key] not in allowed:
            raise error(f"{source}: config {key} {config[key]!r} is not one of {', '.join(allowed)}")
    if "preprocess" in config and "binarize" in config and config["preprocess"] != cfg.preprocess:
        raise error(f"{source}: config preprocess {config['preprocess']!r} contradicts its other "
                    f"settings ({cfg.preprocess!r})")
    return config


def parse_config_json(text, source, error=RunFileError) -> dict:
    """The text of a ``config.json`` -> the checked config (``check_config``); strict JSON."""
    return check_config(loads_strict(text, source, error), source, error)


def loads_strict(text, source, error=RunFileError):
    """JSON text -> value; NaN, Infinity, duplicate keys and deep nesting are faults."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(text) > MAX_SMALL_FILE:
        raise error(f"{source}: {len(text):,} characters, more than a run's file can hold")

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("a key appears twice")
        return dict(pairs)

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise error(f"{source}: not valid JSON ({str(exc)[:200]})") from None


def dumps_strict(value, **kw) -> str:
    """JSON text of ``value``; a NaN or infinity is a ``ValueError``, never written."""
    return json.dumps(value, allow_nan=False, **kw)


def check_metrics_rows(rows, source, error=RunFileError, epochs=None) -> list:
    """Metrics rows (dicts of METRICS_FIELDS -> text): epochs 1, 2, ... in order, every other
    cell a finite number; exactly ``epochs`` rows when given. Returns them."""
    if not isinstance(rows, list):
        raise error(f"{source}: the metrics are a {type(rows).__name__}, not a list of rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or tuple(row) != METRICS_FIELDS:
            raise error(f"{source}: metrics row {i + 1} does not hold exactly the columns "
                        f"{','.join(METRICS_FIELDS)}")
        for key, cell in row.items():
            if not isinstance(cell, str) or not 0 < len(cell) <= _MAX_CELL:
                raise error(f"{source}: metrics row {i + 1}, {key}: {cell!r} is not a short text cell")
        if row["epoch"] != str(i + 1):
            raise error(f"{source}: metrics row {i + 1} is for epoch {row['epoch']!r}, expected {i + 1}")
        for key in METRICS_FIELDS[1:]:
            try:
                value = float(row[key])
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or row[key].strip() != row[key]:
                raise error(f"{source}: metrics row {i + 1}, {key}: {row[key]!r} is not a finite number")
    if epochs is not None and len(rows) != epochs:
        raise error(f"{source}: {len(rows)} metrics rows for {epochs} completed epochs")
    return rows


def parse_metrics_csv(text, source, error=RunFileError) -> list:
    """The text of a ``metrics.csv`` (as ``format_metrics_csv`` writes it) -> checked rows."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise error(f"{source}: not a scratchvae metrics.csv (it holds non-ASCII bytes)") from None
    if len(text) > MAX_SMALL_FILE:
        raise error(f"{source}: {len(text):,} characters, more than a metrics.csv holds")
    if not text.endswith("\n"):
        raise error(f"{source}: the last line is cut short (no newline at the end)")
    lines = text[:-1].split("\n")
    if lines[0] != ",".join(METRICS_FIELDS):
        raise error(f"{source}: the header is {lines[0][:100]!r}, expected {','.join(METRICS_FIELDS)!r}")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(METRICS_FIELDS):
            raise error(f"{source}: line {n} has {len(cells)} cells, expected {len(METRICS_FIELDS)}")
        rows.append(dict(zip(METRICS_FIELDS, cells)))
    return check_metrics_rows(rows, source, error)


def format_metrics_csv(rows) -> str:
    """Metrics rows -> the text of ``metrics.csv``."""
    lines = [",".join(METRICS_FIELDS)] + [",".join(r[k] for k in METRICS_FIELDS) for r in rows]
    return "\n".join(lines) + "\n"


def check_position(position, source, error=RunFileError) -> dict:
    """``{epoch: int >= 0, step: int >= 0, loss_sum: finite number}``, exactly these keys."""
    if not isinstance(position, dict) or set(position) != {"epoch", "step", "loss_sum"}:
        raise error(f"{source}: the position is not an object with exactly epoch, step, loss_sum")
    for key in ("epoch", "step"):
        if not _is_int(position[key]) or position[key] < 0:
            raise error(f"{source}: position {key} {position[key]!r} is not an integer >= 0")
    if not _is_number(position["loss_sum"]):
        raise error(f"{source}: position loss_sum {position['loss_sum']!r} is not a finite number")
    return position
