"""The `harness` command: argument parsing and dispatch. The subcommand modules are the only
places that wire concrete classes together."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import select
import shlex
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from rich.console import Console

from harness import __version__
from harness.cli.console import make_console, one_line, print_error
from harness.cli.dash_values import attach_dash_values
from harness.errors import HarnessError, RunExistsError
from harness.suggest import suggest

EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that went away


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the option (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print `PROG: error: MESSAGE (see PROG --help)` on stderr and exit 2; a choice not
        among an option's choices gets the closest ones (`did you mean 'mooncake'?`)."""
        text = one_line(message) + choice_hint(message)
        self.exit(EXIT_INPUT, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<given>.*?)' \(choose from (?P<known>.*)\)")


def choice_hint(message: str) -> str:
    """` (did you mean 'x'?)` for argparse's `invalid choice: 'X' (choose from ...)`, else ""."""
    found = _INVALID_CHOICE.search(message)
    if found is None:
        return ""
    known = [c.strip().strip("'") for c in found["known"].split(",")]
    return suggest(found["given"], known)


COMMANDS: dict[str, str] = {
    "run": "run_cmd",
    "sweep": "sweep_cmd",
    "workload": "workload_cmd",
    "serve": "serve_cmd",
    "report": "report_cmd",
    "tools": "tools_cmd",
    "compare": "compare_cmd",
    "fleet": "fleet_cmd",
    "schema": "schema_cmd",
}
"""Each command and the module that registers it, in the order `harness --help` lists them."""


def _command_modules(argv: Sequence[str]) -> list[str]:
    """The modules to import for `argv`: only the named command's (a command's imports, such
    as matplotlib's, cost seconds that `harness workload inspect` should not pay), or every
    one for help, a missing command or an unknown one (its error lists the choices); none for
    `--version` alone."""
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    before = set(argv[:at])
    if {"-h", "--help"} & before:
        return list(COMMANDS.values())
    if at < len(argv) and argv[at] in COMMANDS:
        return [COMMANDS[argv[at]]]
    if "--version" in before:
        return []
    return list(COMMANDS.values())


def _parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description="Replay chatbot and agent traces against a real inference server, measure "
        "throughput, latency, where the time goes and energy, and turn the measurements into "
        "capacity and fleet figures.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _command_modules(argv):
        importlib.import_module(f"harness.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code: the handler's, 2 for
    bad input (a HarnessError, printed on one line), 130 after Ctrl-C, 141 when the reader of
    stdout went away (`harness ... | head`: stdout is silenced, as for a SIGPIPE), and 1 for
    an internal error (one line naming it and where, asking for a report, no traceback)."""
    given = list(sys.argv[1:] if argv is None else argv)
    err = make_console(stderr=True)
    try:
        args = _parser(given).parse_args(attach_dash_values(given))
        args.argv = given  # as typed: a command that suggests a rerun edits it
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except RunExistsError as exc:
        print_error(err, f"{exc}: pass --overwrite to replace it, or choose another --out")
        return EXIT_INPUT
    except HarnessError as exc:
        print_error(err, str(exc))
        return EXIT_INPUT
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        if not reader_gone(sys.stdout):
            return _internal_error(err, exc, given)
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # the last resort: whatever else, one line and a request
        return _internal_error(err, exc, given)
    return code


def _internal_error(err: Console, exc: BaseException, argv: list[str]) -> int:
    """Report an error the harness did not expect: its type, message and innermost harness
    frame, and the command to send with a report."""
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = innermost_harness_frame(exc)
    at = f" (at {where})" if where else ""
    command = shlex.join(["harness", *argv])
    print_error(
        err,
        f"{one_line(message)}{at}. This is a bug in the harness: please report it with the "
        f"command you ran: {command}",
        label="internal error",
    )
    return EXIT_INTERNAL


def innermost_harness_frame(exc: BaseException) -> str | None:
    """`harness/<module>.py:<line>` of the innermost frame of `exc`'s traceback that lies in
    this package, or None when none does."""
    package = Path(__file__).resolve().parents[1]
    where = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        try:
            rel = Path(frame.f_code.co_filename).resolve().relative_to(package)
        except ValueError:
            continue
        where = f"{package.name}/{rel.as_posix()}:{lineno}"
    return where


def reader_gone(stream: TextIO) -> bool:
    """True where `stream` is a pipe whose reader has closed it (or it can't be told), so a
    BrokenPipeError came from stdout and not from, say, a child's pipe."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, ValueError, OSError):
        return True
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again
    (what Python's documentation of SIGPIPE recommends)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, ValueError, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
