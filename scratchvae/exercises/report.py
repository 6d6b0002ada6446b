"""What ``check`` returns: one ``Part`` per thing graded, and the ``Result`` that prints them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Part:
    """One graded part: ``title`` ("forward", "backward dW", "float32", ...), whether it
    passed, and the lines that say why (the first is shown beside the title)."""

    title: str
    passed: bool | None  # None: not run, because an earlier part could not run the code
    lines: list = field(default_factory=list)

    def __str__(self):
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[self.passed]
        first, *rest = self.lines or [""]
        out = [f"  {mark}  {self.title:<20s} {first}".rstrip()]
        out += [f"{'':28s}{line}" for line in rest]
        return "\n".join(out)


@dataclass
class Result:
    """``passed`` is True only when every part passed; ``str`` is the report."""

    name: str
    parts: list = field(default_factory=list)
    not_written: bool = False
    source: str = ""  # where the graded functions came from, when a file

    @property
    def passed(self) -> bool:
        return bool(self.parts) and all(p.passed for p in self.parts)

    @property
    def status(self) -> str:
        """done, failing or not started."""
        if self.not_written:
            return "not started"
        return "done" if self.passed else "failing"

    def summary(self) -> str:
        """One line without numbers (stable across machines): what passed."""
        if self.not_written:
            return f"{self.name}: not written yet"
        failed = [p.title for p in self.parts if not p.passed]
        if not failed:
            return f"{self.name}: all {len(self.parts)} parts pass"
        return f"{self.name}: {len(failed)} of {len(self.parts)} parts fail: {', '.join(failed)}"

    def __str__(self):
        head = self.summary() + (f"  [{self.source}]" if self.source else "")
        return "\n".join([head] + [str(p) for p in self.parts])
