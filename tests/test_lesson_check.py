"""The lesson checker (lessons/lesson_check.py) catches what it promises to catch, and every
lesson is a notebook: jupytext reads the same code cells, in the same order."""
import sys
from pathlib import Path

import pytest

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
sys.path.insert(0, str(LESSONS))

import lesson_check as lc  # noqa: E402
from lesson_check import LessonError, Rule, compare_output  # noqa: E402


def lesson(tmp_path, text):
    path = tmp_path / "99_test.md"
    path.write_text(text)
    return path


def fenced(lang, body):
    return f"```{lang}\n{body}\n```\n"


# --- numbers ---------------------------------------------------------------------------------

def test_digits_allows_one_unit_of_the_last_printed_digit_only():
    rule = Rule.parse("digits")
    assert compare_output("loss 163.8", "loss 163.9", rule) is None
    assert compare_output("loss 163.8", "loss 163.7", rule) is None
    assert "number 1" in compare_output("loss 163.8", "loss 164.0", rule)
    assert compare_output("err 3.2e-10", "err 3.3e-10", rule) is None
    assert compare_output("err 3.2e-10", "err 3.4e-10", rule) is not None


def test_whole_numbers_are_exact_under_every_rule():
    for spec in ("digits", "rel 5%", "order", "exact"):
        assert compare_output("shape (64, 784)", "shape (64, 785)", Rule.parse(spec)) is not None, spec
        assert compare_output("shape (64, 784)", "shape (64, 784)", Rule.parse(spec)) is None, spec


def test_rel_and_abs_tolerances():
    rule = Rule.parse("rel 1% abs 0.2")
    assert compare_output("test 163.8 = 159.2 + KL 4.55", "test 164.9 = 160.3 + KL 4.70", rule) is None
    assert compare_output("test 163.8 = 159.2 + KL 4.55", "test 165.8 = 159.2 + KL 4.55", rule) is not None
    assert compare_output("KL 4.55", "KL 4.80", rule) is not None     # beyond 1 % and beyond 0.2
    assert Rule.parse("rel 1%").abs == 0.0


def test_order_of_magnitude():
    rule = Rule.parse("order")
    assert compare_output("max error 3.1e-10", "max error 4.0e-11", rule) is None
    assert compare_output("max error 3.1e-10", "max error 2.0e-12", rule) is not None
    assert compare_output("max error 3.1e-10", "max error -3.1e-10", rule) is not None


def test_exact_compares_the_digits_themselves():
    assert compare_output("0.10", "0.1", Rule.parse("exact")) is not None
    assert compare_output("0.10", "0.1", Rule.parse("digits")) is None


def test_text_must_match_but_column_widths_may_move():
    rule = Rule.parse("digits")
    assert compare_output("a  [-0.5  1.0]", "a  [ 0.5  1.0]", rule) is not None   # the value differs
    assert compare_output("a  [-0.5  1.0]", "a  [-0.5 1.0]", rule) is None
    assert compare_output("epoch 1 | train", "epoch 1 | tests", rule) == "the text differs"
    assert compare_output("two lines\nhere", "two lines", rule) == "the text differs"


def test_an_ellipsis_stands_for_any_text():
    rule = Rule.parse("digits")
    assert compare_output("took ... s, loss 1.5", "took 12.7 s, loss 1.5", rule) is None
    assert compare_output("took ... s, loss 1.5", "took 12.7 s, loss 1.7", rule) is not None


def test_unknown_spec_is_refused():
    with pytest.raises(ValueError, match="unknown numbers spec"):
        Rule.parse("roughly")


def test_nan_and_inf_compare_as_printed():
    rule = Rule.parse("rel 50%")
    assert compare_output("loss nan", "loss nan", rule) is None
    assert compare_output("loss nan", "loss inf", rule) is not None


# --- running a lesson ----------------------------------------------------------------------

def test_a_lesson_runs_in_one_namespace_and_its_outputs_are_compared(tmp_path):
    path = lesson(tmp_path, fenced("python", "x = 2.5") + "\ntext\n\n" + fenced("python", "print(f'{x * 2:.2f}')")
                  + "\n<!-- numbers: rel 1% -->\n" + fenced("text", "5.01"))
    blocks = lc.parse_lesson(path.read_text())
    assert [b.spec for b in blocks] == ["digits", "rel 1%"]
    run = lc.run_lesson(path, tmp_path)
    assert run.outputs == ["", "5.00\n"]


def test_a_changed_number_fails_and_names_the_block(tmp_path):
    path = lesson(tmp_path, fenced("python", "print(1.25)") + "\n" + fenced("text", "1.27"))
    with pytest.raises(LessonError, match=r"99_test.md:2 \(block 1\): number 1 is 1.25"):
        lc.run_lesson(path, tmp_path)


def test_output_the_lesson_does_not_show_fails(tmp_path):
    path = lesson(tmp_path, fenced("python", "print('surprise')"))
    with pytest.raises(LessonError, match="does not show"):
        lc.run_lesson(path, tmp_path)


def test_a_text_block_after_prose_is_not_an_output(tmp_path):
    path = lesson(tmp_path, fenced("python", "print(1)") + "\nSome prose.\n\n" + fenced("text", "1"))
    with pytest.raises(LessonError, match="does not show"):
        lc.run_lesson(path, tmp_path)


def test_an_error_points_at_the_line_in_the_markdown(tmp_path):
    path = lesson(tmp_path, "# title\n\n" + fenced("python", "a = 1\nb = a / 0"))
    with pytest.raises(LessonError, match=r"99_test.md:5: ZeroDivisionError"):
        lc.run_lesson(path, tmp_path)


def test_a_bare_expression_with_a_value_is_refused(tmp_path):
    path = lesson(tmp_path, fenced("python", "x = [3]\nx.append(4)\nlen(x)"))
    with pytest.raises(LessonError, match="bare expression evaluated to int"):
        lc.run_lesson(path, tmp_path)


@pytest.mark.parametrize("code, line", [
    ("def f():\n    return 1\ny = f()", 5),            # no blank line after the def
    ("def f():\n    a = 1\n\n    return a", 6),      # a blank line inside the def
    ("for i in range(2):\n    pass\nprint(i)", 5),
])
def test_code_the_interactive_interpreter_rejects_is_refused(tmp_path, code, line):
    path = lesson(tmp_path, "\n" + fenced("python", code))
    with pytest.raises(LessonError, match=rf"99_test.md:{line}: this line cannot be pasted"):
        lc.run_lesson(path, tmp_path)


def test_pasteable_compound_statements_pass(tmp_path):
    code = "def f():\n    a = 1\n    return a\n\n# a comment\nfor i in range(2):\n    y = f() + i\n\nprint(y)"
    path = lesson(tmp_path, fenced("python", code) + "\n" + fenced("text", "2"))
    assert lc.run_lesson(path, tmp_path).outputs == ["2\n"]


def test_the_blocks_run_from_the_given_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    path = lesson(tmp_path, fenced("python", "open('01_x.png', 'w').close()") + "\n![x](figures/01_x.png)\n"
                  "![y](figures/01_y.png)\n")
    lc.run_lesson(path, work)
    assert (work / "01_x.png").is_file() and not (tmp_path / "01_x.png").exists()
    assert lc.linked_figures(path) == ["01_x.png", "01_y.png"]
    assert lc.missing_figures(path, work) == ["01_y.png"]


# --- the lessons themselves ----------------------------------------------------------------

LESSON_FILES = sorted(LESSONS.glob("[0-9][0-9]_*.md"))


def test_there_are_lessons_and_none_uses_doctest_prompts():
    assert len(LESSON_FILES) >= 10
    for path in LESSON_FILES:
        text = path.read_text()
        assert "```pycon" not in text and "\n>>> " not in text, path.name
        assert lc.parse_lesson(text), path.name


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_jupytext_reads_the_same_code_cells_in_the_same_order(path):
    import jupytext  # in the test extra
    text = path.read_text()
    notebook = jupytext.reads(text, fmt="md")
    cells = [cell.source.rstrip("\n") for cell in notebook.cells if cell.cell_type == "code"]
    assert cells == [block.code.rstrip("\n") for block in lc.parse_lesson(text)]


@pytest.mark.parametrize("path", LESSON_FILES, ids=lambda p: p.stem)
def test_every_block_pastes_into_the_interactive_interpreter(path):
    for block in lc.parse_lesson(path.read_text()):
        lc.check_pasteable(block, path.name)


def test_every_linked_figure_is_in_the_tree():
    """The pictures the lessons show are committed (redrawn by lessons/draw_figures.py)."""
    for path in LESSON_FILES:
        for name in lc.linked_figures(path):
            assert (LESSONS / "figures" / name).is_file(), f"{path.name} links figures/{name}"
