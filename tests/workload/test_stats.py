"""Workload statistics: token percentiles ranked by counting give numpy's figures exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from harness.workload.stats import PERCENTILES, _linear_percentiles


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
