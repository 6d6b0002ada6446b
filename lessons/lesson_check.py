"""Run a lesson's code blocks and compare what they print with the output the lesson shows.

A lesson is Markdown. Its code is every ```` ```python ```` block, run in order in one
namespace, as a learner pasting them into one Python session would. A ```` ```text ````
block right after a code block (only blank lines or HTML comments between) is what that
block prints; a code block with no text block after it must print nothing.

How a printed number is compared is the lesson's claim about that kind of number. An HTML
comment just before a text block, ``<!-- numbers: SPEC -->``, states it; SPEC is one of

* ``digits`` (the default): a decimal number agrees to within one unit of its last printed
  digit, so a value that sits on a rounding boundary may print either way. For quantities
  computed in closed form or by a few array operations, where machines differ only in the
  last bits of a float;
* ``rel P%`` or ``rel P% abs A``: within P percent of the shown value (or within A, whichever
  is larger). For results of training, where a few epochs amplify rounding differences
  between BLAS kernels and thread counts;
* ``order``: within a factor of 10. For rounding errors themselves (a gradient check's
  relative error), which are claims about an order of magnitude;
* ``exact``: the printed digits themselves.

Whole numbers (no decimal point, no exponent) are counts, shapes and indices: they must match
exactly under every SPEC. Text between the numbers must match exactly, up to the width of
runs of spaces (column alignment moves when a number gains a digit). ``...`` in a text block
stands for any text. ``python lessons/lesson_check.py LESSON.md`` runs one lesson and reports.

The pasting rules are checked too: every block must compile line by line as the interactive
interpreter reads it (a blank line ends each compound statement, none inside one), and a bare
expression may only evaluate to None, since the REPL would echo anything else and a notebook
would show only the last one.
"""
from __future__ import annotations

import ast
import codeop
import contextlib
import io
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
SPEC = re.compile(r"<!--\s*numbers:\s*(.*?)\s*-->", re.S)
GAP = re.compile(r"\A(?:\s|<!--.*?-->)*\Z", re.S)
FIGURE_LINK = re.compile(r"!\[[^\]]*\]\(figures/([^)\s]+)\)")
NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b"
NUMBER_RE = re.compile(NUMBER)


class LessonError(AssertionError):
    """A block failed: it raised, printed something else, or cannot be pasted."""


@dataclass
class Block:
    """One ```python block of a lesson, and the output the lesson shows beneath it."""
    code: str
    line: int                   # 1-based line of the block's first code line in the file
    expected: str | None = None  # the text block after it, or None
    spec: str = "digits"


@dataclass
class Rule:
    """How numbers are compared: a parsed ``<!-- numbers: SPEC -->``."""
    kind: str = "digits"        # digits | rel | order | exact
    rel: float = 0.0
    abs: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> "Rule":
        words = spec.split()
        if words in (["digits"], ["order"], ["exact"]):
            return cls(words[0])
        m = re.fullmatch(r"rel\s+([\d.]+)%(?:\s+abs\s+([\d.eE+-]+))?", spec.strip())
        if m:
            return cls("rel", float(m.group(1)) / 100, float(m.group(2) or 0.0))
        raise ValueError(f"unknown numbers spec {spec!r}: use digits, rel P%, rel P% abs A, order or exact")

    def agrees(self, shown: str, got: str) -> bool:
        if self.kind == "exact" or "n" in shown.lower():     # nan and inf as printed too
            return shown.lstrip("+") == got.lstrip("+")
        e, a = float(shown), float(got)
        if not re.search(r"[.eE]", shown):                  # a whole number: a count
            return a == e
        unit = last_digit_unit(shown)
        if self.kind == "digits":
            return abs(a - e) <= unit * (1 + 1e-9)
        if self.kind == "rel":
            return abs(a - e) <= max(self.rel * abs(e), self.abs, unit) * (1 + 1e-9)
        if self.kind == "order":
            if e == 0.0 or a == 0.0:
                return e == a
            return a / e > 0 and abs(math.log10(a / e)) <= 1.0
        raise AssertionError(self.kind)


def last_digit_unit(token: str) -> float:
    """The value of one unit in the last printed digit: '163.8' -> 0.1, '3.2e-10' -> 1e-11."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def parse_lesson(text: str) -> list[Block]:
    """The lesson's python blocks in order, each with the text block that follows it."""
    blocks: list[Block] = []
    last_end = 0
    for m in FENCE.finditer(text):
        lang, body = m.group(1), m.group(2)
        between = text[last_end:m.start()]
        specs = SPEC.findall(between)
        if lang == "python":
            line = text.count("\n", 0, m.start()) + 2
            blocks.append(Block(body, line))
        elif lang == "text" and blocks and blocks[-1].expected is None and GAP.match(between):
            blocks[-1].expected = body
            if specs:
                blocks[-1].spec = specs[-1]
        last_end = m.end()
    return blocks


def check_pasteable(block: Block, path: str) -> None:
    """Feed the block line by line to the compiler the interactive interpreter uses."""
    buffer: list[str] = []
    lines = block.code.rstrip("\n").split("\n") + [""]
    for offset, line in enumerate(lines):
        buffer.append(line)
        try:
            done = codeop.compile_command("\n".join(buffer), "<stdin>", "single")
        except SyntaxError as err:
            raise LessonError(
                f"{path}:{block.line + offset}: this line cannot be pasted into the interactive "
                f"interpreter ({err.msg}); put a blank line after each compound statement and none "
                f"inside one") from None
        if done is not None:
            buffer = []
    if buffer and any(s.strip() for s in buffer):
        raise LessonError(f"{path}:{block.line}: the block ends inside an unfinished statement")


class _BareExpressions(ast.NodeTransformer):
    """Wrap each top-level expression statement so that a non-None value is an error."""

    def visit_Module(self, node):
        for i, stmt in enumerate(node.body):
            if isinstance(stmt, ast.Expr):
                call = ast.Call(ast.Name("__lesson_bare__", ast.Load()),
                                [stmt.value, ast.Constant(stmt.lineno)], [])
                node.body[i] = ast.copy_location(ast.Expr(call), stmt)
        ast.fix_missing_locations(node)
        return node


def _bare(value, lineno):
    if value is not None:
        raise LessonError(
            f"line {lineno}: a bare expression evaluated to {type(value).__name__} (the REPL would "
            f"echo it, a notebook would show it only if it is last): print it or assign it")


def compare_output(expected: str, got: str, rule: Rule) -> str | None:
    """None when `got` is what `expected` shows under `rule`, else a one-line reason."""
    pattern, shown = _pattern(expected.strip())
    m = re.fullmatch(pattern, got.strip(), re.S)
    if m is None:
        return "the text differs"
    for i, (want, have) in enumerate(zip(shown, m.groups())):
        if not rule.agrees(want, have):
            return f"number {i + 1} is {have}, the lesson shows {want} (rule: {rule.kind})"
    return None


def _pattern(expected: str) -> tuple[str, list[str]]:
    """A regex that matches printed text like `expected`, capturing each number."""
    parts, numbers = [], []
    for chunk_index, chunk in enumerate(expected.split("...")):
        if chunk_index:
            parts.append(r".*?")
        pos = 0
        for m in NUMBER_RE.finditer(chunk):
            parts.append(_text(chunk[pos:m.start()]))
            parts.append(r"\s*(" + NUMBER + r")\s*")
            numbers.append(m.group(0))
            pos = m.end()
        parts.append(_text(chunk[pos:]))
    return "".join(parts), numbers


def _text(s: str) -> str:
    return "".join(r"\s+" if piece.isspace() else re.escape(piece) for piece in re.split(r"(\s+)", s) if piece)


@dataclass
class LessonRun:
    """What running a lesson produced: each block's printed output, and the namespace."""
    outputs: list[str] = field(default_factory=list)
    namespace: dict = field(default_factory=dict)


def run_lesson(path: Path, workdir: Path, *, check_output: bool = True, report=None) -> LessonRun:
    """Run every block of the lesson at `path` in order, from `workdir`, in one namespace.

    Raises LessonError at the first block that cannot be pasted, raises, or (with
    `check_output`) prints other than what the lesson shows. With `report` (a callable),
    an output that differs is passed to it as a message and the run goes on."""
    path = Path(path).resolve()
    text = path.read_text(encoding="utf-8")
    name = os.path.relpath(path)
    run = LessonRun(namespace={"__name__": "__main__", "__lesson_bare__": _bare})
    old_cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for number, block in enumerate(parse_lesson(text), 1):
            where = f"{name}:{block.line} (block {number})"
            check_pasteable(block, name)
            tree = _BareExpressions().visit(ast.parse(block.code, name))
            ast.increment_lineno(tree, block.line - 1)
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(compile(tree, str(path), "exec"), run.namespace)
            except Exception as err:
                frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == str(path)]
                at = f"{name}:{frames[-1].lineno}" if frames else where
                raise LessonError(f"{at}: {type(err).__name__}: {err}\n--- printed before it:\n"
                                  f"{out.getvalue()}") from err
            printed = out.getvalue()
            run.outputs.append(printed)
            if not check_output:
                continue
            if block.expected is None:
                why = "printed output the lesson does not show" if printed.strip() else None
            else:
                why = compare_output(block.expected, printed, Rule.parse(block.spec))
            if why:
                message = (f"{where}: {why}\n--- the lesson shows:\n{block.expected or ''}"
                           f"--- the block printed:\n{printed}")
                if report is None:
                    raise LessonError(message)
                report(message)
    finally:
        os.chdir(old_cwd)
    return run


@contextlib.contextmanager
def isolated_environment(workdir: Path, data_dir: Path | None):
    """Variables for a lesson run that writes nothing outside `workdir`: a home and cache of
    its own, matplotlib without a screen, and MNIST taken from `data_dir` when given."""
    values = {"HOME": str(workdir), "XDG_CACHE_HOME": str(Path(workdir) / ".cache"), "MPLBACKEND": "Agg"}
    if data_dir is not None:
        values["SCRATCHVAE_DATA"] = str(data_dir)
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def linked_figures(path: Path) -> list[str]:
    """The file names of the figures the lesson shows, ``![...](figures/NAME)``."""
    return FIGURE_LINK.findall(Path(path).read_text(encoding="utf-8"))


def missing_figures(path: Path, workdir: Path) -> list[str]:
    """The linked figures that a run of the lesson in `workdir` did not write."""
    return [f for f in linked_figures(path) if not (Path(workdir) / f).is_file()]


def main(argv=None) -> int:
    """Run the lessons named on the command line; report every output that differs."""
    import argparse
    import tempfile
    parser = argparse.ArgumentParser(description="Run lessons as the test suite does and report "
                                     "every printed output that differs from the Markdown.")
    parser.add_argument("lessons", nargs="+", type=Path, help="lesson files, e.g. lessons/09_latent_space.md")
    paths = parser.parse_args(argv).lessons
    failed = 0
    for p in paths:
        differs = []
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run_lesson(p, Path(tmp), report=differs.append)
            except LessonError as err:
                differs.append(str(err))
        for message in differs:
            print(f"FAIL {message}")
        print(f"{'FAIL' if differs else 'ok  '} {p}")
        failed += bool(differs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
