"""The live aggregator: exact counts, p50 estimates within a stated error of numpy's on the
same data, recent and overall tok/s, and remaining time by duration or by request count."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.records import RequestRecord
from harness.run.live import LiveBounds, LiveStats, RecentRate, Reservoir

RANK_TOLERANCE = 0.05
"""How far (in rank) a p50 from a full 2048-value sample may be from the data's: about 4.5
standard errors (±1.1 % each), so a correct sampler practically never misses it."""


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _record(
    i: int,
    ok: bool = True,
    output: int = 4,
    step: int = 0,
    chunk_ns: list[int] | None = None,
    ttft_ns: int = 5_000_000,
    warmup: bool = False,
) -> RequestRecord:
    sent = 1_000_000_000 + i
    chunks = chunk_ns if chunk_ns is not None else [sent + ttft_ns]
    record = RequestRecord(
        request_id=f"r{i:07d}",
        session_id=f"s{i}",
        step_index=step,
        api="completions",
        prompt_tokens_expected=10,
        output_tokens_expected=output,
        scheduled_ns=sent,
        sent_ns=sent,
        warmup=warmup,
    )
    if ok:
        record.http_status = 200
        record.first_token_ns = sent + ttft_ns
        record.chunk_ns = chunks
        record.last_token_ns = record.done_ns = chunks[-1]
        record.output_tokens = output
    else:
        record.error = "http 500"
        record.done_ns = sent + ttft_ns
    return record


def _rank(data: np.ndarray, value: float) -> float:
    return float((data < value).mean())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 500), st.integers(0, 3), st.booleans()),
        max_size=200,
    )
)
def test_counts_are_exact(rows: list[tuple[bool, int, int, bool]]) -> None:
    stats = LiveStats(LiveBounds(requests=1000), now_s=FakeClock())
    for i, (ok, output, step, warmup) in enumerate(rows):
        stats.record(_record(i, ok=ok, output=output, step=step, warmup=warmup))
    stats.sessions_ended(3)
    stats.sessions_ended()
    f = stats.figures()
    assert f.done == len(rows)
    assert f.failed == sum(1 for ok, *_ in rows if not ok)
    assert f.sessions_first_done == sum(1 for _, _, step, _ in rows if step == 0)
    assert f.sessions_ended == 4
    assert stats.output_tokens == sum(out for ok, out, *_ in rows if ok)
    assert f.remaining_requests == 1000 - len(rows)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**9), min_size=1, max_size=30), max_size=60))
def test_itl_p50_is_numpys_while_every_gap_fits_the_sample(gaps: list[list[int]]) -> None:
    """With all gaps kept (fewer than the sample's size), the ITL p50 is numpy's median of
    the gaps pooled over requests, as the summary pools them."""
    stats = LiveStats(LiveBounds(requests=100), now_s=FakeClock())
    pooled: list[float] = []
    for i, request_gaps in enumerate(gaps):
        chunks = list(itertools.accumulate([10**9, *request_gaps]))
        pooled.extend(g / 1e6 for g in request_gaps)
        stats.record(_record(i, chunk_ns=chunks, output=len(chunks)))
    got = stats.figures().itl_p50_ms
    if not pooled:
        assert got is None
    else:
        assert got is not None and np.isclose(got, np.median(pooled))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=300))
def test_ttft_p50_is_numpys_while_every_value_fits(values: list[float]) -> None:
    stats = LiveStats(LiveBounds(requests=1000), now_s=FakeClock())
    for i, ms in enumerate(values):
        stats.record(_record(i, ttft_ns=round(ms * 1e6)))
    got = stats.figures().ttft_p50_ms
    want = np.median([round(ms * 1e6) / 1e6 for ms in values])
    assert got is not None and np.isclose(got, want)


def test_warmup_and_failed_requests_are_not_in_the_latencies() -> None:
    stats = LiveStats(LiveBounds(requests=10), now_s=FakeClock())
    stats.record(_record(0, ttft_ns=900_000_000, warmup=True))
    stats.record(_record(1, ok=False, ttft_ns=800_000_000))
    stats.record(_record(2, ttft_ns=2_000_000))
    f = stats.figures()
    assert f.ttft_p50_ms == 2.0
    assert (f.done, f.failed) == (3, 1)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_p50_of_a_long_stream_is_within_the_stated_rank_error(seed: int) -> None:
    """100,000 values in batches of random size through a 2048-value sample: its p50 lies
    within RANK_TOLERANCE in rank of numpy's p50 of all of them."""
    rng = np.random.default_rng(seed)
    data = rng.lognormal(mean=2.0, sigma=1.0, size=100_000)
    sample = Reservoir(seed=seed)
    start = 0
    while start < data.size:
        size = min(int(rng.integers(1, 500)), data.size - start)
        batch = data[start : start + size].tolist()
        sample.add_batch(size, batch.__getitem__)
        start += size
    est = sample.median()
    assert est is not None and sample.seen == data.size and len(sample.values) == 2048
    assert abs(_rank(data, est) - 0.5) <= RANK_TOLERANCE
    lo, hi = np.percentile(data, [50 - 100 * RANK_TOLERANCE, 50 + 100 * RANK_TOLERANCE])
    assert lo <= est <= hi


def test_the_sample_has_no_bias_by_position() -> None:
    """Values rising with their position: a sampler that favours early or late values would
    put the p50 off the middle."""
    for seed in range(5):
        sample = Reservoir(seed=seed)
        sample.add_batch(200_000, float)
        est = sample.median()
        assert est is not None and abs(est / 200_000 - 0.5) <= RANK_TOLERANCE


def test_values_skipped_are_never_computed() -> None:
    """A million values offered: only those kept are computed, about k (1 + ln(n / k))."""
    calls = 0

    def value_at(j: int) -> float:
        nonlocal calls
        calls += 1
        return float(j)

    sample = Reservoir(size=2048, seed=0)
    for _ in range(100):
        sample.add_batch(10_000, value_at)
    assert sample.seen == 1_000_000
    assert calls < 2048 * (1 + np.log(1_000_000 / 2048)) * 1.5  # about 14,700 expected
    assert calls >= 2048


def test_recent_rate_forgets_what_left_the_window() -> None:
    rate = RecentRate(window_s=5.0, bucket_s=1.0)
    for t in range(10):
        rate.add(t + 0.5, 100)
    assert rate.rate(10.0) == 100.0  # seconds 6..9 (400) over the 4 s since second 6
    for t in range(10, 20):
        rate.add(t + 0.5, 300)
    assert rate.rate(20.0) == 300.0  # the 100s have left the window
    young = RecentRate(window_s=5.0, bucket_s=1.0)
    assert young.rate(0.0) is None
    young.add(0.5, 100)
    assert young.rate(2.0) == 50.0  # a window younger than 5 s: over the time there was
    assert rate.rate(100.0) == 0.0  # nothing in the last 5 s


def test_tok_s_recent_and_overall() -> None:
    clock = FakeClock()
    stats = LiveStats(LiveBounds(requests=1000), now_s=clock)
    assert stats.figures().output_tok_s_overall is None  # no time has passed: no rate
    for t in range(20):
        clock.t = t + 0.5
        stats.record(_record(t, output=100 if t < 10 else 300))
    clock.t = 20.0
    f = stats.figures()
    assert f.output_tok_s_overall == (10 * 100 + 10 * 300) / 20.0
    assert f.output_tok_s_recent is not None and 240 <= f.output_tok_s_recent <= 300


def test_remaining_by_duration_when_the_time_limit_comes_first() -> None:
    """A duration-limited run with more requests planned than it will send (the "9/400"
    case): the time left is the duration's, and the bar follows the clock."""
    clock = FakeClock()
    stats = LiveStats(LiveBounds(requests=400, duration_s=60.0), now_s=clock)
    assert stats.figures().bound == "duration"  # no rate yet: the duration is what is known
    clock.t = 10.0
    for i in range(9):
        stats.record(_record(i))
    f = stats.figures()
    assert f.bound == "duration"
    assert f.remaining_s == 50.0
    assert abs(f.fraction - 10 / 60) < 1e-12
    clock.t = 75.0  # past the limit while the last requests finish
    f = stats.figures()
    assert (f.remaining_s, f.fraction) == (0.0, 1.0)


def test_remaining_by_count_when_the_requests_run_out_first() -> None:
    clock = FakeClock()
    stats = LiveStats(LiveBounds(requests=10, duration_s=60.0), now_s=clock)
    clock.t = 10.0
    for i in range(5):
        stats.record(_record(i))
    f = stats.figures()
    assert f.bound == "requests"
    assert f.remaining_s == 10.0  # 5 left at 0.5 requests per second
    assert (f.fraction, f.remaining_requests) == (0.5, 5)


def test_remaining_by_count_without_a_duration() -> None:
    clock = FakeClock()
    stats = LiveStats(LiveBounds(requests=4), now_s=clock)
    f = stats.figures()
    assert (f.bound, f.remaining_s, f.fraction) == ("requests", None, 0.0)  # no rate yet
    clock.t = 2.0
    for i in range(4):
        stats.record(_record(i))
    f = stats.figures()
    assert (f.remaining_s, f.fraction, f.remaining_requests) == (0.0, 1.0, 0)
