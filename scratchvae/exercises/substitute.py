"""Your code trains a real VAE: the learner's completed pairs in place of the engine's.

``substituted(pairs)`` swaps them into ``scratchvae.functional`` for the length of a
``with`` block (the layers, the VAE and the likelihoods look their functions up there at
call time). ``train_with_exercises`` trains once that way and once with the engine's own
code, and prints the two test losses side by side. It takes the training function as an
argument: this package sits below the training loop and never imports it.
"""
from __future__ import annotations

import importlib
import inspect
from contextlib import contextmanager
from dataclasses import dataclass

from .. import functional
from .catalog import EXERCISES, exercise
from .learner_files import check_file, load_pair, path_of


def _engine_module(spec):
    return importlib.import_module(f"{functional.__name__}.{spec.module}")


def _adapt_backward(backward, engine_backward):
    """The learner's ``backward(dy, cache)`` under the engine's calling convention:
    ``input_grad=False`` (a first layer) drops dx, and a 1-tuple is its one array."""
    takes_input_grad = "input_grad" in inspect.signature(engine_backward).parameters

    def adapted(dy, cache, input_grad=True):
        grads = backward(dy, cache)
        if isinstance(grads, (tuple, list)) and len(grads) == 1:
            return grads[0]
        if takes_input_grad and not input_grad:
            return (None, *grads[1:])
        return grads

    adapted.__name__ = getattr(backward, "__name__", "backward")
    return adapted if takes_input_grad else (lambda dy, cache: adapted(dy, cache))


@contextmanager
def substituted(pairs):
    """Within the block, ``pairs`` ({exercise name: (forward, backward)}) replace the engine's
    functions in ``scratchvae.functional`` (the module that defines each, and the package's
    own name for it where it has one); every one is restored on leaving, however it is left."""
    saved = []
    try:
        for name, (forward, backward) in pairs.items():
            spec = exercise(name)
            module = _engine_module(spec)
            engine_backward = getattr(module, spec.engine_backward)
            for attr, fn in ((spec.engine_forward, forward),
                             (spec.engine_backward, _adapt_backward(backward, engine_backward))):
                for owner in (module, functional):
                    if hasattr(owner, attr):
                        saved.append((owner, attr, getattr(owner, attr)))
                        setattr(owner, attr, fn)
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


@dataclass
class Comparison:
    """What ``train_with_exercises`` found: the exercises used (name -> status), and the
    final test loss in nats of the run with them and of the engine's own run."""

    used: dict
    yours: float
    engine: float


def completed_pairs(directory):
    """{name: (forward, backward)} of every file in ``directory`` that is written (it loads, and
    its functions do not raise NotImplementedError), and {name: its ``Result``}."""
    pairs, results = {}, {}
    for spec in EXERCISES:
        if not path_of(spec.name, directory).exists():
            continue
        result = check_file(spec.name, directory)
        if result.not_written or result.parts[0].title == "file":
            continue
        pairs[spec.name], results[spec.name] = load_pair(spec.name, directory), result
    return pairs, results


def _state(result):
    failing = [p.title for p in result.parts if not p.passed]
    return "passes" if not failing else "FAILS " + ", ".join(failing)


def train_with_exercises(directory, config, train, *, out=print) -> Comparison:
    """Train with the learner's completed pairs from ``directory``, then the same run with
    the engine's own code; print which pairs were used and both test losses.

    ``train(config, label)`` runs one training with ``config`` and returns its final test
    loss in nats (the negative ELBO); ``label`` is "yours" or "scratchvae", to tell the two
    runs apart (their run folders, say). ``config.epochs``, where present, is printed.
    """
    pairs, results = completed_pairs(directory)
    status = {name: _state(result) for name, result in results.items()}
    if not pairs:
        out(f"no completed exercise in {directory}/: the run below is the engine's alone")
    else:
        out("your functions in place of scratchvae's: " + "; ".join(
            f"{name} ({state})" for name, state in status.items()))
    with substituted(pairs):
        yours = float(train(config, "yours"))
    engine = float(train(config, "scratchvae"))
    epochs = getattr(config, "epochs", None)
    after = f" after {epochs} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
    out(f"your functions: test {yours:.1f} nats{after}; scratchvae's: {engine:.1f}")
    wrong_values = [name for name, r in results.items() if not r.parts[0].passed]  # "forward"
    if wrong_values:
        out(f"note: the forward of {', '.join(wrong_values)} fails its check, and your run's test "
            "loss was computed with it: fix it before reading the comparison")
    return Comparison(status, yours, engine)
