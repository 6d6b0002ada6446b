"""Calling a learner's code: one line for anything it raises, never the grader's traceback.

``call`` runs one of the learner's functions and turns an exception into a ``LearnerError``
whose message names the exception, its text and the learner's own file and line;
``NotImplementedError`` (a skeleton's body) becomes "not written yet".
"""
import os
import traceback
from pathlib import Path

_GRADER = str(Path(__file__).resolve().parent)
_NUMPY = str(Path(os.path.dirname(__import__("numpy").__file__)).resolve())


class LearnerError(Exception):
    """The learner's code raised or returned something unusable; ``str`` is one line."""

    def __init__(self, message, not_written=False):
        super().__init__(message)
        self.not_written = not_written


def _where(filename, lineno, function=None):
    try:
        shown = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        shown = filename
    if shown.startswith(".."):
        shown = filename
    return f"{shown}:{lineno}" + (f", in {function}" if function else "")


def one_line(exc):
    """``Type: message (file:line, in function)`` at the innermost frame that is neither the
    grader's nor NumPy's: the line of the learner's code that raised."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} ({_where(exc.filename, exc.lineno)})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not str(Path(f.filename).resolve()).startswith((_GRADER, _NUMPY))]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    head = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return head + (f" ({_where(frames[-1].filename, frames[-1].lineno, frames[-1].name)})"
                   if frames else "")


def call(fn, what, *args):
    """``fn(*args)``; any exception becomes a ``LearnerError`` saying ``what`` raised it."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise LearnerError(f"{what} is not written yet (it raises NotImplementedError)",
                           not_written=True) from None
    except Exception as exc:  # the learner's bug, whatever it is: reported, not raised
        raise LearnerError(f"{what} raised {one_line(exc)}") from None
