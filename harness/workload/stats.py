"""Summary figures of a workload (sessions, requests, token sums and percentiles, time span),
computed in one pass with compact arrays so that traces of tens of millions of requests fit."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from harness.units import MS_PER_S
from harness.workload.model import Session

PERCENTILES: tuple[int, ...] = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class TokenPercentiles:
    """p50, p90 and p99 of a per-request token length."""

    p50: float | None
    p90: float | None
    p99: float | None

    def to_json_dict(self) -> dict[str, float | None]:
        """Plain JSON: `p50`, `p90`, `p99` (finite numbers or null)."""
        return {"p50": _finite(self.p50), "p90": _finite(self.p90), "p99": _finite(self.p99)}


@dataclass(frozen=True, slots=True)
class WorkloadStats:
    """What a workload asks of a server: its size, token volume, shape and time span.

    `input_tokens` sums the prompt lengths the server sees (the agent-loop rule of
    `Session.input_lengths`); `span_s` runs from the first to the last request start known
    from the trace (session start plus step offset; steps without an offset are skipped).
    """

    sessions: int
    requests: int
    input_tokens: int
    output_tokens: int
    input_percentiles: TokenPercentiles
    output_percentiles: TokenPercentiles
    span_s: float

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON: the totals, `span_s` and a `percentiles` object per token kind; a figure
        that is not a finite number is null, never `Infinity` or `NaN` (not JSON)."""
        return {
            "sessions": self.sessions,
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "span_s": _finite(self.span_s),
            "percentiles": {
                "input_tokens": self.input_percentiles.to_json_dict(),
                "output_tokens": self.output_percentiles.to_json_dict(),
            },
        }


def _finite(value: float | None) -> float | None:
    """`value` where it is a finite number, else None."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class RequestBatch:
    """Some requests of a trace in columns, as a loader parsed them: the figures its Sessions
    would give, without building them (int64 token arrays, float64 starts)."""

    sessions: int
    input_tokens: np.ndarray
    """Each request's prompt length (the agent-loop rule of `Session.input_lengths`)."""
    output_tokens: np.ndarray
    start_ms: np.ndarray
    """The starts known from the trace (as `workload_stats` counts them)."""


def session_batches(sessions: Iterable[Session], size: int = 100_000) -> Iterator[RequestBatch]:
    """Sessions as RequestBatches of about `size` requests, by the rules of `workload_stats`
    (for a columnar trace that reads part of its file as Sessions)."""
    count = 0
    inputs: list[int] = []
    outputs: list[int] = []
    starts: list[float] = []
    for session in sessions:
        count += 1
        inputs.extend(session.input_lengths())
        outputs.extend(step.output_tokens for step in session.steps)
        starts.extend(_known_starts(session))
        if len(inputs) >= size:
            yield _batch(count, inputs, outputs, starts)
            count, inputs, outputs, starts = 0, [], [], []
    if count:
        yield _batch(count, inputs, outputs, starts)


def _batch(count: int, inputs: list[int], outputs: list[int], starts: list[float]) -> RequestBatch:
    return RequestBatch(
        count,
        np.array(inputs, dtype=np.int64),
        np.array(outputs, dtype=np.int64),
        np.array(starts, dtype=np.float64),
    )


def _known_starts(session: Session) -> Iterator[float]:
    """The starts of a session's requests known from the trace: its first, and each step
    with an offset."""
    for k, step in enumerate(session.steps):
        if step.offset_ms is None and k > 0:
            continue
        yield session.start_ms + (step.offset_ms or 0.0)


@runtime_checkable
class ColumnarSessions(Protocol):
    """A stream of Sessions that can also give its requests in columns, from the same parsing
    (a flat trace of millions of rows summed without a Python object per row)."""

    def __iter__(self) -> Iterator[Session]: ...

    def request_batches(self) -> Iterator[RequestBatch]:
        """The requests in batches; only before the Sessions are iterated."""
        ...


def workload_stats(sessions: Iterable[Session]) -> WorkloadStats:
    """Summarise Sessions in one streaming pass, keeping 4 bytes per request per token kind
    (a prompt of 2**32 tokens or more would overflow; loaders and generators keep every
    count within `limits.MAX_TOKENS`). A columnar source is summed from its batches."""
    if isinstance(sessions, ColumnarSessions):
        return _columnar_stats(sessions.request_batches())
    inputs = array("I")
    outputs = array("I")
    count = 0
    first_ms = float("inf")
    last_ms = float("-inf")
    for session in sessions:
        count += 1
        inputs.extend(session.input_lengths())
        outputs.extend(step.output_tokens for step in session.steps)
        for start in _known_starts(session):
            first_ms = min(first_ms, start)
            last_ms = max(last_ms, start)
    return _summary(count, _as_numpy(inputs), _as_numpy(outputs), first_ms, last_ms)


def _columnar_stats(batches: Iterable[RequestBatch]) -> WorkloadStats:
    """`workload_stats` of requests given in columns: the same sums, percentiles and span,
    from token counts tallied batch by batch (memory bounded by the longest prompt, not by
    the number of requests)."""
    inputs = TokenTally()
    outputs = TokenTally()
    count = 0
    first_ms = float("inf")
    last_ms = float("-inf")
    for batch in batches:
        count += batch.sessions
        inputs.add(batch.input_tokens)
        outputs.add(batch.output_tokens)
        if batch.start_ms.size:
            first_ms = min(first_ms, float(batch.start_ms.min()))
            last_ms = max(last_ms, float(batch.start_ms.max()))
    return WorkloadStats(
        sessions=count,
        requests=inputs.count,
        input_tokens=inputs.total,
        output_tokens=outputs.total,
        input_percentiles=inputs.percentiles(),
        output_percentiles=outputs.percentiles(),
        span_s=(last_ms - first_ms) / MS_PER_S if last_ms >= first_ms else 0.0,
    )


class TokenTally:
    """Token counts of many requests, kept as a histogram while they are small (as token
    counts are) and as the counts themselves once one is not: sum, number and percentiles."""

    def __init__(self) -> None:
        self.count = 0
        self._sum = 0
        self._histogram: np.ndarray | None = np.zeros(0, dtype=np.int64)
        self._values: list[np.ndarray] = []

    @property
    def total(self) -> int:
        """The sum of the counts."""
        if self._histogram is None:
            return self._sum
        return int(np.dot(np.arange(len(self._histogram), dtype=np.int64), self._histogram))

    def add(self, values: np.ndarray) -> None:
        """Tally a batch of non-negative integer counts."""
        if not values.size:
            return
        self.count += int(values.size)
        if self._histogram is not None:
            top = int(values.max())
            if top < _COUNTED_UP_TO and (values.dtype.kind == "u" or int(values.min()) >= 0):
                counts = np.bincount(values, minlength=len(self._histogram))
                counts[: len(self._histogram)] += self._histogram
                self._histogram = counts
                return
            kept = np.arange(len(self._histogram), dtype=np.int64)
            self._values.append(np.repeat(kept, self._histogram))
            self._sum = self.total
            self._histogram = None
        self._sum += int(values.sum(dtype=np.int64))
        self._values.append(values.astype(np.int64))

    def percentiles(self) -> TokenPercentiles:
        """p50/p90/p99 as `np.percentile` gives them (linear); None for no requests."""
        if self.count == 0:
            return TokenPercentiles(None, None, None)
        if self._histogram is not None:
            p50, p90, p99 = _counted_percentiles(np.cumsum(self._histogram), self.count)
        else:
            p50, p90, p99 = _linear_percentiles(np.concatenate(self._values), PERCENTILES)
        return TokenPercentiles(p50=p50, p90=p90, p99=p99)


def _summary(
    sessions: int, inputs: np.ndarray, outputs: np.ndarray, first_ms: float, last_ms: float
) -> WorkloadStats:
    """The WorkloadStats of per-request token arrays and the first and last known start."""
    return WorkloadStats(
        sessions=sessions,
        requests=len(inputs),
        input_tokens=int(inputs.sum(dtype=np.int64)),
        output_tokens=int(outputs.sum(dtype=np.int64)),
        input_percentiles=_percentiles(inputs),
        output_percentiles=_percentiles(outputs),
        span_s=(last_ms - first_ms) / MS_PER_S if last_ms >= first_ms else 0.0,
    )


def _as_numpy(values: array[int]) -> np.ndarray:
    """View an unsigned-int array as numpy without copying."""
    return np.frombuffer(values, dtype=np.dtype(f"u{values.itemsize}"))


_COUNTED_UP_TO = 1 << 22
"""Token counts below this are ranked by counting (one pass) rather than by partitioning."""


def _percentiles(values: np.ndarray) -> TokenPercentiles:
    """p50/p90/p99 (linear interpolation, as numpy's default); None for no requests."""
    if values.size == 0:
        return TokenPercentiles(None, None, None)
    p50, p90, p99 = _linear_percentiles(values, PERCENTILES)
    return TokenPercentiles(p50=p50, p90=p90, p99=p99)


def _linear_percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """np.percentile(values, qs) of non-negative integers; those below _COUNTED_UP_TO (token
    counts) are ranked from their histogram in one pass, which sorts nothing."""
    top = int(values.max())
    if values.dtype.kind not in "ui" or int(values.min()) < 0 or top >= _COUNTED_UP_TO:
        return [float(v) for v in np.percentile(values, qs)]
    return _counted_percentiles(np.cumsum(np.bincount(values, minlength=top + 1)), values.size, qs)


def _counted_percentiles(
    below: np.ndarray, size: int, qs: Sequence[float] = PERCENTILES
) -> list[float]:
    """np.percentile(values, qs) from the running count of values at or below each integer
    (`below[k]`: how many are <= k), `size` values in all."""
    out = []
    for q in qs:
        rank = q / 100 * (size - 1)
        lo, hi = math.floor(rank), math.ceil(rank)
        a, b = (float(np.searchsorted(below, k, side="right")) for k in (lo, hi))
        t = rank - lo  # interpolated as numpy's _lerp does, to the same float
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return out
