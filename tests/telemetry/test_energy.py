"""Energy arithmetic over telemetry rows, with exact joules under the fake NVML clock."""

from __future__ import annotations

from typing import Any

import pytest
from fake_nvml import FakeClock, FakeGpu, FakeNvml

from harness.telemetry.energy import (
    cpu_energy_j,
    energy_over_intervals_j,
    gpu_energy_j,
    merge_intervals,
    summarize_energy,
)
from harness.telemetry.gpu import GpuReader
from harness.telemetry.sampler import Sampler

S = 1_000_000_000


def sampled_rows(
    gpus: list[FakeGpu], seconds: float, rate_hz: float = 10.0
) -> list[dict[str, Any]]:
    """Rows from the real sampler's tick, driven step by step by the fake clock."""
    clock = FakeClock()
    reader = GpuReader(FakeNvml(gpus, clock))
    sampler = Sampler(reader, None, None, clock.now_ns, rate_hz=rate_hz)
    step_ns = round(S / rate_hz)
    for k in range(round(seconds * rate_hz) + 1):
        clock.t_ns = k * step_ns
        sampler.sample_once()
    return sampler.rows()


def test_constant_200w_for_2_5s_is_500j_by_counter_and_by_power() -> None:
    rows = sampled_rows([FakeGpu(power_trace=[(0.0, 200.0)], energy_offset_mj=12_345_678)], 2.5)
    energy, source, per = gpu_energy_j(rows, (0, int(2.5 * S)))
    assert (energy, source, per) == (500.0, "nvml-counter", {0: 500.0})

    no_counter = sampled_rows([FakeGpu(power_trace=[(0.0, 200.0)], has_energy_counter=False)], 2.5)
    assert all(r["energy_j"] is None for r in no_counter)
    assert {r["power_source"] for r in no_counter} == {"nvml-instant"}
    assert gpu_energy_j(no_counter, (0, int(2.5 * S)))[:2] == (500.0, "nvml-power")


def test_counter_reset_starts_a_new_segment() -> None:
    gpu = FakeGpu(power_trace=[(0.0, 200.0)], energy_offset_mj=9_000_000, counter_reset_at_s=1.05)
    rows = sampled_rows([gpu], 2.0)
    counters = [r["energy_j"] for r in rows]
    assert counters[11] < counters[10]  # the counter really went backwards
    energy, source, _ = gpu_energy_j(rows, (0, 2 * S))
    # 1.0 s + 0.95 s from the two segments, the 0.1 s gap filled from power samples
    assert source == "nvml-counter"
    assert energy == pytest.approx(400.0, abs=1e-9)
    assert summarize_energy(rows, (0, 2 * S))["gpu_counter_resets"] == {"0": 1}


def test_two_gpus_one_without_counter_falls_back_per_gpu() -> None:
    gpus = [FakeGpu(power_trace=[(0.0, 300.0)]), FakeGpu(has_energy_counter=False)]
    energy, source, per = gpu_energy_j(sampled_rows(gpus, 1.0), (0, S))
    assert per == {0: 300.0, 1: 100.0}
    assert energy == 400.0 and source == "nvml-power"


def test_summary_idle_peak_per_unit_and_tools() -> None:
    # idle 60 W for 1 s, then 260 W from 1 s to 3 s
    gpu = FakeGpu(power_trace=[(0.0, 60.0), (1.0, 260.0)], power_limit_mw=400_000)
    rows = sampled_rows([gpu], 3.0)
    s = summarize_energy(
        rows,
        window=(1 * S, 3 * S),
        idle_window=(0, 1 * S),
        output_tokens=1040,
        requests=4,
        sessions=2,
        tool_windows=[(int(1.5 * S), 2 * S), (int(1.8 * S), int(2.5 * S)), (0, int(1.2 * S))],
    )
    assert s["gpu_energy_j"] == pytest.approx(520.0)
    assert s["gpu_source"] == "nvml-counter"
    assert s["idle_power_w"] == pytest.approx(60.0)
    assert s["avg_power_w"] == pytest.approx(260.0)
    assert s["peak_power_w"] == 260.0
    assert s["gpu_dynamic_energy_j"] == pytest.approx(400.0)
    assert s["j_per_output_token"] == pytest.approx(0.5)
    assert s["j_per_request"] == pytest.approx(130.0)
    assert s["j_per_session"] == pytest.approx(260.0)
    # union clipped to the window: [1.0, 1.2] + [1.5, 2.5] = 1.2 s at 260 W
    assert s["tool_time_s"] == pytest.approx(1.2)
    assert s["gpu_energy_while_tools_j"] == pytest.approx(312.0)
    assert s["cpu_energy_j"] is None and s["cpu_source"] == "unavailable"


def test_unavailable_is_none_never_zero() -> None:
    cpu_only = [{"t_ns": 0, "source": "cpu", "device": None, "system_cpu_pct": 5.0}]
    s = summarize_energy(cpu_only, (0, S), idle_window=(0, S), output_tokens=10, requests=1)
    for key in ("gpu_energy_j", "idle_power_w", "avg_power_w", "peak_power_w", "cpu_energy_j"):
        assert s[key] is None, key
    assert s["j_per_output_token"] is None and s["gpu_energy_while_tools_j"] is None
    assert s["gpu_source"] == "unavailable" and s["cpu_source"] == "unavailable"
    assert energy_over_intervals_j(cpu_only, [(0, S)]) is None


def test_rapl_energy_sums_zones_and_survives_a_decrease() -> None:
    rows = [
        {"t_ns": t * S, "source": "rapl", "device": z, "energy_j": e}
        for z, series in ((0, [0.0, 10.0, 20.0]), (1, [5.0, 1.0, 4.0]))
        for t, e in enumerate(series)
    ]
    assert cpu_energy_j(rows, (0, 2 * S)) == 20.0 + 3.0


def test_merge_intervals() -> None:
    assert merge_intervals([(5, 7), (1, 3), (2, 4), (7, 8), (9, 9)]) == [(1, 4), (5, 8)]
    assert merge_intervals([(0, 10)], clip=(2, 5)) == [(2, 5)]
