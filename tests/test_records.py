"""The run clock's deadline wait: never shorter than asked on the run clock, on uvloop (whose
timers count whole milliseconds and may fire early) as on asyncio's own loop, and ended by a
stop event when one is given."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from harness.records import RunClock, sleep_until

DELAYS_NS = (1, 300_000, 999_999, 1_000_001, 1_500_000, 2_700_000, 10_300_000)
"""Waits around uvloop's whole-millisecond timer resolution, where it wakes early."""

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


def _run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main())


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_the_wait_is_never_shorter_than_asked(loop: str) -> None:
    clock = RunClock()
    short: list[tuple[int, int]] = []

    async def main() -> None:
        for _ in range(5):
            for delay in DELAYS_NS:
                until = clock.now_ns() + delay
                assert await sleep_until(clock.now_ns, until)
                woke = clock.now_ns()
                if woke < until:
                    short.append((delay, until - woke))
                stop = asyncio.Event()
                until = clock.now_ns() + delay
                assert await sleep_until(clock.now_ns, until, stop)
                woke = clock.now_ns()
                if woke < until:
                    short.append((delay, until - woke))

    _run(loop, main)
    assert short == []


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_stop_ends_the_wait_early_and_says_so(loop: str) -> None:
    clock = RunClock()
    got: list[tuple[bool, int]] = []

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.02, stop.set)
        start = clock.now_ns()
        reached = await sleep_until(clock.now_ns, start + 5_000_000_000, stop)
        got.append((reached, clock.now_ns() - start))
        # Already stopped: no wait at all; a time already past is reached.
        got.append((await sleep_until(clock.now_ns, clock.now_ns() + 10**9, stop), 0))
        got.append((await sleep_until(clock.now_ns, clock.now_ns() - 1, stop), 0))

    _run(loop, main)
    (reached, waited_ns), (again, _), (past, _) = got
    assert not reached and 15_000_000 <= waited_ns < 2_000_000_000
    assert not again
    assert past
