"""The client's own health during a run: event-loop lag and CPU use of each worker process.

A load generator whose event loop runs late, or whose process uses a whole core, adds its
own delay to every latency it records and caps the throughput it can drive. Each worker
measures both about itself (`LoopLagMonitor`), and `client_health` turns the workers'
figures into the summary's `client` block with a `client_bound` warning a user can read.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from types import TracebackType
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from harness.units import NS_PER_MS, NS_PER_S

DEFAULT_INTERVAL_S = 0.01
"""Ticker period: 100 wake-ups a second, cheap in the loop yet fine enough to catch a stall."""
LAG_P99_LIMIT_MS = 5.0
"""Event-loop lag p99 above this (in any worker) marks the run client bound."""
CPU_UTIL_LIMIT = 0.9
"""CPU use above this share of one core (in any worker) marks the run client bound."""

_BUCKET_NS = 100_000
"""Histogram unit: 0.1 ms."""
_SUB_BITS = 7
"""Buckets per octave above the linear range: 128, so a bucket is under 0.8 % of its value."""
_LINEAR_UNITS = 2 << _SUB_BITS
"""Lags below 256 units (25.6 ms) get one 0.1 ms bucket each."""
_RANGE_BITS = 40
"""Lags up to 2^40 units (over three years) are kept apart; longer ones share the last bucket."""
_MAX_UNITS = (1 << _RANGE_BITS) - 1
_N_BUCKETS = (_RANGE_BITS - _SUB_BITS + 1) << _SUB_BITS


class LagHistogram:
    """Counts of lags in fixed log-linear buckets: flat memory (34 KiB) however long the run.

    Below 25.6 ms each bucket is 0.1 ms wide; above, 128 buckets per doubling keep a bucket
    under 0.8 % of its value. Quantiles are bucket midpoints (at most the exact maximum).
    """

    __slots__ = ("_counts", "count", "max_ns")

    def __init__(self) -> None:
        self._counts = array("q", bytes(8 * _N_BUCKETS))
        self.count = 0
        self.max_ns = 0

    def record(self, lag_ns: int) -> None:
        """Count one lag; a negative one (a timer that fired early) counts as zero."""
        if lag_ns > 0:
            if lag_ns > self.max_ns:
                self.max_ns = lag_ns
            self._counts[_bucket_index(lag_ns // _BUCKET_NS)] += 1
        else:
            self._counts[0] += 1
        self.count += 1

    def quantile_ns(self, q: float) -> int | None:
        """The nearest-rank q-quantile (0 < q ≤ 1) as a bucket midpoint; None when empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(round(q * self.count, 9)))
        cumulative = np.cumsum(np.frombuffer(self._counts, dtype=np.int64))
        index = int(np.searchsorted(cumulative, rank))
        low_units, width_units = _bucket_bounds(index)
        midpoint_ns = (2 * low_units + width_units) * _BUCKET_NS // 2
        return min(midpoint_ns, self.max_ns)


def _bucket_index(units: int) -> int:
    """The bucket of a lag given in 0.1 ms units (HDR-style: exponent and top mantissa bits)."""
    if units < _LINEAR_UNITS:
        return units
    units = min(units, _MAX_UNITS)
    shift = units.bit_length() - _SUB_BITS - 1
    return (shift << _SUB_BITS) + (units >> shift)


def _bucket_bounds(index: int) -> tuple[int, int]:
    """Lower bound and width, in 0.1 ms units, of one bucket."""
    if index < _LINEAR_UNITS:
        return index, 1
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return mantissa << shift, 1 << shift


class LoopLag(BaseModel):
    """One worker's event-loop lag in milliseconds: wake-ups measured and p50/p99/max lateness.

    The figures are None when the ticker never woke (count 0).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=0)
    p50: float | None = None
    p99: float | None = None
    max: float | None = None


class WorkerHealth(BaseModel):
    """One worker process's health over its monitored window.

    cpu_s is user+system CPU of the whole process (all its threads); cpu_util = cpu_s /
    wall_s, where 1.0 is one full core. Unmeasured figures are None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: int = Field(ge=0)
    loop_lag_ms: LoopLag
    cpu_s: float | None = None
    wall_s: float | None = None
    cpu_util: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form for summary.json."""
        return self.model_dump(mode="json")


class LoopLagMonitor:
    """A ticker in the worker's running event loop that records how late each wake-up was.

    Every `interval_s` it is due on an absolute deadline (time.perf_counter_ns), so its own
    lateness never accumulates; a wake-up records actual − due. After a stall longer than
    the period the missed deadlines are skipped, so one stall is one sample (its full
    lateness), not many. Lags go to a fixed-bucket `LagHistogram` (flat memory, 0.1 ms
    resolution below 25.6 ms), not a growing array. A tick costs one timer handle and one
    histogram increment. Under uvloop, timers have 1 ms granularity, so an idle loop shows
    up to about 1 ms of lag. Also measures the process's CPU and wall seconds over the
    same window (start → stop, or → now while running).

    Use `start()` … `await stop()`, or `async with LoopLagMonitor() as monitor:`.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._interval_ns = max(1, round(interval_s * NS_PER_S))
        self._histogram = LagHistogram()
        self._handle: asyncio.TimerHandle | None = None
        self._due_ns = 0
        self._start_wall_ns: int | None = None
        self._start_cpu_ns = 0
        self._stop_wall_ns: int | None = None
        self._stop_cpu_ns = 0

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._handle is not None

    def start(self) -> None:
        """Start ticking in the running event loop (RuntimeError outside one, or if started)."""
        if self._start_wall_ns is not None:
            raise RuntimeError("LoopLagMonitor already started; use a new one per window")
        self._call_later = asyncio.get_running_loop().call_later
        self._start_cpu_ns = time.process_time_ns()
        self._start_wall_ns = time.perf_counter_ns()
        self._due_ns = self._start_wall_ns + self._interval_ns
        self._handle = self._call_later(self._interval_ns / NS_PER_S, self._tick)

    async def stop(self) -> None:
        """Stop ticking and close the CPU and wall window; a second call does nothing."""
        if self._handle is None:
            return
        self._handle.cancel()
        self._handle = None
        self._stop_wall_ns = time.perf_counter_ns()
        self._stop_cpu_ns = time.process_time_ns()

    async def __aenter__(self) -> LoopLagMonitor:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _tick(self) -> None:
        now_ns = time.perf_counter_ns()
        due_ns = self._due_ns
        self._histogram.record(now_ns - due_ns)
        due_ns += self._interval_ns
        if due_ns <= now_ns:
            due_ns += ((now_ns - due_ns) // self._interval_ns + 1) * self._interval_ns
        self._due_ns = due_ns
        self._handle = self._call_later((due_ns - now_ns) / NS_PER_S, self._tick)

    def lag(self) -> LoopLag:
        """The lag figures so far, in milliseconds."""
        histogram = self._histogram
        if histogram.count == 0:
            return LoopLag(count=0)
        p50_ns = histogram.quantile_ns(0.50)
        p99_ns = histogram.quantile_ns(0.99)
        assert p50_ns is not None and p99_ns is not None
        return LoopLag(
            count=histogram.count,
            p50=p50_ns / NS_PER_MS,
            p99=p99_ns / NS_PER_MS,
            max=histogram.max_ns / NS_PER_MS,
        )

    def health(self, worker: int) -> WorkerHealth:
        """This worker's figures over the window (to now while running); None if never started."""
        lag = self.lag()
        if self._start_wall_ns is None:
            return WorkerHealth(worker=worker, loop_lag_ms=lag)
        if self._stop_wall_ns is None:
            end_wall_ns, end_cpu_ns = time.perf_counter_ns(), time.process_time_ns()
        else:
            end_wall_ns, end_cpu_ns = self._stop_wall_ns, self._stop_cpu_ns
        wall_s = (end_wall_ns - self._start_wall_ns) / NS_PER_S
        cpu_s = (end_cpu_ns - self._start_cpu_ns) / NS_PER_S
        return WorkerHealth(
            worker=worker,
            loop_lag_ms=lag,
            cpu_s=cpu_s,
            wall_s=wall_s,
            cpu_util=cpu_s / wall_s if wall_s > 0 else None,
        )


def client_health(workers: list[WorkerHealth]) -> dict[str, Any]:
    """The summary's `client` block: per-worker figures, the worst of each, and client_bound.

    client_bound is True when any worker's lag p99 exceeds LAG_P99_LIMIT_MS or its cpu_util
    exceeds CPU_UTIL_LIMIT (each such finding one sentence in client_bound_reasons); False
    when every figure was measured and none does; None when none does but some figure is
    missing (the missing ones are named in unavailable_reasons).
    """
    ordered = sorted(workers, key=lambda w: w.worker)
    reasons: list[str] = []
    unavailable: list[str] = []
    if not ordered:
        unavailable.append("no worker reported its health, so the client's load is unknown")
    for w in ordered:
        p99 = w.loop_lag_ms.p99
        if p99 is None:
            unavailable.append(f"worker {w.worker} recorded no event-loop lag samples")
        elif p99 > LAG_P99_LIMIT_MS:
            reasons.append(
                f"worker {w.worker}'s event loop ran {p99:.1f} ms late at p99 "
                f"(limit {LAG_P99_LIMIT_MS:g} ms): the client, not the server, "
                "may have set the latencies"
            )
        if w.cpu_util is None:
            unavailable.append(f"worker {w.worker}'s CPU use was not measured")
        elif w.cpu_util > CPU_UTIL_LIMIT:
            reasons.append(
                f"worker {w.worker} used {w.cpu_util * 100:.0f} % of a core "
                f"(limit {CPU_UTIL_LIMIT * 100:.0f} %): throughput may be the client's limit"
            )
    p99s = [w.loop_lag_ms.p99 for w in ordered if w.loop_lag_ms.p99 is not None]
    utils = [w.cpu_util for w in ordered if w.cpu_util is not None]
    cpu_s = [w.cpu_s for w in ordered if w.cpu_s is not None]
    client_bound: bool | None
    if reasons:
        client_bound = True
    elif unavailable:
        client_bound = None
    else:
        client_bound = False
    return {
        "workers": [w.to_dict() for w in ordered],
        "loop_lag_p99_ms_worst": max(p99s) if p99s else None,
        "cpu_util_max": max(utils) if utils else None,
        "cpu_s_total": sum(cpu_s) if len(cpu_s) == len(ordered) and ordered else None,
        "limits": {"loop_lag_p99_ms": LAG_P99_LIMIT_MS, "cpu_util": CPU_UTIL_LIMIT},
        "client_bound": client_bound,
        "client_bound_reasons": reasons,
        "unavailable_reasons": unavailable,
    }
