"""code_exec's limits: from the size, never above the fixed maxima, clamping reported."""

from __future__ import annotations

import pytest

from harness.tools import limits
from harness.tools.code_exec import call_limits, run_code_exec


def test_a_huge_trace_size_gets_the_maximum_not_20005_s() -> None:
    cpu, wall, clamped = call_limits(1e6)
    assert (cpu, wall) == (limits.MAX_CPU_S, limits.MAX_WALL_S)
    assert clamped == ("cpu_s", "wall_s")


def test_an_ordinary_size_is_not_clamped() -> None:
    cpu, wall, clamped = call_limits(100.0)
    assert cpu == 7.0 and wall == 19.0 and clamped == ()


@pytest.mark.usefixtures("needs_bwrap")
def test_a_trace_timeout_above_the_maximum_is_clamped_and_reported() -> None:
    out = run_code_exec(0.001, 1, cpu_s=20_005.0)
    assert out["status"] == "ok", out
    assert out["cpu_limit_s"] == limits.MAX_CPU_S
    assert out["limits_clamped"] == "cpu_s,wall_s"
    sandbox = out["sandbox"]
    assert isinstance(sandbox, str) and sandbox.startswith("bwrap"), out
    assert out["wall_limit_s"] == limits.MAX_WALL_S
