"""scripts/gpu_check.py's per-GPU verdict on samples from the fake NVML (the vendor boundary):
exact joules both ways, peak against the limit, and a counter that went backwards fails."""

from __future__ import annotations

from typing import Any

import fake_nvml as fake
import pytest
from script_modules import load_script

from harness.telemetry.gpu import GpuReader
from harness.telemetry.sampler import Sampler

gpu_check = load_script("gpu_check")


def _rows(gpu: Any, seconds: float, step_s: float = 0.1) -> tuple[list[dict[str, Any]], Any]:
    clock = fake.FakeClock()
    nvml = fake.FakeNvml([gpu], clock)
    sampler = Sampler(GpuReader(nvml), None, None, clock.now_ns)
    for _ in range(round(seconds / step_s) + 1):
        sampler.sample_once()
        clock.advance_s(step_s)
    return sampler.rows(), clock


def test_counter_and_integrated_power_agree_exactly_on_a_step_load() -> None:
    # 100 W idle, 600 W from 1 s to 3 s, 100 W after: over the 1-3 s window, 1,200 J.
    gpu = fake.FakeGpu(power_trace=[(0.0, 100.0), (1.0, 600.0), (3.0, 100.0)])
    rows, _ = _rows(gpu, 4.0)
    info = gpu_check.device_check(rows, 0, (1_000_000_000, 3_000_000_000))
    assert info["counter_j"] == pytest.approx(1200.0)
    assert info["power_integrated_j"] == pytest.approx(1200.0, rel=0.06)
    assert info["peak_power_w"] == 600.0 and info["power_limit_w"] == 700.0
    assert info["peak_over_limit_pct"] == pytest.approx(600 / 7)
    assert info["counter_only_increased"] is True and info["passed"] is True


def test_a_counter_that_goes_back_fails_the_check() -> None:
    gpu = fake.FakeGpu(power_trace=[(0.0, 300.0)], counter_reset_at_s=1.05)
    rows, _ = _rows(gpu, 2.0)
    info = gpu_check.device_check(rows, 0, (0, 2_000_000_000))
    assert info["counter_only_increased"] is False and info["counter_resets"] == 1
    assert info["passed"] is False


def test_without_a_counter_there_is_no_agreement_figure_not_zero() -> None:
    gpu = fake.FakeGpu(power_trace=[(0.0, 250.0)], has_energy_counter=False)
    rows, _ = _rows(gpu, 1.0)
    info = gpu_check.device_check(rows, 0, (0, 1_000_000_000))
    assert info["counter_j"] is None and info["disagreement_pct"] is None
    assert info["power_integrated_j"] == pytest.approx(250.0)
    assert info["counter_only_increased"] is None and info["passed"] is True
