"""GpuReader and gpu_inventory against the fake NVML (real pynvml error classes and structs)."""

from __future__ import annotations

import pytest
from fake_nvml import (
    FakeClock,
    FakeGpu,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_FunctionNotFound,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_LibRmVersionMismatch,
    NVMLError_NoPermission,
    NVMLError_NotSupported,
)

from harness.telemetry.gpu import GpuIdentity, GpuReader, architecture_name, gpu_inventory
from harness.telemetry.sampler import Sampler

STEP = [(0.0, 100.0), (1.0, 600.0)]
"""100 W, then 600 W from 1 s: at 1.5 s the instantaneous power is 600 W and the one-second
average (0.5 s of each) 350 W."""


def test_reads_every_field_with_units() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_trace=[(0.0, 200.0)])], clock)
    reader = GpuReader(nvml)
    assert reader.available and reader.device_count == 1
    clock.advance_s(2.5)
    (s,) = reader.read()
    assert s.power_w == 200.0
    assert s.energy_j == 500.0
    assert s.power_limit_w == 700.0
    assert s.sm_clock_mhz == 1980.0 and s.mem_clock_mhz == 2619.0
    assert s.temperature_c == 45.0
    assert s.memory_used_bytes == 10 * 2**30
    assert s.gpu_util_pct is not None and s.mem_util_pct is not None
    reader.close()
    assert nvml.initialised == 0
    assert reader.read() == []


def test_missing_energy_counter_is_none_and_not_retried() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(has_energy_counter=False)], clock)
    with GpuReader(nvml) as reader:
        for _ in range(5):
            (s,) = reader.read()
            assert s.energy_j is None
            assert s.power_w == 100.0
        assert nvml.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
        assert reader.status()["not_supported"] == ["gpu0:energy_j"]
        assert reader.error_counts == {}


def test_failing_read_is_none_and_counted_never_zero() -> None:
    both = {"nvmlDeviceGetPowerUsage": NVMLError_GpuIsLost}
    both["nvmlDeviceGetFieldValues"] = NVMLError_GpuIsLost
    average_only = FakeGpu(failing={"nvmlDeviceGetPowerUsage": NVMLError_GpuIsLost})
    with GpuReader(FakeNvml([FakeGpu(failing=both), average_only], FakeClock())) as reader:
        for _ in range(3):
            lost, instant = reader.read()
            assert lost.power_w is None and lost.power_avg_w is None
            assert lost.power_source is None
            assert lost.energy_j == 0.0  # the counter still reads (no time has passed)
            assert instant.power_w == 100.0 and instant.power_avg_w is None
            assert instant.power_source == "nvml-instant"
        assert reader.error_counts == {"power_avg_w": 6, "power_instant_w": 3}
        assert reader.not_supported == set()


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (NVMLError_LibraryNotFound, "libnvidia-ml.so not found"),
        (NVMLError_DriverNotLoaded, "driver is not loaded"),
        (NVMLError_LibRmVersionMismatch, "versions differ"),
    ],
)
def test_init_failure_is_unavailable_with_reason(error: type[Exception], hint: str) -> None:
    nvml = FakeNvml([FakeGpu()], FakeClock(), init_error=error)
    reader = GpuReader(nvml)
    assert not reader.available
    assert reader.reason is not None and hint in reader.reason
    assert error.__name__ in reader.reason
    assert reader.read() == []
    inv = gpu_inventory(nvml)
    assert inv["available"] is False and hint in inv["reason"]


def test_inventory_decodes_bytes_and_names_architecture() -> None:
    gpus = [FakeGpu(), FakeGpu(name="NVIDIA A100-SXM4-80GB", uuid="GPU-1", architecture=7)]
    inv = gpu_inventory(FakeNvml(gpus, FakeClock()))
    assert inv["available"] is True
    assert inv["driver"] == "550.54.15"
    assert [g["name"] for g in inv["gpus"]] == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"]
    assert inv["gpus"][0]["uuid"].startswith("GPU-0000")
    assert [g["architecture"] for g in inv["gpus"]] == ["Hopper", "Ampere"]
    assert architecture_name(0xFFFFFFFF).startswith("unknown")


def test_real_nvml_here_reports_status() -> None:
    """On this machine (no GPU in CI) the real pynvml says unavailable with a reason."""
    reader = GpuReader()
    if reader.available:
        assert reader.read()
        reader.close()
    else:
        assert reader.reason
        assert gpu_inventory()["available"] is False


def test_power_is_the_instantaneous_field_and_the_average_is_kept_apart() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_trace=STEP)], clock)
    with GpuReader(nvml) as reader:
        clock.advance_s(1.5)
        (s,) = reader.read()
        assert s.power_w == 600.0 and s.power_source == "nvml-instant"
        assert s.power_avg_w == 350.0
        assert reader.status()["power_sources"] == {"0": ["nvml-instant"]}
        assert reader.status()["not_supported"] == []


def test_a_gpu_without_the_instant_field_falls_back_to_the_average_and_says_so() -> None:
    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(power_trace=STEP, has_instant_power=False), FakeGpu()], clock)
    reader = GpuReader(nvml)
    sampler = Sampler(reader, None, None, clock.now_ns)
    for _ in range(3):
        clock.t_ns = 1_500_000_000
        sampler.sample_once()
    old, new = (r for r in sampler.rows()[:2])
    assert old["power_w"] == old["power_avg_w"] == 350.0
    assert old["power_source"] == "nvml-average"
    assert new["power_w"] == 100.0 and new["power_source"] == "nvml-instant"
    status = reader.status()
    assert status["not_supported"] == ["gpu0:power_instant_w"]
    assert status["power_sources"] == {"0": ["nvml-average"], "1": ["nvml-instant"]}
    assert status["read_errors"] == {}  # not supported is not a failure
    assert nvml.calls["nvmlDeviceGetFieldValues"] == 1 + 3  # GPU 0 asked once, not again
    reader.close()


def test_a_driver_without_field_values_falls_back_without_counting_failures() -> None:
    gpu = FakeGpu(failing={"nvmlDeviceGetFieldValues": NVMLError_FunctionNotFound})
    with GpuReader(FakeNvml([gpu], FakeClock())) as reader:
        for _ in range(2):
            (s,) = reader.read()
            assert s.power_w == 100.0 and s.power_source == "nvml-average"
        assert reader.error_counts == {}
        assert reader.status()["not_supported"] == ["gpu0:power_instant_w"]


def test_identities_and_running_processes_with_the_real_shapes() -> None:
    gpus = [
        FakeGpu(uuid=b"GPU-aaaa", compute_pids=[10, 11], graphics_pids=[12]),
        FakeGpu(
            uuid="GPU-bbbb",
            compute_pids=[20],
            failing={"nvmlDeviceGetGraphicsRunningProcesses": NVMLError_NotSupported},
        ),
        FakeGpu(
            failing={
                "nvmlDeviceGetComputeRunningProcesses": NVMLError_NoPermission,
                "nvmlDeviceGetGraphicsRunningProcesses": NVMLError_NoPermission,
            }
        ),
    ]
    nvml = FakeNvml(gpus, FakeClock())
    nvml.nvmlInit()
    procs = nvml.nvmlDeviceGetComputeRunningProcesses(0)
    assert [(p.pid, p.usedGpuMemory) for p in procs] == [(10, 2**30), (11, 2**30)]
    nvml.nvmlShutdown()
    with GpuReader(nvml) as reader:
        first = reader.identities()[0]
        assert first == GpuIdentity(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3")
        assert reader.running_pids(0) == {10, 11, 12}
        assert reader.running_pids(1) == {20}  # graphics not supported: compute alone
        assert reader.processes_problem is None
        assert reader.running_pids(2) is None
        assert reader.processes_problem is not None
        assert "GPU 2" in reader.processes_problem
        assert "NVMLError_NoPermission" in reader.processes_problem
    assert reader.running_pids(0) is None  # closed
