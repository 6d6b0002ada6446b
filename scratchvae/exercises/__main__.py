"""``python -m scratchvae.exercises``: start, grade and list the exercises (docs/exercises.md).

    python -m scratchvae.exercises [--dir DIR]                 each one: done / failing / not started
    python -m scratchvae.exercises start NAME [--dir DIR]      write DIR/NAME.py to fill in
    python -m scratchvae.exercises check [NAME ...] [--dir DIR]  grade DIR's files

Exit status: 0, or 1 when ``check`` finds a failing exercise, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import sys

from ..cli import ArgumentParser, run_command
from .catalog import EXERCISES, NAMES
from .learner_files import DEFAULT_DIR, check_file, path_of, write_skeleton


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS, metavar="DIR",
                        help=f"the folder of your exercise files (default: ./{DEFAULT_DIR})")
    p = ArgumentParser(
        prog="python -m scratchvae.exercises", parents=[common],
        description="Write the forward and backward pass of each piece of the engine yourself and "
        "have them graded: the backward against finite differences of your own forward. Without "
        "a command: the status of every exercise in DIR.",
        epilog="exercises, in lesson order: " + ", ".join(NAMES))
    sub = p.add_subparsers(dest="command", metavar="{start,check}")
    start = sub.add_parser("start", parents=[common], help="write a skeleton file DIR/NAME.py "
                           "(never over an existing one)")
    start.add_argument("name", choices=NAMES, metavar="NAME", help="one of: " + ", ".join(NAMES))
    grade = sub.add_parser("check", parents=[common], help="grade the files in DIR (all by default)")
    grade.add_argument("names", nargs="*", metavar="NAME",
                       help="the exercises to grade (default: every file in DIR)")
    return p, grade


def status_lines(directory):
    """One line per exercise: its name, lesson and status (a file that exists is graded)."""
    lines = []
    for spec in EXERCISES:
        path = path_of(spec.name, directory)
        status = check_file(spec.name, directory).status if path.exists() else "not started"
        lines.append(f"{spec.name:<24s}{status:<13s}lessons/{spec.lesson}")
    return lines


def main(argv=None):
    """Exit codes: 0 done (every graded exercise passes), 1 a part fails or an OS fault, 2 a
    usage error, 130 interrupted."""
    parser, grade = build_parser()
    args = parser.parse_args(argv)
    directory = getattr(args, "dir", DEFAULT_DIR)
    return run_command(lambda: _run(args, grade, directory), interrupted="interrupted")


def _run(args, grade, directory):
    if args.command == "start":
        path, written = write_skeleton(args.name, directory)
        if written:
            print(f"wrote {path}: fill in {args.name}_forward and {args.name}_backward, then run\n"
                  f"  python -m scratchvae.exercises check {args.name} --dir {directory}")
        else:
            print(f"{path} exists and was left as it is (remove it to start again)")
        return 0
    if args.command == "check":
        unknown = [n for n in args.names if n not in NAMES]
        if unknown:
            grade.error(f"no exercise {', '.join(map(repr, unknown))}; the exercises are: "
                        + ", ".join(NAMES))
        names = args.names or [s.name for s in EXERCISES
                                                 if path_of(s.name, directory).exists()]
        if not names:
            print(f"no exercise files in {directory}/: start one with "
                  f"python -m scratchvae.exercises start NAME --dir {directory}")
            return 1
        results = [check_file(name, directory) for name in names]
        print("\n\n".join(str(r) for r in results))
        return 0 if all(r.passed for r in results) else 1
    print(f"exercises in {directory}/ (start one with python -m scratchvae.exercises start NAME):")
    print("\n".join(status_lines(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
