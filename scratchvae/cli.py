"""What every command line (train, evaluate, plot, experiments, data) shares: flag types that
refuse non-finite numbers at parse time, and ``run_command``, which turns every fault into
one line saying what happened and what to do, with a non-zero exit and no traceback.

Exit codes: 0 done, 1 an OS fault or out of memory, 2 a user error (flags, data, a run
folder that cannot be used), 130 interrupted (Ctrl-C or SIGTERM).
"""
from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space and run the command again",
    errno.EDQUOT: "the disk quota is exhausted; free some space and run the command again",
    errno.EFBIG: "the file grew beyond what the file system or this process's file-size limit "
                 "(ulimit -f) allows; raise the limit or write elsewhere",
    errno.EROFS: "the file system is read-only; choose a folder on a writable one",
    errno.EACCES: "permission denied; choose a folder you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you may write to, or fix its permissions",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "a folder stands where a file was expected; choose another path",
    errno.EEXIST: "it already exists; choose another path",
    errno.EIO: "an input/output error on the device; check the disk",
    errno.EMFILE: "too many open files; close some programs or raise ulimit -n",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
}


def describe_os_error(exc: OSError) -> str:
    """One line: the file, what the system said and what to do."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    advice = _ADVICE.get(exc.errno)
    said = exc.strerror or type(exc).__name__
    return f"{said}{where}: {advice}" if advice else f"{said}{where}"


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (the flag, the fault, where to look)
    instead of the full usage text; exit code 2 as argparse's."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


def started_as_command() -> bool:
    """True when this Python was started as ``python -m scratchvae...`` (one of the commands)."""
    argv = getattr(sys, "orig_argv", None)  # Python >= 3.10
    if argv is None:  # Python 3.9: argv[0] is "-m" while -m imports the module's packages
        return sys.argv[:1] == ["-m"]
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[i + 1].split(".")[0] == "scratchvae"
    return False


def _interrupted_at_startup(signum, frame):
    os.write(2, b"interrupted during start-up; nothing was saved\n")
    os._exit(EXIT_INTERRUPTED)


# OpenBLAS's idle threads spin for 2^28 cycles (a tenth of a second) after every product before
# they sleep, holding the second core while the step's elementwise work (Adam's two halves, say)
# wants it; 2^4 cycles lets them sleep at once. Measured: an epoch of the default model 3.5 ->
# 3.1 s, paper-conv unchanged (docs/performance.md). A user's own setting is kept.
OPENBLAS_THREAD_TIMEOUT = "4"


def command_environment():
    """Settings the commands give the libraries they load, before NumPy loads OpenBLAS (it reads
    them once, at load). ``scratchvae/__init__.py`` calls it for the commands only."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)


def quiet_startup():
    """Until ``run_command`` takes over, Ctrl-C or SIGTERM ends the process with one line and
    exit 130: a command spends its first second importing NumPy and the engine, where a
    ``KeyboardInterrupt`` would print a traceback and SIGTERM would end it silently (143).
    Nothing has been written then. ``scratchvae/__init__.py`` calls it for the commands only."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job ignores Ctrl-C: keep that
            signal.signal(sig, _interrupted_at_startup)


def run_command(body, user_errors=(), memory_hint="try smaller sizes", interrupted=None) -> int:
    """Call ``body()`` (which returns an exit code) and turn every fault into one line on
    stderr and an exit code: ``user_errors`` (and ``ValueError``) -> 2, ``OSError`` and
    ``MemoryError`` -> 1, Ctrl-C or SIGTERM -> 130. An exception carrying a ``message``
    attribute (``TrainingInterrupted``) prints that message."""
    try:
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _sigterm_as_interrupt)}
        if signal.getsignal(signal.SIGINT) is _interrupted_at_startup:  # Ctrl-C: KeyboardInterrupt again
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        previous = {}
    try:
        return body()
    except KeyboardInterrupt as exc:
        message = getattr(exc, "message", None) or interrupted or "interrupted; nothing was saved"
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"error: out of memory; {memory_hint}", file=sys.stderr)
        return EXIT_ERROR
    except tuple(user_errors) + (ValueError,) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)  # an OS fault raised as a user error says 1
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
