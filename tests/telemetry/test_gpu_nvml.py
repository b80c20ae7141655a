"""GpuReader against the real NVML of a GPU node (marked `gpu`; skipped where NVML does not
initialise, e.g. on the CPU-only CI machine)."""

from __future__ import annotations

import time

import pytest

from harness.telemetry.gpu import GpuReader, gpu_inventory

pytestmark = pytest.mark.gpu


@pytest.fixture
def reader() -> GpuReader:
    gpu = GpuReader()
    if not gpu.available:
        pytest.skip(f"no NVML here: {gpu.reason}")
    return gpu


def test_real_samples_are_plausible_and_the_counter_only_rises(reader: GpuReader) -> None:
    try:
        first = reader.read()
        time.sleep(1.0)
        second = reader.read()
    finally:
        reader.close()
    assert len(first) == len(second) == reader.device_count >= 1
    for a, b in zip(first, second, strict=True):
        assert b.power_w is not None and 0 < b.power_w < 2000
        if b.power_limit_w is not None:
            assert b.power_w <= 1.2 * b.power_limit_w
        if a.energy_j is not None and b.energy_j is not None:
            assert b.energy_j >= a.energy_j  # joules since driver load, never backwards
        assert b.memory_used_bytes is None or b.memory_used_bytes > 0


def test_real_inventory_names_every_gpu(reader: GpuReader) -> None:
    reader.close()
    inventory = gpu_inventory()
    assert inventory["available"] and inventory["driver"]
    assert all(g["name"] and g["uuid"].startswith("GPU-") for g in inventory["gpus"])
