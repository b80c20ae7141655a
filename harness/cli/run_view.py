"""The terminal's view of a running run: literal lines, warnings and a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ConsoleView:
    """A RunView on a rich console; data (names, messages) is never read as markup."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def say(self, text: str) -> None:
        """A plain line."""
        self.console.print(text, markup=False, highlight=False)

    def warn(self, text: str) -> None:
        """A line in yellow."""
        self.console.print(text, style="yellow", markup=False, highlight=False)

    @contextmanager
    def progress(self, name: str, total: int) -> Iterator[Callable[[bool], None]]:
        """A bar of requests done out of `total`, with the failures so far."""
        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[failed]} failed"),
            console=self.console,
            transient=False,
        )
        failed = 0
        with bar:
            task = bar.add_task(escape(name), total=total, failed=0)

            def done(ok: bool) -> None:
                nonlocal failed
                failed += 0 if ok else 1
                bar.update(task, advance=1, failed=failed)

            yield done
