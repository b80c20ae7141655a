"""The driver's side of Ray runs that needs no cluster: a node's clock anchor from round
trips (the runs on a real cluster are in tests/cli/test_run_ray.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from harness.run.ray_pool import clock_anchor


def _trip(
    sent_ns: int, out_ns: int, back_ns: int, offset_ns: int, skew_ns: int, wall0_ns: int
) -> tuple[int, int, int, int, int, int]:
    """One round trip: the node reads its clocks `out_ns` after the driver's first reading,
    the answer is back `back_ns` later."""
    at = sent_ns + out_ns
    end = at + back_ns
    return (
        sent_ns,
        wall0_ns + sent_ns,
        at + offset_ns,
        wall0_ns + at + skew_ns,
        end,
        wall0_ns + end,
    )


def test_the_shortest_round_trip_sets_the_anchor() -> None:
    slow = _trip(0, 9_000_000, 1_000_000, 5_000, 70_000, 10**18)
    fast = _trip(20_000_000, 100_000, 120_000, 5_000, 70_000, 10**18)
    anchor = clock_anchor([slow, fast, slow])
    assert anchor.uncertainty_ns == 110_000
    assert anchor.round_trips == 3
    # the node read its clock 10 µs before the trip's midpoint: within the uncertainty
    assert anchor.monotonic_offset_ns == 5_000 - 10_000
    assert anchor.wall_skew_ns == 70_000 - 10_000


@given(
    offset=st.integers(-(10**15), 10**15),
    skew=st.integers(-(10**12), 10**12),
    out=st.integers(0, 10**9),
    back=st.integers(0, 10**9),
)
def test_the_true_offset_lies_within_the_uncertainty(
    offset: int, skew: int, out: int, back: int
) -> None:
    anchor = clock_anchor([_trip(10**12, out, back, offset, skew, 10**18)])
    assert abs(anchor.monotonic_offset_ns - offset) <= anchor.uncertainty_ns
    assert abs(anchor.wall_skew_ns - skew) <= anchor.uncertainty_ns
