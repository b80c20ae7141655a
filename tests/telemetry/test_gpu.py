"""GpuReader and gpu_inventory against the fake NVML (real pynvml error classes and structs)."""

from __future__ import annotations

import pytest
from fake_nvml import (
    FakeClock,
    FakeGpu,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_LibRmVersionMismatch,
)

from harness.telemetry.gpu import GpuReader, architecture_name, gpu_inventory


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
    gpu = FakeGpu(failing={"nvmlDeviceGetPowerUsage": NVMLError_GpuIsLost})
    with GpuReader(FakeNvml([gpu, FakeGpu()], FakeClock())) as reader:
        for _ in range(3):
            lost, ok = reader.read()
            assert lost.power_w is None
            assert lost.energy_j == 0.0  # the counter still reads (no time has passed)
            assert ok.power_w == 100.0
        assert reader.error_counts == {"power_w": 3}


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
