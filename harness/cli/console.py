"""The consoles the CLI prints through. User data (trace values, keys, names, paths) is never
read as rich markup or emoji codes, and output to a pipe or a file is never hard-wrapped or cut
at 80 columns, whatever COLUMNS says: a long path, key or URL stays on one line there."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from harness.redact import redact

# Width of a console that is not a terminal: wide enough that no table is squeezed, so each
# line is as long as its content (tables do not expand to the width).
PIPE_WIDTH = 10_000
# A rule (a heading line) printed to a pipe or a file is this wide, not PIPE_WIDTH.
PIPE_RULE_WIDTH = 80


def is_terminal(stream: TextIO) -> bool:
    """True where `stream` is a terminal (not a pipe, a file or a test's capture)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class _Console(Console):
    """A rich console that leaves a closed pipe to `harness.cli.main` (one exit status for
    every write) instead of exiting 1 on its own."""

    def on_broken_pipe(self) -> None:
        """Stop writing and raise BrokenPipeError for the caller."""
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader of the output went away")


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) without markup or emoji codes, so any text prints as
    given; where the stream is not a terminal it neither wraps nor crops lines."""
    stream = sys.stderr if stderr else sys.stdout
    if is_terminal(stream):
        return _Console(stderr=stderr, markup=False, emoji=False)
    return _Console(stderr=stderr, markup=False, emoji=False, width=PIPE_WIDTH, soft_wrap=True)


def one_line(message: str) -> str:
    """A message on one line: its non-blank lines, stripped, joined with '; '."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def literal_printer(console: Console) -> Callable[[str], None]:
    """A one-argument printer of literal text on `console` (for messages such as a stop
    signal's, whose text may hold anything)."""
    return lambda text: console.print(text, markup=False, highlight=False)


def print_error(console: Console, message: str, label: str = "error") -> None:
    """`label: message` on one line, the label in bold red on a terminal; the message is
    printed literally (no markup), scrubbed of credentials, and never wrapped by rich (a
    terminal may wrap it)."""
    text = Text.assemble((f"{label}:", "bold red"), " ", one_line(redact(message)))
    console.print(text, soft_wrap=True, highlight=False)


def rule(console: Console, title: str) -> None:
    """A heading line with `title` (literal text): across a terminal, 80 columns elsewhere."""
    width = console.width if console.width < PIPE_WIDTH else PIPE_RULE_WIDTH
    console.print(Rule(Text(title, style="bold")), width=width)
