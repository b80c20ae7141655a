"""Client health: the event-loop lag ticker, the worker's CPU figures and the client block."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvloop

from harness.run.health import (
    CPU_UTIL_LIMIT,
    LAG_P99_LIMIT_MS,
    LagHistogram,
    LoopLag,
    LoopLagMonitor,
    WorkerHealth,
    client_health,
)
from harness.units import NS_PER_MS, NS_PER_S

_ATTEMPTS = 3
"""Windows a load-sensitive test may take on a shared host before its figure must hold."""


def _worker(
    index: int, p99_ms: float | None = 1.0, cpu_util: float | None = 0.2, count: int = 100
) -> WorkerHealth:
    lag = (
        LoopLag(count=count, p50=0.1, p99=p99_ms, max=p99_ms)
        if p99_ms is not None
        else LoopLag(count=0)
    )
    return WorkerHealth(
        worker=index,
        loop_lag_ms=lag,
        cpu_s=None if cpu_util is None else cpu_util * 10.0,
        wall_s=10.0,
        cpu_util=cpu_util,
    )


async def test_a_blocked_loop_shows_the_stall_and_is_client_bound() -> None:
    async with LoopLagMonitor() as monitor:
        await asyncio.sleep(0.05)
        time.sleep(0.05)  # blocks the loop on purpose
        await asyncio.sleep(0.05)
    health = monitor.health(0)

    assert health.loop_lag_ms.max is not None and health.loop_lag_ms.max >= 40.0
    block = client_health([health])
    assert block["client_bound"] is True
    assert any(r.startswith("worker 0's event loop ran") for r in block["client_bound_reasons"])


@contextmanager
def _foreground() -> Iterator[None]:
    """Run this thread under SCHED_FIFO where allowed, so that the host's other work cannot
    delay its wake-ups and an idle loop's lag is the ticker's own; elsewhere, as it is."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _runqueue_wait_s() -> float | None:
    """Seconds this thread has waited for a core while runnable (Linux schedstat), or None."""
    try:
        fields = Path("/proc/thread-self/schedstat").read_text().split()
        return int(fields[1]) / NS_PER_S
    except (OSError, IndexError, ValueError):
        return None


async def _idle_window() -> WorkerHealth:
    async with LoopLagMonitor(interval_s=0.002) as monitor:
        await asyncio.sleep(1.0)
    return monitor.health(0)


async def test_an_idle_loop_has_a_small_p99_and_is_not_client_bound() -> None:
    # 2 ms ticks for 1 s: p99 is the 5th-worst of ~500 wake-ups. In the foreground where
    # allowed; elsewhere a host busy for a whole window gets up to two more windows.
    with _foreground():
        for _ in range(_ATTEMPTS):
            health = await _idle_window()
            p99 = health.loop_lag_ms.p99
            if p99 is not None and p99 < LAG_P99_LIMIT_MS:
                break

    assert health.loop_lag_ms.count >= 100
    assert health.loop_lag_ms.p99 is not None and health.loop_lag_ms.p99 < LAG_P99_LIMIT_MS
    assert health.cpu_util is not None and health.cpu_util < 0.5
    block = client_health([health])
    assert block["client_bound"] is False
    assert block["client_bound_reasons"] == []


def test_the_ticker_runs_under_uvloop() -> None:
    async def measure() -> WorkerHealth:
        async with LoopLagMonitor(interval_s=0.005) as monitor:
            await asyncio.sleep(0.2)
            time.sleep(0.05)
            await asyncio.sleep(0.05)
        return monitor.health(3)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        health = runner.run(measure())

    assert health.worker == 3
    assert health.loop_lag_ms.count >= 10
    assert health.loop_lag_ms.max is not None and health.loop_lag_ms.max >= 40.0


async def _spin_window(cpu_s: float) -> WorkerHealth:
    async with LoopLagMonitor() as monitor:
        end_ns = time.process_time_ns() + round(cpu_s * NS_PER_S)
        while time.process_time_ns() < end_ns:
            pass
    return monitor.health(1)


async def test_a_cpu_spin_gives_cpu_util_near_one_core() -> None:
    # 0.3 s of this process's CPU. On a shared host the scheduler may hold the spinning
    # thread off its core; that wait is taken out of the wall time where Linux reports it.
    # Another thread of this process holding the GIL is not such a wait: a window it spoiled
    # is tried again, up to _ATTEMPTS times.
    for _ in range(_ATTEMPTS):
        wait_before_s = _runqueue_wait_s()
        health = await _spin_window(0.3)
        wait_after_s = _runqueue_wait_s()
        held_off_s = 0.0
        if wait_before_s is not None and wait_after_s is not None:
            held_off_s = wait_after_s - wait_before_s
        assert health.wall_s is not None and health.cpu_util is not None
        on_core_share = health.cpu_util * health.wall_s / (health.wall_s - held_off_s)
        if 0.85 < on_core_share <= 1.15:
            break

    assert health.cpu_s is not None and 0.3 <= health.cpu_s < 0.35
    assert health.cpu_util == pytest.approx(health.cpu_s / health.wall_s)
    assert health.cpu_util <= 1.1
    assert 0.85 < on_core_share <= 1.15


async def test_a_long_stall_counts_once_not_once_per_missed_tick() -> None:
    interval_s = 0.01
    async with LoopLagMonitor(interval_s=interval_s) as monitor:
        await asyncio.sleep(0.1)
        time.sleep(0.2)  # 20 missed deadlines
        await asyncio.sleep(0.1)
    lag = monitor.health(0).loop_lag_ms

    # About 0.2 s of idle ticking plus one stall sample; counting missed ticks would give ~40.
    assert lag.count <= round(0.2 / interval_s) + 5
    assert lag.max is not None and lag.max >= 150.0


async def test_monitor_start_and_stop_rules() -> None:
    monitor = LoopLagMonitor()
    never = monitor.health(2)
    assert never.loop_lag_ms == LoopLag(count=0)
    assert never.cpu_s is None and never.wall_s is None and never.cpu_util is None

    monitor.start()
    assert monitor.running
    with pytest.raises(RuntimeError, match="already started"):
        monitor.start()
    await asyncio.sleep(0.03)
    await monitor.stop()
    assert not monitor.running
    first = monitor.health(2)
    await asyncio.sleep(0.03)
    await monitor.stop()
    assert monitor.health(2) == first  # the window closed at the first stop


def test_start_needs_a_running_loop_and_a_positive_interval() -> None:
    with pytest.raises(RuntimeError):
        LoopLagMonitor().start()
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(interval_s=0)


def test_histogram_keeps_0_1_ms_resolution_below_25_ms_and_flat_memory() -> None:
    histogram = LagHistogram()
    for lag_ms in (0.0, 0.05, 1.23, 4.99, 12.34, 25.5):
        histogram.record(round(lag_ms * NS_PER_MS))
        bucket_ms = histogram.quantile_ns(1.0)
        assert bucket_ms is not None
        assert abs(bucket_ms / NS_PER_MS - lag_ms) <= 0.05 + 1e-9
    size_bytes = len(histogram._counts) * histogram._counts.itemsize
    for _ in range(10_000):
        histogram.record(3 * NS_PER_MS)
    assert len(histogram._counts) * histogram._counts.itemsize == size_bytes < 64 * 1024


def test_histogram_quantiles_are_nearest_rank_within_one_percent_above() -> None:
    histogram = LagHistogram()
    for lag_ms in range(1, 101):  # 1..100 ms
        histogram.record(lag_ms * NS_PER_MS)
    p50, p99 = histogram.quantile_ns(0.5), histogram.quantile_ns(0.99)
    assert p50 is not None and p99 is not None
    assert p50 / NS_PER_MS == pytest.approx(50.0, rel=0.01)
    assert p99 / NS_PER_MS == pytest.approx(99.0, rel=0.01)
    assert histogram.max_ns == 100 * NS_PER_MS
    assert histogram.count == 100


def test_histogram_clamps_early_and_huge_lags() -> None:
    histogram = LagHistogram()
    histogram.record(-5_000)
    assert histogram.quantile_ns(1.0) == 0
    huge_ns = 10**22  # beyond the bucket range: last bucket, exact max kept
    histogram.record(huge_ns)
    assert histogram.max_ns == huge_ns
    assert histogram.quantile_ns(1.0) is not None
    assert LagHistogram().quantile_ns(0.5) is None


def test_reasons_name_the_worker_and_the_figure() -> None:
    block = client_health([_worker(1, cpu_util=0.97), _worker(0, p99_ms=12.34)])

    assert block["client_bound"] is True
    assert block["client_bound_reasons"] == [
        "worker 0's event loop ran 12.3 ms late at p99 (limit 5 ms): the client, "
        "not the server, may have set the latencies",
        "worker 1 used 97 % of a core (limit 90 %): throughput may be the client's limit",
    ]
    assert [w["worker"] for w in block["workers"]] == [0, 1]
    assert block["loop_lag_p99_ms_worst"] == pytest.approx(12.34)
    assert block["cpu_util_max"] == pytest.approx(0.97)
    assert block["cpu_s_total"] == pytest.approx(9.7 + 2.0)
    assert block["limits"] == {"loop_lag_p99_ms": LAG_P99_LIMIT_MS, "cpu_util": CPU_UTIL_LIMIT}


def test_figures_at_the_limits_are_not_client_bound() -> None:
    block = client_health([_worker(0, p99_ms=LAG_P99_LIMIT_MS, cpu_util=CPU_UTIL_LIMIT)])
    assert block["client_bound"] is False
    assert block["unavailable_reasons"] == []


def test_no_workers_gives_nulls_with_a_reason() -> None:
    block = client_health([])

    assert block["workers"] == []
    assert block["loop_lag_p99_ms_worst"] is None
    assert block["cpu_util_max"] is None
    assert block["cpu_s_total"] is None
    assert block["client_bound"] is None
    assert block["client_bound_reasons"] == []
    assert block["unavailable_reasons"] == [
        "no worker reported its health, so the client's load is unknown"
    ]


def test_a_worker_without_figures_leaves_client_bound_unknown_not_false() -> None:
    block = client_health([_worker(0), _worker(1, p99_ms=None, cpu_util=None)])

    assert block["client_bound"] is None
    assert block["unavailable_reasons"] == [
        "worker 1 recorded no event-loop lag samples",
        "worker 1's CPU use was not measured",
    ]
    assert block["loop_lag_p99_ms_worst"] == pytest.approx(1.0)
    assert block["cpu_s_total"] is None
    # A limit exceeded by a measured worker still decides it.
    bound = client_health([_worker(0, p99_ms=9.0), _worker(1, p99_ms=None)])
    assert bound["client_bound"] is True


def test_worker_health_round_trips_through_its_dict() -> None:
    health = _worker(2, p99_ms=3.5)
    assert WorkerHealth.model_validate(health.to_dict()) == health
