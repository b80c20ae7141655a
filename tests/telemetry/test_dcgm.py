"""GPU nodes' DCGM exporters: their exposition text parsed with units, read over real HTTP from
a local server, energy from the counter by UUID under a fake clock (resets, a metric that
disappears, an exporter that goes down), and the check before a run."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from dcgm_exposition import DcgmExposition, ServedGpu, serve
from fake_nvml import FakeClock, FakeGpu, FakeNvml

from harness.errors import ConfigError
from harness.telemetry.dcgm import (
    ENERGY,
    GPU_UTIL,
    POWER,
    DcgmReader,
    check_exporters,
    dcgm_inventory,
    exporter_url,
    parse_exposition,
)
from harness.telemetry.energy import gpu_energy_j, mean_power_w, summarize_energy
from harness.telemetry.gpu import GpuReader
from harness.telemetry.sampler import Sampler

S = 1_000_000_000
UUID_A0 = "GPU-22dbdd79-f55a-92a8-aa39-322198e72ed6"
UUID_A1 = "GPU-289275cb-a907-ab73-9a95-058ae119f62d"
UUID_B0 = "GPU-f814846a-9bbe-469e-97c3-d037d67c3c32"


def node_a() -> DcgmExposition:
    return DcgmExposition(
        [
            ServedGpu(UUID_A0, 0, 312.5, energy_mj=196_764_132, pod="vllm-0", namespace="llm"),
            ServedGpu(UUID_A1, 1, power_w=67.351, energy_mj=88_000_000, temp_c=None),
        ]
    )


def node_b() -> DcgmExposition:
    return DcgmExposition([ServedGpu(UUID_B0, 0, 250.0, energy_mj=5_000_000)], host="node-b")


@pytest.fixture
def two_nodes() -> Iterator[tuple[DcgmExposition, DcgmExposition, str, str]]:
    a, b = node_a(), node_b()
    with serve(a) as url_a, serve(b) as url_b:
        yield a, b, url_a, url_b


def test_exposition_parses_with_units_labels_and_blanks() -> None:
    samples, exported = parse_exposition(node_a().text(), "http://node-a:9400/metrics")
    first, second = samples
    assert (first.uuid, first.gpu, first.host) == (UUID_A0, 0, "node-a")
    assert first.model_name == "NVIDIA H100 80GB HBM3"
    assert (first.pod, first.namespace) == ("vllm-0", "llm")
    assert first.power_w == 312.5
    assert first.energy_j == 196_764.132  # mJ since boot → J (a counter: parsed as _total)
    assert first.memory_used_bytes == 71232 * 2**20  # MiB → bytes
    assert (first.gpu_util_pct, first.sm_clock_mhz, first.temperature_c) == (87.0, 1980.0, 41.0)
    assert second.temperature_c is None  # DCGM's blank value is no reading, not 9.2e18 °C
    assert second.pod is None and second.power_w == 67.351
    assert (UUID_A1, ENERGY) in exported and (UUID_A1, "DCGM_FI_DEV_GPU_TEMP") in exported


def test_a_page_without_hostname_uses_the_urls_host_and_skips_non_gpu_samples() -> None:
    text = (
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n"
        "# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n"
        f'DCGM_FI_DEV_POWER_USAGE{{gpu="3",UUID="{UUID_B0}",device="nvidia3"}} 99.5\n'
        'DCGM_FI_DEV_POWER_USAGE{nvswitch="0"} 40\n'
    )
    (sample,), _ = parse_exposition(text, "http://10.0.0.7:9400/metrics")
    assert (sample.host, sample.gpu, sample.power_w, sample.energy_j) == ("10.0.0.7", 3, 99.5, None)


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("gpu-node-1", "http://gpu-node-1:9400/metrics"),
        ("gpu-node-1:9500", "http://gpu-node-1:9500/metrics"),
        ("http://gpu-node-1:9400/", "http://gpu-node-1:9400/metrics"),
        ("https://dcgm.example/node-1/metrics", "https://dcgm.example/node-1/metrics"),
    ],
)
def test_exporter_url_forms(given: str, url: str) -> None:
    assert exporter_url(given) == url


@pytest.mark.parametrize("bad", ["", "ftp://node", "http://:9400", "node:port"])
def test_exporter_url_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        exporter_url(bad)


def test_reader_reads_every_node_over_http(
    two_nodes: tuple[DcgmExposition, DcgmExposition, str, str],
) -> None:
    _, _, url_a, url_b = two_nodes
    reader = DcgmReader([url_a, url_b])
    try:
        got = reader.read()
    finally:
        reader.close()
    assert [(s.uuid, s.host, s.url) for s in got] == [
        (UUID_A0, "node-a", url_a),
        (UUID_A1, "node-a", url_a),
        (UUID_B0, "node-b", url_b),
    ]
    status = reader.status()
    assert status["available"] is True and status["problems"] == []
    assert [g["uuid"] for g in status["gpus"]] == [UUID_A0, UUID_A1, UUID_B0]
    assert status["scrape_errors"] == {url_a: 0, url_b: 0}


def test_missing_disappearing_and_down_are_each_reported_once(
    two_nodes: tuple[DcgmExposition, DcgmExposition, str, str],
) -> None:
    a, b, url_a, url_b = two_nodes
    a.hidden = {GPU_UTIL}  # never exported
    reader = DcgmReader([url_a, url_b])
    try:
        for _ in range(3):
            got = reader.read()
        assert all(s.gpu_util_pct is None for s in got if s.url == url_a)
        b.hidden = {ENERGY}  # disappears mid-run
        for _ in range(3):
            got = reader.read()
        assert [s.energy_j for s in got if s.url == url_b] == [None]
        a.gpus.pop()  # a GPU leaves the exporter
        reader.read()
        b.status = 503  # the exporter answers with an error
        for _ in range(2):
            got = reader.read()
        assert {s.uuid for s in got} == {UUID_A0}  # the other node goes on
    finally:
        reader.close()
    problems = reader.problems
    assert sum(f"has no {GPU_UTIL}" in p for p in problems) == 2  # one per GPU of node-a
    assert sum(f"{ENERGY} of node-b GPU 0" in p and "disappeared" in p for p in problems) == 1
    assert sum(UUID_A1 in p and "disappeared from the exporter" in p for p in problems) == 1
    assert sum(p.startswith(f"{url_b}: scrape failed: ClientResponseError") for p in problems) == 1
    assert len(problems) == 5, problems
    assert reader.scrape_errors == {url_a: 0, url_b: 2}


def test_an_exporter_that_stops_answering_is_reported_once_the_rest_goes_on() -> None:
    a, b = node_a(), node_b()
    with serve(a) as url_a, ExitStack() as stack:
        url_b = stack.enter_context(serve(b))
        reader = DcgmReader([url_a, url_b], timeout_s=1.0)
        assert len(reader.read()) == 3
        stack.close()  # node-b's exporter goes away
        for _ in range(3):
            assert [s.uuid for s in reader.read()] == [UUID_A0, UUID_A1]
        reader.close()
    failed = [p for p in reader.problems if p.startswith(f"{url_b}: scrape failed")]
    assert len(failed) == 1 and "ClientConnectorError" in failed[0]
    assert reader.scrape_errors[url_b] == 3


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_kept() -> None:
    a = node_a()
    a.auth = "Basic " + base64.b64encode(b"dcgm:s3cret").decode()
    with serve(a) as url:
        secret = url.replace("http://", "http://dcgm:s3cret@")
        reader = DcgmReader([secret])
        got = reader.read()
        denied = DcgmReader([url])
        denied.read()
        reader.close()
        denied.close()
    assert len(got) == 2 and reader.urls == [url] and got[0].url == url
    assert "s3cret" not in repr(reader.status())
    assert denied.scrape_errors == {url: 1} and "401" in denied.problems[0]


def test_a_gpu_two_exporters_report_is_counted_once() -> None:
    a, also_a = node_a(), node_a()
    with serve(a) as url_a, serve(also_a) as url_alias:
        reader = DcgmReader([url_a, url_alias])
        got = reader.read()
        reader.read()
        reader.close()
    assert [s.url for s in got] == [url_a, url_a]
    twice = [p for p in reader.problems if "is also read from" in p]
    assert len(twice) == 2 and all(f"counted once, from {url_a}" in p for p in twice)


def test_refresh_interval_is_the_time_between_counter_changes() -> None:
    a = node_a()

    def every_third(expo: DcgmExposition) -> None:
        if expo.scrapes % 3 == 0:
            for g in expo.gpus:
                g.energy_mj += 1000

    a.on_scrape = every_third
    with serve(a) as url:
        reader = DcgmReader([url])
        tick = threading.Event()
        for _ in range(10):
            reader.read()
            tick.wait(0.04)
        reader.close()
    refresh = reader.refresh_s
    assert refresh is not None and 0.1 <= refresh < 0.6  # three 40 ms ticks, plus scrapes


def test_check_before_a_run_names_the_bad_exporter() -> None:
    a = node_a()
    with serve(a) as url:
        check_exporters([url])  # answers with GPUs: fine
        inventory = dcgm_inventory([url])
        a.gpus = []
        with pytest.raises(ConfigError, match=rf"--gpu-metrics {url}: no DCGM GPU readings"):
            check_exporters([url])
    assert inventory["available"] is True and inventory["source"] == "dcgm"
    assert [(g["index"], g["name"], g["host"]) for g in inventory["gpus"]] == [
        (0, "NVIDIA H100 80GB HBM3", "node-a"),
        (1, "NVIDIA H100 80GB HBM3", "node-a"),
    ]
    with pytest.raises(ConfigError, match=rf"--gpu-metrics {url}: .*ClientConnectorError"):
        check_exporters([url], timeout_s=1.0)  # nothing listens there now
    assert dcgm_inventory([url], timeout_s=1.0)["available"] is False


def _sample_run(
    expositions: list[DcgmExposition],
    urls: list[str],
    steps: int,
    step_s: float,
    before_step: Any,
) -> list[dict[str, Any]]:
    """Rows of the real sampler (this host's fake NVML GPU and the exporters), one tick per
    step of the fake clock, the exposition's readings set by `before_step(k)` first."""
    clock = FakeClock()
    nvml = GpuReader(FakeNvml([FakeGpu(power_trace=[(0.0, 500.0)])], clock))
    reader = DcgmReader(urls)
    sampler = Sampler(nvml, None, None, clock.now_ns, gpu_metrics=reader)
    for k in range(steps + 1):
        before_step(k)
        clock.t_ns = round(k * step_s * S)
        sampler.sample_once()
        sampler.sample_gpu_metrics_once()
    reader.close()
    assert len(expositions) == len(urls)
    return sampler.rows()


def test_energy_by_uuid_exact_under_a_fake_clock_with_reset_and_a_lost_metric() -> None:
    """Node-a's GPU 0 draws 300 W and its counter resets at 2.5 s; GPU 1 draws 100 W; node-b's
    GPU loses its energy metric after 3 s. Exact joules per UUID, source dcgm-counter, and
    this host's 500 W NVML GPU never added."""
    a = DcgmExposition(
        [ServedGpu(UUID_A0, 0, 300.0, 1_000_000), ServedGpu(UUID_A1, 1, 100.0, 2_000_000)]
    )
    b = DcgmExposition([ServedGpu(UUID_B0, 0, 200.0, 3_000_000)], host="node-b")
    step_s = 0.5

    def readings(k: int) -> None:
        t = k * step_s
        a0, a1 = a.gpus
        a0.energy_mj = round(1_000_000 + 300_000 * t) if t < 2.5 else round(300_000 * (t - 2.5))
        a1.energy_mj = round(2_000_000 + 100_000 * t)
        b.gpus[0].energy_mj = round(3_000_000 + 200_000 * t)
        if t > 3.0:
            b.hidden = {ENERGY, POWER}

    with serve(a) as url_a, serve(b) as url_b:
        rows = _sample_run([a, b], [url_a, url_b], steps=10, step_s=step_s, before_step=readings)
    energy = summarize_energy(rows, (0, 5 * S), idle_window=None, output_tokens=1000, gpus="dcgm")
    # GPU 0: 300 W × 5 s, the 0.5 s across its reset filled from its two power readings
    assert energy["gpu_energy_per_device_j"] == {
        UUID_A0: pytest.approx(1500.0, abs=1e-9),
        UUID_A1: pytest.approx(500.0, abs=1e-9),
        UUID_B0: pytest.approx(600.0, abs=1e-9),  # 200 W for the 3 s it was measured
    }
    assert energy["gpu_energy_j"] == pytest.approx(2600.0, abs=1e-9)
    assert energy["gpu_source"] == "dcgm-counter"
    assert energy["gpu_counter_resets"] == {UUID_A0: 1}
    assert energy["gpu_coverage_frac"] == pytest.approx(0.6)  # node-b: 3 of the 5 s
    assert energy["j_per_output_token"] == pytest.approx(2.6)
    assert energy["peak_power_w"] == pytest.approx(600.0)  # 300 + 100 + 200, never the 500 W
    nvml = summarize_energy(rows, (0, 5 * S))
    assert nvml["gpu_energy_j"] == pytest.approx(2500.0) and nvml["gpu_source"] == "nvml-counter"


def test_exporter_down_all_run_is_unmeasured_never_zero() -> None:
    a = node_a()
    with serve(a) as url:
        a.status = 500
        rows = _sample_run([a], [url], steps=4, step_s=0.5, before_step=lambda k: None)
    energy = summarize_energy(rows, (0, 2 * S), gpus="dcgm")
    assert energy["gpu_energy_j"] is None and energy["gpu_source"] == "unavailable"
    assert energy["avg_power_w"] is None and energy["gpu_coverage_frac"] is None
    assert summarize_energy(rows, (0, 2 * S))["gpu_energy_j"] == pytest.approx(1000.0)  # NVML


def test_a_counter_held_between_refreshes_is_no_reading_not_zero_joules() -> None:
    """The exporter repeats its last reading until it refreshes: a DCGM counter that did not
    move over a window measured nothing there (a powered GPU always draws); NVML's did."""

    def row(t_s: float, uuid: str, energy_j: float, source: str = "dcgm") -> dict[str, Any]:
        return {"t_ns": round(t_s * S), "source": source, "device": 0, "uuid": uuid,
                "energy_j": energy_j, "power_w": 70.0}  # fmt: skip

    rows = [row(t, "GPU-a", 100.0 if t < 2 else 170.0) for t in (0, 1, 2, 3)]
    rows += [row(t, "GPU-b", 10.0 + 50 * t) for t in (0, 1, 2, 3)]
    rows += [row(t, "", 5.0, source="gpu") for t in (0, 1, 2, 3)]
    energy, source, per = gpu_energy_j(rows, (0, 1 * S), "dcgm")
    assert (energy, source, per) == (50.0, "dcgm-counter", {"GPU-b": 50.0})  # GPU-a: no reading
    assert gpu_energy_j(rows, (0, 3 * S), "dcgm")[2] == {"GPU-a": 70.0, "GPU-b": 150.0}
    assert mean_power_w(rows, (0, 1 * S), "dcgm") is None  # not every GPU was read
    assert mean_power_w(rows, (1 * S, 2 * S), "dcgm") == pytest.approx(120.0)
    assert gpu_energy_j(rows, (0, 1 * S))[:2] == (0.0, "nvml-counter")  # NVML's 0 J is 0 J
    block = summarize_energy(rows, (0, 1 * S), idle_window=(0, 1 * S), gpus="dcgm")
    assert block["idle_power_w"] is None and block["gpu_coverage_frac"] == 0.0
