"""Unit conversions, kept in one place so every figure carries the unit its name says."""

from __future__ import annotations

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
MS_PER_S = 1_000


def ns_to_s(ns: float) -> float:
    """Nanoseconds to seconds."""
    return ns / NS_PER_S


def ns_to_ms(ns: float) -> float:
    """Nanoseconds to milliseconds."""
    return ns / NS_PER_MS


def ms_to_ns(ms: float) -> int:
    """Milliseconds to integer nanoseconds."""
    return round(ms * NS_PER_MS)


def s_to_ns(s: float) -> int:
    """Seconds to integer nanoseconds."""
    return round(s * NS_PER_S)
