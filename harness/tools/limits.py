"""Fixed maxima for tool calls, and the wall-clock limit of a kernel that runs in a worker.

A trace says how much work a call is (its size, its duration, its timeout), never how much a
call may use: every limit is clamped to these maxima, and a clamped limit is reported as such.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

MAX_CPU_S = 60.0
"""Most CPU seconds a sandboxed program's whole process tree may use."""
MAX_WALL_S = 120.0
"""Most wall seconds any tool call may take."""
MAX_MEMORY_BYTES = 2 * 1024**3
"""Most memory a sandboxed program's whole process tree may hold."""
MIN_KERNEL_WALL_S = 10.0
KERNEL_WALL_FACTOR = 10.0
"""A kernel gets ten times its calibrated time (at least MIN_KERNEL_WALL_S), up to MAX_WALL_S."""


def clamp(value: float, maximum: float) -> tuple[float, bool]:
    """`value` capped at `maximum`, and whether it was capped."""
    if not math.isfinite(value) or value > maximum:
        return maximum, True
    return value, False


def kernel_wall_s(predicted_ms: float | None) -> tuple[float, bool]:
    """The wall-clock limit of a kernel call predicted to take `predicted_ms`, clamped."""
    predicted_s = 0.0 if predicted_ms is None or not predicted_ms > 0 else predicted_ms / 1000
    return clamp(max(MIN_KERNEL_WALL_S, KERNEL_WALL_FACTOR * predicted_s), MAX_WALL_S)


class KernelTimeout(Exception):
    """A kernel ran past its wall-clock limit."""


@contextmanager
def wall_limit(seconds: float) -> Iterator[None]:
    """Raise KernelTimeout in this (main) thread once `seconds` of wall time have passed.

    SIGALRM interrupts the kernel's Python code between bytecodes; the kernels' loops are
    pure Python over bounded chunks, so the limit is kept to within one chunk.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("wall_limit needs the main thread (it uses SIGALRM)")

    def expire(signum: int, frame: FrameType | None) -> None:
        raise KernelTimeout(f"wall-clock limit of {seconds:g} s reached")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
