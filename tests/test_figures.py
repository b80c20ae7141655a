"""harness.figures: figures as text (attainments shown with the digits their verdict needs)."""

from __future__ import annotations

import pytest

from harness.capacity import meets_target
from harness.figures import attainment_text, target_text


@pytest.mark.parametrize(
    ("attainment", "target", "shown"),
    [
        (0.897, 0.9, "89.7 %"),
        (0.8999, 0.9, "89.99 %"),
        (0.8999999999, 0.9, "89.999999 %"),
        (0.9, 0.9, "90.0 %"),
        (0.95, 0.9, "95.0 %"),
        (0.9999, 1.0, "99.99 %"),
        (1.0, 1.0, "100.0 %"),
        (None, 0.9, "n/a"),
    ],
)
def test_attainment_shows_enough_digits_to_agree_with_the_verdict(
    attainment: float | None, target: float, shown: str
) -> None:
    assert attainment_text(attainment, target) == shown


def test_a_miss_never_reads_as_meeting_the_target() -> None:
    """Over a fine grid around several targets: the number shown is below the target's
    exactly where the verdict is a miss."""
    for target in (0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        for step in range(-2000, 2001):
            attainment = min(1.0, max(0.0, target + step * 1e-6))
            shown = float(attainment_text(attainment, target).removesuffix(" %"))
            assert (shown >= 100 * target - 1e-9) == meets_target(attainment, target), (
                attainment,
                target,
            )
    assert target_text(0.9) == "90 %" and target_text(0.995) == "99.5 %"
