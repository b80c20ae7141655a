"""Live figures of a running run, for its progress display: requests done and failed, sessions,
elapsed and remaining time, output tok/s and TTFT/ITL p50 so far.

They are estimates for display only (p50s from bounded random samples, tok/s by arrival time
at the parent) and are never written to the results: the summary is computed from the tables.
Fed from the hot path, each record costs O(1) amortised: no sorting, no growing lists."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from harness.records import RequestRecord
from harness.units import NS_PER_MS

RESERVOIR_SIZE = 2048
"""Samples kept per latency figure: a p50 from them is within about ±1.1 % in rank (one
standard error) of the p50 of every value seen."""

RECENT_WINDOW_S = 5.0
"""The "last few seconds" of the recent output tok/s."""

BUCKET_S = 1.0
"""Width of the buckets the recent window is made of."""


class LiveFeed(Protocol):
    """Where a run's load hands what finishes, as it finishes (on the hot path: cheap)."""

    def record(self, record: RequestRecord) -> None:
        """One request finished, ok or failed (its journalled record)."""

    def sessions_ended(self, count: int = 1) -> None:
        """`count` sessions ran their last step (or stopped)."""


@dataclass(frozen=True)
class LiveBounds:
    """What bounds a run: its counted requests and, where set, its duration limit."""

    requests: int
    duration_s: float | None = None
    sessions: int | None = None


class Reservoir:
    """A uniform random sample of at most `size` values from a stream (Vitter's algorithm L):
    the values it skips are never looked at, so a batch costs O(1 + values kept) amortised."""

    def __init__(self, size: int = RESERVOIR_SIZE, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self.values: list[float] = []
        self._rng = random.Random(seed)
        self._w = 1.0
        self._shrink()
        self._next = size + self._skip()
        """Index in the stream of the next value kept once the sample is full."""

    def _uniform(self) -> float:
        return 1.0 - self._rng.random()  # in (0, 1]: its log is finite

    def _shrink(self) -> None:
        self._w *= math.exp(math.log(self._uniform()) / self.size)

    def _skip(self) -> int:
        if self._w >= 1.0:
            return 0
        return int(math.log(self._uniform()) / math.log1p(-self._w))

    def add(self, value: float) -> None:
        """Offer one value."""
        self.add_batch(1, lambda _: value)

    def add_batch(self, count: int, value_at: Callable[[int], float]) -> None:
        """Offer `count` values, the j-th being `value_at(j)`; only kept ones are computed."""
        start = self.seen
        end = start + count
        while self.seen < end and len(self.values) < self.size:  # filling up: keep all
            self.values.append(value_at(self.seen - start))
            self.seen += 1
        while self._next < end:
            self.values[self._rng.randrange(self.size)] = value_at(self._next - start)
            self._shrink()
            self._next += self._skip() + 1
        self.seen = end

    def median(self) -> float | None:
        """The sample's p50 (numpy's linear interpolation), None before any value."""
        values = list(self.values)  # a copy: the feed may add while a display reads
        return float(np.percentile(values, 50)) if values else None


class RecentRate:
    """A sum per second over the last `window_s`, in fixed buckets (no per-item memory)."""

    def __init__(self, window_s: float = RECENT_WINDOW_S, bucket_s: float = BUCKET_S) -> None:
        self.bucket_s = bucket_s
        self.buckets = max(1, round(window_s / bucket_s))
        self._index = [-1] * self.buckets
        self._sums = [0.0] * self.buckets

    def add(self, t_s: float, amount: float) -> None:
        """Count `amount` at time `t_s` (seconds on the feed's clock)."""
        index = int(t_s // self.bucket_s)
        slot = index % self.buckets
        if self._index[slot] != index:
            self._index[slot] = index
            self._sums[slot] = 0.0
        self._sums[slot] += amount

    def rate(self, now_s: float, since_s: float = 0.0) -> float | None:
        """The amount per second over the window ending at `now_s` (not before `since_s`);
        None while the window covers no time."""
        current = int(now_s // self.bucket_s)
        oldest = current - self.buckets + 1
        total = sum(
            s for i, s in zip(self._index, self._sums, strict=True) if oldest <= i <= current
        )
        span = now_s - max(since_s, oldest * self.bucket_s)
        return total / span if span > 0 else None


@dataclass(frozen=True)
class LiveFigures:
    """One reading of the live figures (estimates for display)."""

    done: int
    failed: int
    sessions_first_done: int
    """Sessions whose first request finished (ok or failed): the feed hears of a session
    when its first request ends, not when it starts."""
    sessions_ended: int
    sessions: int | None
    elapsed_s: float
    bound: Literal["duration", "requests"]
    """What bounds the run now: its duration limit or its request count (the sooner end)."""
    fraction: float
    """How far along the bounding limit the run is, 0 to 1."""
    remaining_s: float | None
    """Time left: by the duration limit, or by the request rate so far (None: no rate yet)."""
    remaining_requests: int
    requests: int
    duration_s: float | None
    output_tok_s_recent: float | None
    output_tok_s_overall: float | None
    """Every output token so far, warm-up included, over the time since the load began."""
    ttft_p50_ms: float | None
    itl_p50_ms: float | None


class LiveStats:
    """The aggregator behind a progress display (a LiveFeed); `figures()` reads it, from any
    thread. Its clock starts when it is made: make it as the load starts."""

    def __init__(
        self,
        bounds: LiveBounds,
        now_s: Callable[[], float] = time.monotonic,
        reservoir_size: int = RESERVOIR_SIZE,
        window_s: float = RECENT_WINDOW_S,
    ) -> None:
        self.bounds = bounds
        self._now_s = now_s
        self._start_s = now_s()
        self.done = 0
        self.failed = 0
        self.sessions_first_done = 0
        self._sessions_ended = 0
        self.output_tokens = 0
        self._recent = RecentRate(window_s)
        self.ttft_ms = Reservoir(reservoir_size, seed=1)
        self.itl_ms = Reservoir(reservoir_size, seed=2)

    def record(self, record: RequestRecord) -> None:
        """Count one finished request (O(1) amortised: ITLs are sampled, not all looked at)."""
        self.done += 1
        if record.step_index == 0 and record.sent_ns is not None:
            self.sessions_first_done += 1
        if not record.ok:
            self.failed += 1
            return
        tokens = record.output_tokens
        if tokens:
            self.output_tokens += tokens
            self._recent.add(self._now_s() - self._start_s, tokens)
        if record.warmup:
            return
        if record.first_token_ns is not None and record.sent_ns is not None:
            self.ttft_ms.add((record.first_token_ns - record.sent_ns) / NS_PER_MS)
        chunks: Sequence[int] = record.chunk_ns
        if len(chunks) > 1:
            self.itl_ms.add_batch(
                len(chunks) - 1, lambda j: (chunks[j + 1] - chunks[j]) / NS_PER_MS
            )

    def sessions_ended(self, count: int = 1) -> None:
        """Count sessions that ran their last step (or stopped)."""
        self._sessions_ended += count

    def figures(self) -> LiveFigures:
        """The figures now."""
        b = self.bounds
        elapsed = max(0.0, self._now_s() - self._start_s)
        done = self.done
        left = max(0, b.requests - done)
        by_count_s = left * elapsed / done if done else None
        by_count_fraction = min(1.0, done / b.requests) if b.requests else 1.0
        bound: Literal["duration", "requests"] = "requests"
        remaining_s, fraction = by_count_s, by_count_fraction
        if b.duration_s is not None:
            by_time_s = max(0.0, b.duration_s - elapsed)
            if by_count_s is None or by_time_s <= by_count_s:
                bound, remaining_s = "duration", by_time_s
                fraction = min(1.0, elapsed / b.duration_s) if b.duration_s > 0 else 1.0
        return LiveFigures(
            done=done,
            failed=self.failed,
            sessions_first_done=self.sessions_first_done,
            sessions_ended=self._sessions_ended,
            sessions=b.sessions,
            elapsed_s=elapsed,
            bound=bound,
            fraction=fraction,
            remaining_s=remaining_s,
            remaining_requests=left,
            requests=b.requests,
            duration_s=b.duration_s,
            output_tok_s_recent=self._recent.rate(elapsed),
            output_tok_s_overall=self.output_tokens / elapsed if elapsed > 0 else None,
            ttft_p50_ms=self.ttft_ms.median(),
            itl_p50_ms=self.itl_ms.median(),
        )
