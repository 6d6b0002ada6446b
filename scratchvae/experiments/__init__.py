"""Experiments that reproduce published results: ``python -m scratchvae.experiments paper``.

* ``paper``: the paper's Tables 1 and 2 (vanilla and convolutional VAE, z = 2, 5, 16:
  train and validation loss, FID, parameter count) and Figures 5-8, written into
  ``docs/reproduction.md`` (see :mod:`scratchvae.experiments.paper`).
* ``nll``: the literature's MNIST likelihood, ``nll-conv`` trained on dynamically binarized
  MNIST and scored by the importance-weighted NLL (K = 5000) as it trains, against Burda et
  al. (2015) (see :mod:`scratchvae.experiments.nll`).

A generated document keeps its hand-written text: each generated part lives between the
markers ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and only that part is rewritten
(``write_section``).
"""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_atomically


def write_section(path: Path, name: str, markdown: str) -> None:
    """Put ``markdown`` between ``<!-- {name}:begin -->`` and ``<!-- {name}:end -->`` in ``path``.

    The text between the markers is replaced and everything else in the file is kept byte
    for byte; when the markers are absent the marked block is appended (the file is created
    if missing). The file is written atomically (``scratchvae.atomic``). Raises
    ``ValueError`` when the markers are unbalanced, repeated or out of order.
    """
    path = Path(path)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{markdown.strip(chr(10))}\n{end}"
    text = path.read_text() if path.exists() else ""
    counts = (text.count(begin), text.count(end))
    if counts == (0, 0):
        separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        text = f"{text}{separator}{block}\n"
    elif counts == (1, 1) and text.index(begin) < text.index(end):
        start, stop = text.index(begin), text.index(end) + len(end)
        text = text[:start] + block + text[stop:]
    else:
        raise ValueError(f"{path}: expected one {begin} before one {end}, found {counts[0]} and "
                         f"{counts[1]} (in the wrong order if 1 and 1); fix the markers by hand")
    write_atomically(path, text)
