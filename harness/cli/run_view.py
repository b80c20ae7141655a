"""The console's view of a running run: literal lines, warnings and live progress, a rich
bar with a line of live figures on a terminal, a plain line every few seconds elsewhere (CI
logs, nohup), so a log shows the run move and where it stands at its end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from harness.run.live import LiveBounds, LiveFigures, LiveStats

PLAIN_INTERVAL_S = 5.0
"""How often a console that is not a terminal gets a line of live figures."""

LIVE_LABEL = "live estimate"
"""What the figures shown are called: estimates for display; the summary has the numbers."""


def _duration(seconds: float) -> str:
    """A short duration: 42 s, 3 min 05 s, 1 h 02 min."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _num(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f} {unit}"


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    digits = 3 if value < 1 else 2 if value < 10 else 1 if value < 1000 else 0
    return f"{value:,.{digits}f} ms"


def where(f: LiveFigures) -> str:
    """Where the run stands against what bounds it: requests and the time left."""
    if f.bound == "duration":
        assert f.duration_s is not None
        left = f"{_duration(f.remaining_s or 0.0)} left of {_duration(f.duration_s)}"
    else:
        known = f.remaining_s is not None and f.remaining_requests > 0
        eta = f", ~{_duration(f.remaining_s or 0.0)} left" if known else ""
        left = f"{f.remaining_requests:,} requests left{eta}"
    return f"{_duration(f.elapsed_s)} elapsed, {left}"


def figures_line(f: LiveFigures, with_time: bool = True) -> str:
    """The live figures in one line of plain text, labelled as estimates (`with_time`: with
    the elapsed and remaining time, which a bar shows beside itself); each label says what
    is counted (a session once its first request is done; warm-up tokens in the overall)."""
    requests = f"{f.done:,}/{f.requests:,} requests ({f.failed:,} failed)"
    total = f"/{f.sessions:,}" if f.sessions is not None else ""
    sessions = (
        f"sessions {f.sessions_first_done:,}{total} with a first request done, "
        f"{f.sessions_ended:,} ended"
    )
    rate = (
        f"output {_num(f.output_tok_s_recent, 'tok/s')} (last 5 s), "
        f"{_num(f.output_tok_s_overall, 'tok/s')} overall (warm-up included)"
    )
    latency = f"TTFT p50 {_ms(f.ttft_p50_ms)}, ITL p50 {_ms(f.itl_p50_ms)}"
    parts = [requests, sessions, *([where(f)] if with_time else []), rate, latency]
    return f"[{LIVE_LABEL}] " + " · ".join(parts)


def live_display(stats: LiveStats, name: str) -> RenderableType:
    """A bar against the run's bounding limit with the live figures under it, read from the
    stats at each refresh (the feed itself never touches the display)."""
    f = stats.figures()
    if f.bound == "duration":
        done = f"{_duration(f.elapsed_s)}/{_duration(f.duration_s or 0.0)}"
    else:
        done = f"{f.done:,}/{f.requests:,} requests"
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        Text(name, style="bold"),
        ProgressBar(total=1.0, completed=f.fraction, width=40),
        Text(f"{done} · {where(f)}"),
    )
    return Group(grid, Text(figures_line(f, with_time=False), style="dim"))


class PlainTicker:
    """Prints the figures line every `interval_s` from a thread, and once when stopped."""

    def __init__(
        self,
        stats: LiveStats,
        say: Callable[[str], None],
        interval_s: float = PLAIN_INTERVAL_S,
    ) -> None:
        self._stats = stats
        self._say = say
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="harness-live", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._say(figures_line(self._stats.figures()))
            except OSError:  # the reader went away (a closed pipe): the run itself says so
                return

    def __enter__(self) -> PlainTicker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._say(figures_line(self._stats.figures()))


class ConsoleView:
    """A RunView on a rich console; data (names, messages) is never read as markup."""

    def __init__(
        self,
        console: Console,
        plain_interval_s: float | None = None,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        """`plain_interval_s`: seconds between plain lines (None: PLAIN_INTERVAL_S)."""
        self.console = console
        self.plain_interval_s = plain_interval_s
        self._now_s = now_s

    def say(self, text: str) -> None:
        """A plain line."""
        self.console.print(text, markup=False, highlight=False)

    def warn(self, text: str) -> None:
        """A line in yellow."""
        self.console.print(text, style="yellow", markup=False, highlight=False)

    @contextmanager
    def progress(self, name: str, bounds: LiveBounds) -> Iterator[LiveStats]:
        """Live progress of the load that runs inside: the stats it feeds are shown as a bar
        on a terminal, as a plain line every few seconds (and at the end) elsewhere."""
        stats = LiveStats(bounds, now_s=self._now_s)
        if self.console.is_terminal:
            with Live(
                get_renderable=lambda: live_display(stats, name),
                console=self.console,
                refresh_per_second=4,
            ):
                yield stats
        else:
            interval_s = self.plain_interval_s or PLAIN_INTERVAL_S
            with PlainTicker(stats, self.say, interval_s):
                yield stats
