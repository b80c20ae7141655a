"""Workload statistics: token percentiles ranked by counting give numpy's figures exactly,
batch by batch too."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from harness.workload.model import Session, Step
from harness.workload.stats import PERCENTILES, TokenTally, _linear_percentiles, session_batches


@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=300),
    st.lists(st.floats(0, 100), min_size=1, max_size=5),
)
def test_counted_percentiles_are_numpys(values: list[int], qs: list[float]) -> None:
    """Token counts ranked from their histogram: numpy's linear percentiles, to the float."""
    for dtype in (np.uint32, np.int64):
        array = np.array(values, dtype=dtype)
        want = [float(v) for v in np.percentile(array.astype(np.float64), qs)]
        assert _linear_percentiles(array, qs) == want


def test_large_or_negative_values_take_numpys_own_path() -> None:
    big = np.array([0, 1 << 23, 7], dtype=np.int64)
    assert _linear_percentiles(big, PERCENTILES) == [
        float(v) for v in np.percentile(big, PERCENTILES)
    ]
    neg = np.array([-3, 5, 9], dtype=np.int64)
    assert _linear_percentiles(neg, [50.0]) == [5.0]


@given(
    st.lists(
        st.lists(st.integers(0, 5000), max_size=50).map(lambda v: np.array(v, dtype=np.uint32)),
        max_size=6,
    ),
    st.integers(0, 5),
)
def test_a_tally_in_batches_is_numpys_figures_of_them_all(
    batches: list[np.ndarray], large_at: int
) -> None:
    """Counts tallied batch by batch, in a histogram until a count too large for one comes
    (then as the counts): the sum and numpy's percentiles of all of them."""
    if large_at < len(batches):
        batches[large_at] = np.append(batches[large_at], np.uint32(1 << 23))
    tally = TokenTally()
    for batch in batches:
        tally.add(batch)
    everything = np.concatenate([np.zeros(0, dtype=np.uint32), *batches]).astype(np.int64)
    assert (tally.count, tally.total) == (everything.size, int(everything.sum()))
    got = tally.percentiles()
    if everything.size == 0:
        assert (got.p50, got.p90, got.p99) == (None, None, None)
    else:
        want = [float(v) for v in np.percentile(everything.astype(np.float64), PERCENTILES)]
        assert [got.p50, got.p90, got.p99] == want


def test_session_batches_give_the_sessions_stats() -> None:
    sessions = [
        Session("a", 1000.0, (Step(100, 20), Step(30, 5, offset_ms=4000.0))),
        Session("b", 500.0, (Step(40, 2), Step(60, 3))),  # no offset: one known start
    ]
    batches = list(session_batches(sessions, size=2))
    assert [b.sessions for b in batches] == [1, 1]
    assert np.concatenate([b.start_ms for b in batches]).tolist() == [1000.0, 5000.0, 500.0]
    assert np.concatenate([b.input_tokens for b in batches]).tolist() == [100, 150, 40, 102]
