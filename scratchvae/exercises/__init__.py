"""Graded exercises: write the forward and backward pass of each hand-derived piece of the
engine yourself, and let the grader say what is right and what looks wrong.

    from scratchvae.exercises import check
    result = check("dense", forward=my_dense_forward, backward=my_dense_backward)
    print(result)          # the report, part by part
    result.passed          # True only when every part passes

On the command line (docs/exercises.md):

    python -m scratchvae.exercises                      # each exercise: done / failing / not started
    python -m scratchvae.exercises start dense          # writes my_exercises/dense.py to fill in
    python -m scratchvae.exercises check dense          # grades it

With the pairs written, ``python -m scratchvae.train --exercises DIR`` trains a VAE with them
(``train_with_exercises``). The exercise names are the engine's pairs in ``scratchvae.functional`` without
``_forward``/``_backward``: ``NAMES`` lists them in lesson order.
"""
from .catalog import EXERCISES, NAMES, answer_key, exercise
from .grader import check
from .learner_files import check_file
from .report import Part, Result
from .substitute import substituted, train_with_exercises

__all__ = ["EXERCISES", "NAMES", "Part", "Result", "answer_key", "check", "check_file", "exercise",
           "substituted", "train_with_exercises"]
