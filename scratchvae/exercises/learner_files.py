"""The learner's files: one per exercise, ``DIR/NAME.py`` holding ``NAME_forward`` and
``NAME_backward``. ``write_skeleton`` starts one (never over an existing file);
``load_pair`` imports one, turning a syntax error or a missing function into one line;
``check_file`` grades one."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .catalog import exercise
from .grader import check
from .learner_code import LearnerError, one_line
from .report import Part, Result

DEFAULT_DIR = "my_exercises"

_TEMPLATE = '''"""Exercise {name}: write {name}_forward and {name}_backward.

Derived in lessons/{lesson}. Grade it with

    python -m scratchvae.exercises check {name} --dir {directory}

and once every part passes, compare with the engine's own pair, the answer key:
scratchvae/functional/{module}.py ({engine_forward}, {engine_backward}).
"""
import numpy as np
{extra_import}

def {name}_forward({signature}):
    """{doc}

    Return (out, cache): the cache is yours, anything {name}_backward needs.
    """
    raise NotImplementedError("write {name}_forward")


def {name}_backward(d_out, cache):
    """d_out: the upstream gradient dL/d(out), the shape of out; cache: what
    {name}_forward returned. Return the gradients listed above, never changing d_out."""
    raise NotImplementedError("write {name}_backward")
'''


def skeleton_text(name, directory=DEFAULT_DIR):
    spec = exercise(name)
    extra = ("from scratchvae.functional.latent import bound_logvar  # allowed: the clamp\n"
             if "bound_logvar" in spec.doc else "")
    return _TEMPLATE.format(name=name, lesson=spec.lesson, directory=directory, module=spec.module,
                            engine_forward=spec.engine_forward,
                            engine_backward=spec.engine_backward, signature=spec.signature,
                            doc=spec.doc, extra_import=extra)


def path_of(name, directory=DEFAULT_DIR) -> Path:
    return Path(directory) / f"{exercise(name).name}.py"


def write_skeleton(name, directory=DEFAULT_DIR):
    """Write ``DIR/NAME.py``; returns (path, written). An existing file is left as it is."""
    path = path_of(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as f:  # "x": fails rather than overwrite
            f.write(skeleton_text(name, directory))
    except FileExistsError:
        return path, False
    return path, True


def load_pair(name, directory=DEFAULT_DIR):
    """(forward, backward) from ``DIR/NAME.py``, freshly imported; ``LearnerError`` with one
    line when the file does not compile, raises on import or lacks a function."""
    path = path_of(name, directory)
    module_name = f"_scratchvae_exercise_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(module_name, None)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise LearnerError(f"{path} does not exist: start it with python -m scratchvae.exercises "
                           f"start {name} --dir {directory}", not_written=True) from None
    except Exception as exc:  # a syntax error or an import-time error of the learner's file
        raise LearnerError(f"{path} could not be imported: {one_line(exc)}") from None
    pair = []
    for part in ("forward", "backward"):
        fn = getattr(module, f"{name}_{part}", None)
        if not callable(fn):
            raise LearnerError(f"{path} has no function {name}_{part}")
        pair.append(fn)
    return tuple(pair)


def check_file(name, directory=DEFAULT_DIR) -> Result:
    """Grade ``DIR/NAME.py``: a ``Result`` whose one part says why when it cannot be loaded."""
    path = path_of(name, directory)
    try:
        forward, backward = load_pair(name, directory)
    except LearnerError as exc:
        return Result(name, [Part("file", False, [str(exc)])], not_written=exc.not_written,
                      source=str(path))
    return check(name, forward, backward, source=str(path))
