"""The background Sampler: real CPU reader and RAPL path, fake NVML, a failing /metrics scrape."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from dcgm_exposition import DcgmExposition, ServedGpu, serve
from fake_nvml import FakeClock, FakeGpu, FakeNvml

from harness.records import RunClock
from harness.telemetry.cpu import CpuReader
from harness.telemetry.dcgm import DcgmReader
from harness.telemetry.gpu import GpuReader
from harness.telemetry.rapl import RaplReader
from harness.telemetry.sampler import Sampler


def test_samples_at_10hz_then_stops_cleanly(tmp_path: Path) -> None:
    clock = RunClock()
    gpu = GpuReader(FakeNvml([FakeGpu(), FakeGpu(has_energy_counter=False)], FakeClock()))
    scrapes = {"n": 0}

    def scrape() -> dict[str, float]:
        scrapes["n"] += 1
        if scrapes["n"] == 2:
            raise ConnectionError("server went away")
        return {"vllm:num_requests_running": 3.0, "vllm:kv_cache_usage_perc": 0.25}

    sampler = Sampler(
        gpu,
        CpuReader(),
        RaplReader(tmp_path / "no-powercap"),
        clock.now_ns,
        rate_hz=10.0,
        metrics_scrape=scrape,
        metrics_every_s=0.3,
    )
    sampler.start()
    threading.Event().wait(1.0)
    sampler.stop()
    assert not any(t.name.startswith("telemetry-") for t in threading.enumerate())

    rows = sampler.rows()
    by_source: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_source.setdefault(str(row["source"]), []).append(row)
    ticks = len(by_source["cpu"])
    assert 8 <= ticks <= 12
    assert len(by_source["gpu"]) == 2 * ticks
    assert "rapl" not in by_source
    assert [r["t_ns"] for r in rows] == sorted(r["t_ns"] for r in rows)
    assert all(set(r) == set(rows[0]) for r in rows)  # one schema for telemetry.parquet
    assert by_source["gpu"][1]["energy_j"] is None and by_source["gpu"][1]["power_w"] == 100.0
    server = by_source["server"]
    assert len(server) >= 2 and server[0]["requests_running"] == 3.0
    assert server[0]["kv_cache_usage_frac"] == 0.25 and server[0]["requests_waiting"] is None

    assert sum("rapl unavailable" in p for p in sampler.problems) == 1
    assert sum("server read failed: ConnectionError" in p for p in sampler.problems) == 1
    cost = sampler.overhead()
    assert cost["samples"] == ticks and 0.9 <= cost["wall_s"] <= 2.0
    assert 0.0 < cost["cpu_s"] < cost["wall_s"]
    sampler.stop()  # idempotent


def test_failing_source_reported_once_rest_continues() -> None:
    class BrokenCpu(CpuReader):
        """A CPU reader whose read always raises (stands in for psutil breaking)."""

        def read(self, server_pid: int | None = None) -> object:  # type: ignore[override]
            raise OSError("proc unreadable")

    clock = FakeClock()
    gpu = GpuReader(FakeNvml([FakeGpu()], clock))
    sampler = Sampler(gpu, BrokenCpu(), None, clock.now_ns)
    for _ in range(5):
        clock.advance_s(0.1)
        sampler.sample_once()
    assert sampler.problems == ["cpu read failed: OSError: proc unreadable"]
    assert len([r for r in sampler.rows() if r["source"] == "gpu"]) == 5


def test_rejects_bad_rates() -> None:
    with pytest.raises(ValueError):
        Sampler(None, None, None, RunClock().now_ns, rate_hz=0)
    with pytest.raises(ValueError):
        Sampler(None, None, None, RunClock().now_ns, gpu_metrics_every_s=0)


def test_gpu_nodes_are_scraped_in_their_own_thread_at_their_own_rate() -> None:
    node = DcgmExposition([ServedGpu("GPU-a", 0, 300.0, 1_000_000)])
    clock = RunClock()
    with serve(node) as url:
        reader = DcgmReader([url])
        sampler = Sampler(
            None, CpuReader(), None, clock.now_ns, gpu_metrics=reader, gpu_metrics_every_s=0.25
        )
        sampler.start()
        threading.Event().wait(1.0)
        sampler.stop()
        reader.close()
    assert not any(t.name == "telemetry-gpu-metrics" for t in threading.enumerate())
    rows = sampler.rows()
    dcgm = [r for r in rows if r["source"] == "dcgm"]
    assert 3 <= len(dcgm) <= 6 and 8 <= sum(r["source"] == "cpu" for r in rows) <= 12
    first = dcgm[0]
    assert (first["uuid"], first["host"], first["device"], first["power_w"]) == (
        "GPU-a",
        "node-a",
        0,
        300.0,
    )
    assert first["energy_j"] == 1000.0 and first["energy_source"] == "dcgm-counter"
    assert first["power_source"] == "dcgm-power" and "url" not in first and "gpu" not in first
    assert all(set(r) == set(rows[0]) for r in rows)  # one schema for telemetry.parquet


def test_a_sink_takes_every_row_and_the_sampler_keeps_none() -> None:
    taken: list[dict[str, object]] = []
    clock = RunClock()
    sampler = Sampler(None, CpuReader(), None, clock.now_ns, sink=taken.extend)
    for _ in range(3):
        sampler.sample_once()
    assert len(taken) == 3 and all(r["source"] == "cpu" for r in taken)
    assert sampler.rows() == []


def test_a_failing_sink_is_reported_once_and_sampling_goes_on() -> None:
    def sink(rows: list[dict[str, object]]) -> None:
        raise OSError("disk full")

    sampler = Sampler(None, CpuReader(), None, RunClock().now_ns, sink=sink)
    sampler.sample_once()
    sampler.sample_once()
    assert sampler.problems == ["telemetry samples could not be written: OSError: disk full"]
