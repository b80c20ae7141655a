"""Ctrl-C and SIGTERM during a run: the first stops sending and the run writes its results;
any later one while they are written is noted, never a second, half-done stop."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopRequested(KeyboardInterrupt):
    """A stop signal arrived while no replay loop was running to stop gracefully."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """What a stop signal does now: raise StopRequested (before the load), call the replay's
    stop callback (during it), or just be noted (while results are written)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.signum: int | None = None
        self._say = say
        self._on_stop: Callable[[], None] | None = None
        self._defer = False

    @property
    def exit_code(self) -> int | None:
        """128 + the first stop signal's number, as a shell reports a signalled process."""
        return None if self.signum is None else 128 + self.signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        name = signal.Signals(signum).name
        if self._on_stop is not None:
            if first:
                self._say(f"{name}: stopping; requests in flight are cancelled, results kept")
                self._on_stop()
            else:
                self._say(f"{name}: already stopping; the results are being written")
            return
        if self._defer or not first:
            self._say(f"{name}: already stopping; the results are being written")
            return
        self._defer = True
        raise StopRequested(signum)

    @property
    def stopped(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    @contextmanager
    def replay(self, on_stop: Callable[[], None]) -> Iterator[None]:
        """While the replay loop runs, a stop signal calls `on_stop` (once); once it has
        ended, signals are only noted: the run is already on its way to its results."""
        self._on_stop = on_stop
        if self.signum is not None:
            on_stop()
        try:
            yield
        finally:
            self._on_stop = None
            self._defer = True

    @contextmanager
    def writing(self) -> Iterator[None]:
        """While results are written, stop signals are noted, never raised."""
        self._defer = True
        yield


@contextmanager
def stop_signals(say: Callable[[str], None] | None = None) -> Iterator[StopSignals]:
    """Install the run's SIGINT/SIGTERM handling for the block (main thread only; elsewhere the
    handling stays as it was)."""
    state = StopSignals(say or (lambda text: print(text, file=sys.stderr)))
    try:
        previous = {s: signal.signal(s, state._handle) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield state
        return
    try:
        yield state
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
