"""Unit constants of the fleet model and a small collector of figures in which every null
carries the reason it is null (a missing input never becomes a default or a 0)."""

from __future__ import annotations

import math
from typing import Any

S_PER_DAY = 86_400.0
H_PER_DAY = 24.0
DAYS_PER_YEAR = 365.0
J_PER_MWH = 3.6e9
W_PER_MW = 1e6
MWH_PER_GWH = 1e3
ROUND_DIGITS = 9
"""Quotients are rounded to this many decimals before ceil/floor, so that floating-point noise
(4.000000000001) does not add or drop a whole card."""


def ceil_count(x: float) -> int:
    """Whole units needed for `x` (ceil, ignoring floating-point noise)."""
    return math.ceil(round(x, ROUND_DIGITS))


def floor_count(x: float) -> int:
    """Whole units that fit in `x` (floor, ignoring floating-point noise)."""
    return math.floor(round(x, ROUND_DIGITS))


class Figures:
    """Named figures plus, for each null one, the reason it is null."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.reasons: dict[str, str] = {}

    def put(self, key: str, value: Any, reason: str | None = None) -> Any:
        """Record `value` under `key`; a None needs the `reason`. Returns `value`."""
        self.values[key] = value
        if value is None:
            self.reasons[key] = reason or "not computed"
        return value

    def missing(self, key: str, reason: str) -> None:
        """Record `key` as null with `reason`."""
        self.put(key, None, reason)

    def as_dict(self) -> dict[str, Any]:
        """The figures with their `reasons` (only for nulls)."""
        return {**self.values, "reasons": dict(self.reasons)}
