"""The exercises' grader: scratchvae's own pairs pass every part for any drawn cases, each
skeleton reports "not written yet", every wrong solution of the catalogue
(tests/exercise_mistakes.py) fails the part it should with the hint it should, a learner's
error is one line naming the learner's file and line, and the command line starts, grades
and lists files without ever overwriting one."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exercise_files import engine_copy
from exercise_mistakes import MISTAKES, engine_pair
from scratchvae.exercises import EXERCISES, NAMES, check
from scratchvae.exercises.__main__ import main
from scratchvae.exercises.learner_files import check_file, skeleton_text, write_skeleton

ISSUE_ORDER = ("relu", "leaky_relu", "sigmoid", "tanh", "dense", "dropout", "reparameterize",
               "kl_standard_normal", "kl_monte_carlo", "bernoulli_nll", "gaussian_fixed_nll",
               "gaussian_scale_nll", "conv2d", "conv_transpose2d", "batchnorm",
               "upsample_nearest", "global_avg_pool2d", "softmax_cross_entropy")


def test_every_piece_of_the_issue_is_an_exercise():
    assert sorted(NAMES) == sorted(ISSUE_ORDER)


@settings(max_examples=5)
@given(seed=st.integers(0, 2**32 - 1))
@pytest.mark.parametrize("name", NAMES)
def test_the_engines_own_pairs_pass_every_part(name, seed):
    result = check(name, *engine_pair(name), seed=seed)
    assert result.passed, str(result)
    assert len(result.parts) >= 5 and "FAIL" not in str(result)


@pytest.mark.parametrize("name", NAMES)
def test_the_drawn_cases_give_every_axis_its_own_size(name):
    spec = next(e for e in EXERCISES if e.name == name)
    rng = np.random.default_rng(3)
    case = spec.make(rng, 5, [2, 3, 4, 6, 7], 0)
    for key, value in case.args.items():
        if isinstance(value, np.ndarray) and value.ndim > 1:
            shape = value.shape[:2] if key == "W" and value.ndim == 4 else value.shape  # kernels: 1-3
            assert len(set(shape)) == len(shape), (name, key, value.shape)


def test_the_same_seed_gives_the_same_report():
    forward, backward = engine_pair("dense")
    wrong = lambda dy, c: tuple(2 * g for g in backward(dy, c))  # noqa: E731
    assert str(check("dense", forward, wrong, seed=7)) == str(check("dense", forward, wrong, seed=7))


@pytest.mark.parametrize("name", NAMES)
def test_each_skeleton_reports_not_written_yet(name, tmp_path):
    path, written = write_skeleton(name, tmp_path)
    assert written and path == tmp_path / f"{name}.py"
    result = check_file(name, tmp_path)
    assert not result.passed and result.not_written and result.status == "not started"
    assert result.summary() == f"{name}: not written yet"
    assert "not written yet" in str(result.parts[0])


def test_the_catalogue_holds_three_wrong_solutions_per_exercise():
    counts = Counter(m.exercise for m in MISTAKES)
    assert set(counts) == set(NAMES)
    assert min(counts.values()) >= 3, counts


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: f"{m.exercise}-{m.what}")
def test_each_wrong_solution_fails_with_its_hint(mistake):
    result = check(mistake.exercise, mistake.forward, mistake.backward)
    assert not result.passed
    part = next((p for p in result.parts if p.title == mistake.part), None)
    assert part is not None and part.passed is False, str(result)
    assert mistake.hint in "\n".join(part.lines), str(result)
    assert "Traceback" not in str(result)


def _write(directory, name, text):
    path = directory / f"{name}.py"
    path.write_text(text)
    return path


def test_a_syntax_error_is_one_line_with_file_and_line(tmp_path):
    _write(tmp_path, "dense", "import numpy as np\n\ndef dense_forward(x, W, b)\n    return x\n")
    result = check_file("dense", tmp_path)
    (line,) = result.parts[0].lines
    assert "SyntaxError" in line and "dense.py:3" in line and "\n" not in line
    assert result.status == "failing" and "Traceback" not in str(result)


def test_an_exception_names_the_learners_line_not_the_graders(tmp_path):
    _write(tmp_path, "dense", "def dense_forward(x, W, b):\n    return x @ W + b, (x, W)\n\n\n"
           "def dense_backward(dy, cache):\n    x, W = cache\n    return dy @ W, x.T @ dy, dy.sum(0)\n")
    result = check_file("dense", tmp_path)
    backward = next(p for p in result.parts if p.title == "backward")
    (line,) = backward.lines
    assert line.startswith("dense_backward raised ValueError: matmul")
    assert "dense.py:7, in dense_backward" in line and "grader" not in line


def test_a_missing_function_is_named(tmp_path):
    _write(tmp_path, "relu", "def relu_forward(x):\n    return x * (x > 0), x > 0\n")
    assert "has no function relu_backward" in str(check_file("relu", tmp_path))


def test_the_command_line_starts_grades_and_lists(tmp_path, capsys):
    d = str(tmp_path)
    assert main(["start", "dense", "--dir", d]) == 0
    assert "dense_forward" in (tmp_path / "dense.py").read_text()
    (tmp_path / "dense.py").write_text("# my work\n")
    assert main(["start", "dense", "--dir", d]) == 0
    assert (tmp_path / "dense.py").read_text() == "# my work\n"  # never overwritten
    assert "left as it is" in capsys.readouterr().out

    write_skeleton("relu", tmp_path)
    engine_copy(tmp_path, "sigmoid")
    assert main(["check", "sigmoid", "--dir", d]) == 0
    assert "sigmoid: all 6 parts pass" in capsys.readouterr().out
    assert main(["check", "--dir", d]) == 1  # dense.py and relu.py fail
    out = capsys.readouterr().out
    assert "relu: not written yet" in out and "dense: " in out and "has no function" in out

    assert main(["--dir", d]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(rows) == list(NAMES)
    assert "done" in rows["sigmoid"] and "failing" in rows["dense"]
    assert "not started" in rows["relu"] and "not started" in rows["tanh"]


def test_an_unknown_exercise_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["check", "denes"])
    assert exit_.value.code == 2 and "no exercise 'denes'" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_a_skeleton_states_the_signature_and_the_answer_key(name):
    spec = next(e for e in EXERCISES if e.name == name)
    text = skeleton_text(name)
    assert f"def {name}_forward({spec.signature}):" in text
    assert f"def {name}_backward(d_out, cache):" in text
    assert f"scratchvae/functional/{spec.module}.py" in text and f"lessons/{spec.lesson}" in text
    compile(text, name, "exec")
