"""Each lesson is one test (``pytest lessons``): its python blocks run in order in one
namespace, from a temporary working directory, and each block must print what the lesson
shows beneath it, compared as lessons/lesson_check.py describes. The test runs the same code
as ``python lessons/draw_figures.py``, with a temporary folder in place of lessons/figures/,
so it also checks that the command produces every figure the lesson links. MNIST is found
as the tests find it (tests/mnist_data.py)."""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import draw_figures  # noqa: E402
import lesson_check  # noqa: E402


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".md" and file_path.parent == HERE and file_path.name[:2].isdigit():
        return LessonFile.from_parent(parent, path=file_path)


class LessonFile(pytest.File):
    def collect(self):
        yield LessonItem.from_parent(self, name=self.path.stem)


class LessonItem(pytest.Item):
    def runtest(self):
        from mnist_data import mnist_dir
        figures = Path(self.config._tmp_path_factory.mktemp(f"{self.name}-figures"))
        names = draw_figures.draw(self.path, figures, mnist_dir())
        assert sorted(p.name for p in figures.iterdir()) == sorted(set(names))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, lesson_check.LessonError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, f"lesson {self.name}"
