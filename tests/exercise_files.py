"""Exercise files for the tests: ``engine_copy`` writes a learner's file that calls the engine's
own pair (a solution that is right by construction)."""
from scratchvae.exercises import exercise

ENGINE_COPY = '''from scratchvae.functional.{module} import {forward} as _forward, {backward} as _backward


def {name}_forward(*args):
    return _forward(*args)


def {name}_backward(d_out, cache):
    return _backward(d_out, cache)
'''


def engine_copy(directory, name):
    """Write DIR/NAME.py holding NAME_forward and NAME_backward that call the engine's pair."""
    spec = exercise(name)
    path = directory / f"{name}.py"
    path.write_text(ENGINE_COPY.format(module=spec.module, forward=spec.engine_forward,
                                       backward=spec.engine_backward, name=name))
    return path
