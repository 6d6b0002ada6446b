"""Redraw the pictures the lessons show: ``python lessons/draw_figures.py [LESSON.md ...]``.

Runs each lesson (all of them by default) as the test suite does, in a temporary folder,
checks its printed output, and copies every figure the lesson links (``figures/NAME``) into
``lessons/figures/``. The test suite never writes there; this command is the one way the
committed figures change. MNIST is found as the tests find it (tests/mnist_data.py).
"""
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import lesson_check  # noqa: E402  (beside this file)


def draw(lesson: Path, figures: Path, data_dir) -> list[str]:
    """Run `lesson` in a temporary folder and copy its linked figures into `figures`."""
    with tempfile.TemporaryDirectory() as tmp:
        with lesson_check.isolated_environment(Path(tmp), data_dir):
            lesson_check.run_lesson(lesson, Path(tmp))
        missing = lesson_check.missing_figures(lesson, Path(tmp))
        if missing:
            raise lesson_check.LessonError(f"{lesson.name} links figures its code did not write: {missing}")
        names = lesson_check.linked_figures(lesson)
        figures.mkdir(exist_ok=True)
        for name in names:
            shutil.copyfile(Path(tmp) / name, figures / name)
    return names


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python lessons/draw_figures.py",
        description="Run lessons as the test suite does (checking what they print) and copy every "
        "figure they link into lessons/figures/, the one way the committed figures change.")
    parser.add_argument("lessons", nargs="*", metavar="LESSON.md",
                        help="the lessons to run (default: all of them)")
    args = parser.parse_args(argv)
    from mnist_data import mnist_dir_or_reason
    data_dir, why = mnist_dir_or_reason()
    if data_dir is None:
        print(f"draw_figures: {why}", file=sys.stderr)
        return 2
    lessons = [Path(a).resolve() for a in args.lessons] or sorted(HERE.glob("[0-9][0-9]_*.md"))
    for lesson in lessons:
        try:
            names = draw(lesson, HERE / "figures", data_dir)
        except lesson_check.LessonError as err:
            print(f"draw_figures: {err}", file=sys.stderr)
            return 1
        print(f"{lesson.name}: {', '.join(names) or 'no figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
