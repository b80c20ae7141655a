"""Fixed maxima of tool calls and the wall-clock limit of in-worker kernels."""

from __future__ import annotations

import math
import threading
import time

import pytest

from harness.tools import limits


def test_clamp_caps_at_the_maximum_and_says_so() -> None:
    assert limits.clamp(5.0, 60.0) == (5.0, False)
    assert limits.clamp(20_005.0, 60.0) == (60.0, True)
    assert limits.clamp(math.inf, 60.0) == (60.0, True)
    assert limits.clamp(math.nan, 60.0) == (60.0, True)


def test_kernel_wall_limit_scales_with_the_calibration_within_bounds() -> None:
    assert limits.kernel_wall_s(None) == (limits.MIN_KERNEL_WALL_S, False)
    assert limits.kernel_wall_s(2_000.0) == (20.0, False)
    assert limits.kernel_wall_s(1e9) == (limits.MAX_WALL_S, True)


def test_wall_limit_interrupts_a_long_loop() -> None:
    start = time.perf_counter()
    with pytest.raises(limits.KernelTimeout, match=r"0\.2 s"), limits.wall_limit(0.2):
        while True:
            pass
    assert time.perf_counter() - start < 2


def test_wall_limit_is_disarmed_after_a_quick_call() -> None:
    with limits.wall_limit(0.1):
        pass
    time.sleep(0.2)  # no late alarm


def test_wall_limit_needs_the_main_thread() -> None:
    errors: list[BaseException] = []

    def use() -> None:
        try:
            with limits.wall_limit(1):
                pass
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert errors
