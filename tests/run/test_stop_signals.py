"""Stop signals: raised before the load, handed to the replay during it, noted afterwards."""

from __future__ import annotations

import os
import signal

import pytest

from harness.run.stop_signals import StopRequested, stop_signals


def test_sigterm_before_the_load_raises_like_ctrl_c() -> None:
    said: list[str] = []
    with stop_signals(said.append) as signals, pytest.raises(StopRequested):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # let the handler run
    assert signals.exit_code == 128 + signal.SIGTERM


def test_during_the_replay_a_signal_stops_it_once_and_later_ones_are_noted() -> None:
    said: list[str] = []
    stops: list[int] = []
    with stop_signals(said.append) as signals:
        with signals.replay(lambda: stops.append(1)):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
        with signals.writing():
            os.kill(os.getpid(), signal.SIGINT)  # noted, never raised
    assert stops == [1]
    assert signals.exit_code == 128 + signal.SIGINT
    assert len(said) == 4 and all("stopping" in s for s in said)


def test_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals(lambda _: None):
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_after_the_replay_a_signal_is_only_noted() -> None:
    """Between the replay's end and the results (workers and telemetry stopping) a first
    signal must not raise: the run is already on its way to writing its results."""
    said: list[str] = []
    with stop_signals(said.append) as signals:
        with signals.replay(lambda: None):
            pass
        os.kill(os.getpid(), signal.SIGTERM)  # must not raise StopRequested
    assert signals.stopped and signals.exit_code == 128 + signal.SIGTERM
    assert said == ["SIGTERM: already stopping; the results are being written"]
