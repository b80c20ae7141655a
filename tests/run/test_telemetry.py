"""A run's telemetry wiring: with GPU nodes' DCGM exporters, their GPUs counted (never this
host's), a last reading after the load, and a coarse exporter refresh said; and the energy
block's steady window from the server rows of the same samples, with the client's records
as the fallback. And on a fake 8-GPU host (the fake NVML at the vendor boundary, a real
process tree for the server): only the server's GPUs count in energy, power and busy_w, the
others are shown apart, and how the server's GPUs were told is in the summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import fake_nvml as fake
import pandas as pd
import pyarrow as pa
import pytest
from dcgm_exposition import DcgmExposition, ServedGpu, serve
from run_children import server_tree
from summary_builders import summary

from harness.capacity import capacity_block, point_figures
from harness.errors import ConfigError
from harness.records import RequestRecord, RunClock, record_to_row
from harness.results import table_schema
from harness.run.telemetry import RunTelemetry
from harness.server import ServerInfo
from harness.summary import Energy, Telemetry
from harness.telemetry.steady import CLIENT_COLUMNS, SteadyRule

S = 1_000_000_000


def test_exporter_gpus_are_the_servers_and_a_coarse_refresh_is_said() -> None:
    node = DcgmExposition([ServedGpu("GPU-a", 0, 300.0, 1_000_000)])

    def every_fourth(expo: DcgmExposition) -> None:
        if expo.scrapes % 4 == 0:
            expo.gpus[0].energy_mj += 15_000  # 15 J per 4 × 50 ms: 75 W as the exporter sees it

    node.on_scrape = every_fourth
    rows: list[dict[str, Any]] = []
    clock = RunClock()
    info = ServerInfo("http://127.0.0.1:9", "tiny", None, None)
    with serve(node) as url:
        telemetry = RunTelemetry(
            info,
            clock.now_ns,
            10.0,
            0.0,
            sink=rows.extend,
            gpu_metrics=[url],
            gpu_metrics_every_s=0.05,
        )
        telemetry.start()
        threading.Event().wait(1.0)
        stop_ns = clock.now_ns()
        telemetry.stop()
        telemetry.stop()  # safe twice: no second last reading
    dcgm = [r for r in rows if r["source"] == "dcgm"]
    assert dcgm[-1]["t_ns"] >= stop_ns  # the last reading came after the load
    assert sum(r["t_ns"] >= stop_ns for r in dcgm) == 1
    t0 = dcgm[0]["t_ns"]
    requests = pd.DataFrame(
        {
            "warmup": [False],
            "sent_ns": [t0 + 100_000_000],
            "done_ns": [t0 + 900_000_000],
            "ok": [True],
            "output_tokens": [100],
        }
    )
    energy = telemetry.energy(pd.DataFrame(rows), requests, None, None)
    assert energy is not None and energy["gpu_source"] == "dcgm-counter"
    assert set(energy["gpu_energy_per_device_j"]) == {"GPU-a"}
    note = energy["gpu_source_note"]
    assert note.startswith(f"GPUs of the DCGM exporters ({url}): 1 on node-a;")
    assert "refresh their readings every" in note and "-c 1000" in note
    status = telemetry.status()
    assert status["dcgm"]["every_s"] == 0.05 and status["dcgm"]["refresh_s"] is not None
    assert [g["uuid"] for g in status["dcgm"]["gpus"]] == ["GPU-a"]
    warning = [p for p in status["problems"] if "refresh their readings" in p]
    assert len(warning) == 1 and warning == [
        p for p in status["dcgm"]["problems"] if "refresh" in p
    ]
    assert telemetry.idle_s == 0.0


@pytest.fixture
def telemetry() -> Iterator[RunTelemetry]:
    info = ServerInfo(
        base_url="http://127.0.0.1:9", model="m", max_model_len=None, server_version=None
    )
    run = RunTelemetry(info, time.perf_counter_ns, 10.0, 0.0, steady=SteadyRule(0.8, 10.0))
    try:
        yield run
    finally:
        run.stop()


def _requests() -> list[RequestRecord]:
    """Twenty requests sent 0..19 s, one token a second each from 1 s after its send."""
    out = []
    for i in range(20):
        chunks = [(i + 1 + k) * S for k in range(10)]
        out.append(
            RequestRecord(
                request_id=f"r{i}",
                session_id=f"s{i}",
                step_index=0,
                api="completions",
                prompt_tokens_expected=100,
                output_tokens_expected=10,
                scheduled_ns=i * S,
                sent_ns=i * S,
                first_token_ns=chunks[0],
                last_token_ns=chunks[-1],
                done_ns=chunks[-1],
                chunk_ns=chunks,
                chunk_tokens=[1] * 10,
                prompt_tokens=100,
                output_tokens=10,
                http_status=200,
            )
        )
    return out


def _samples(counters: bool) -> pd.DataFrame:
    """GPU at 250 W sampled at 10 Hz over 0..30 s (counter in J), CPU rows, and one server
    scrape a second: 10 running from 5 s to 20 s, 10 output tokens a second."""
    rows: list[dict[str, Any]] = []
    for k in range(301):
        t = k * S // 10
        rows.append(
            {"t_ns": t, "source": "gpu", "device": 0, "power_w": 250.0, "energy_j": 25.0 * k}
        )
        rows.append({"t_ns": t, "source": "cpu", "device": None, "power_w": None})
    for k in range(31):
        running = 10.0 if 5 <= k <= 20 else 2.0
        rows.append(
            {
                "t_ns": k * S,
                "source": "server",
                "device": None,
                "requests_running": running,
                "generation_tokens_total": 10.0 * k if counters else None,
                "prompt_tokens_total": 100.0 * k if counters else None,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values("t_ns", kind="stable").reset_index(drop=True)


def test_the_energy_block_carries_the_steady_window(telemetry: RunTelemetry) -> None:
    requests = pd.DataFrame([record_to_row(r) for r in _requests()])
    block = telemetry.energy(_samples(counters=True), requests, None, None)
    assert block is not None
    energy = Energy.model_validate(block)
    assert energy.window_ns == [0, 29 * S] and energy.gpu_energy_j == pytest.approx(7250.0)
    steady = energy.steady
    assert steady is not None and steady.window_ns == [5 * S, 20 * S]
    assert (steady.frac, steady.min_s) == (0.8, 10.0)
    assert steady.gpu_energy_j == pytest.approx(250.0 * 15) and steady.avg_power_w == 250.0
    assert steady.tokens_source == "server-counter"
    assert (steady.prompt_tokens, steady.output_tokens) == (1500, 150)
    assert steady.j_per_output_token == pytest.approx(3750.0 / 150)


def test_without_server_counters_the_client_records_count_the_tokens(
    telemetry: RunTelemetry,
) -> None:
    records = _requests()
    requests = pd.DataFrame([record_to_row(r) for r in records])
    table = pa.Table.from_pylist(
        [record_to_row(r) for r in records], schema=table_schema("requests")
    )
    block = telemetry.energy(
        _samples(counters=False),
        requests,
        None,
        None,
        client_records=lambda: table.select(list(CLIENT_COLUMNS)),
    )
    assert block is not None
    steady = Energy.model_validate(block).steady
    assert steady is not None and steady.tokens_source == "client-chunks"
    # tokens arriving in (5 s, 20 s]: each second from 6 s to 20 s, every request then
    # streaming (sent 10 s or less before) gives one
    expected = sum(1 for r in records for t in r.chunk_ns if 5 * S < t <= 20 * S)
    assert steady.output_tokens == expected == 140
    # prompts whose first token arrived in the window: requests sent 5..19 s
    assert steady.prompt_tokens == 100 * 15


GPU_W = {i: 100.0 + 10 * i for i in range(8)}
"""The fake host's GPU i draws 100 + 10·i W throughout."""
UUID = {i: f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}" for i in range(8)}


def _info(**launch: Any) -> ServerInfo:
    return ServerInfo("http://127.0.0.1:9", "m", None, None, launch=dict(launch))


def _two_requests() -> pd.DataFrame:
    """Two measured requests: the window is 1 s → 3 s; 200 output tokens."""
    return pd.DataFrame(
        {
            "warmup": [False, False],
            "sent_ns": [1 * S, int(1.5 * S)],
            "done_ns": [3 * S, int(2.5 * S)],
            "ok": [True, True],
            "output_tokens": [120, 80],
        }
    )


def _run(telemetry: RunTelemetry, clock: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample 0 → 4 s at 10 Hz on the fake clock (the idle baseline the first second), then
    the energy block and the status as the run's summary takes them, both checked against
    the schema."""
    telemetry.idle_window = (0, 1 * S)
    for k in range(41):
        clock.t_ns = k * S // 10
        telemetry.sampler.sample_once()
    telemetry.stop()
    samples = pd.DataFrame(telemetry.sampler.rows())
    energy = telemetry.energy(samples, _two_requests(), None, None)
    assert energy is not None
    status = telemetry.status()
    Energy.model_validate(energy)
    Telemetry.model_validate(status)
    return energy, status


def test_the_servers_two_gpus_of_eight_give_the_energy_and_busy_w() -> None:
    """Done when: the server's processes hold GPUs 2 and 5 of 8: energy and busy_w are those
    two GPUs', exactly (120 W + 150 W over 2 s), and the other six never enter them."""
    clock = fake.FakeClock()
    with server_tree(2) as (pid, (worker_a, worker_b)):
        nvml = fake.eight_gpu_host(
            clock, gpu2={"compute_pids": [worker_a]}, gpu5={"compute_pids": [worker_b]}
        )
        telemetry = RunTelemetry(_info(kind="attached"), clock.now_ns, 10.0, 0.0, pid, nvml=nvml)
        energy, status = _run(telemetry, clock)
    assert energy["gpu_devices"] == [2, 5]
    assert energy["gpu_source"] == "nvml-counter"
    assert energy["gpu_source_note"] == (
        "GPUs 2, 5 of the 8 on this host, the server's (by processes); the others are shown apart"
    )
    assert energy["gpu_energy_per_device_j"] == {"2": 240.0, "5": 300.0}
    assert energy["gpu_energy_j"] == 540.0
    assert energy["avg_power_w"] == 270.0
    assert energy["idle_power_w"] == pytest.approx(270.0)
    assert energy["peak_power_w"] == 270.0
    assert energy["j_per_output_token"] == pytest.approx(540.0 / 200)
    other = energy["other_gpus"]
    others_w = sum(GPU_W[i] for i in (0, 1, 3, 4, 6, 7))
    assert other["devices"] == [0, 1, 3, 4, 6, 7]
    assert other["gpu_energy_j"] == pytest.approx(2 * others_w)
    assert other["avg_power_w"] == pytest.approx(others_w)
    assert set(other["gpu_energy_per_device_j"]) == {"0", "1", "3", "4", "6", "7"}

    attribution = status["gpu_attribution"]
    assert attribution["method"] == "processes" and attribution["reason"] is None
    assert [(g["index"], g["uuid"]) for g in attribution["server_gpus"]] == [
        (2, UUID[2]),
        (5, UUID[5]),
    ]
    assert attribution["server_pids_on_gpus"] == sorted([worker_a, worker_b])
    assert status["gpu"]["devices"] == 8 and status["gpu"]["available"] is True
    assert status["gpu"]["power_sources"]["2"] == ["nvml-instant"]

    run = summary(energy=energy, telemetry=status, slo_attainment=1.0)
    point = point_figures(4.0, "points/rate-4", run, 0.9)
    assert point["gpu_devices"] == 2 and point["gpu_attribution"] == "processes"
    # NVML sees 8 GPUs, so without attribution the power could not be the server's
    note = "NVML sees 8 GPUs but the server uses 2"
    block = capacity_block([point], 2, "gpu", "H100-SXM", power_note=note)
    assert block["busy_w"] == 135.0  # per GPU of the server's two
    assert block["busy_w_source"] == "nvml-counter"
    assert block["idle_w"] == pytest.approx(135.0)
    assert block["power_note"] is None
    # capacity per 8 devices but power of 2 GPUs: not divided on different bases
    block = capacity_block([point], 8, "gpu", "H100-SXM")
    assert block["busy_w"] is None and block["idle_w"] is None
    assert "give --devices 2" in block["power_note"]


def test_an_attached_server_without_a_pid_counts_every_gpu_and_says_why() -> None:
    clock = fake.FakeClock()
    nvml = fake.eight_gpu_host(clock, gpu2={"compute_pids": [1]})
    telemetry = RunTelemetry(_info(kind="attached"), clock.now_ns, 10.0, 0.0, nvml=nvml)
    energy, status = _run(telemetry, clock)
    assert energy.get("gpu_devices") is None
    assert energy["gpu_energy_j"] == pytest.approx(2 * sum(GPU_W.values()))
    assert "other_gpus" not in energy
    assert energy["gpu_source_note"].startswith(
        "all 8 GPUs NVML sees on this host: the server's could not be told (the server was "
        "attached by URL with no --server-pid"
    )
    attribution = status["gpu_attribution"]
    assert attribution["method"] == "unknown" and attribution["server_gpus"] == []
    assert "--server-pid" in attribution["reason"]
    run = summary(energy=energy, telemetry=status, slo_attainment=1.0)
    assert run.energy is not None and run.energy.gpu_devices is None
    point = point_figures(1.0, "points/rate-1", run, 0.9)
    assert point["gpu_devices"] is None and point["gpu_attribution"] == "unknown"
    note = "NVML sees 8 GPUs but the server uses 2"
    block = capacity_block([point], 2, "gpu", None, power_note=note)
    assert block["busy_w"] is None and block["power_note"] == note


def test_a_launched_server_on_cuda_visible_devices_by_uuid() -> None:
    """No process is seen on a GPU (NVML lists host pids in a container): the launch's
    CUDA_VISIBLE_DEVICES, by UUID in CUDA's order, names them."""
    clock = fake.FakeClock()
    nvml = fake.eight_gpu_host(clock)
    with server_tree(1) as (pid, _):
        env = {"CUDA_VISIBLE_DEVICES": f"{UUID[5]},{UUID[2]}"}
        info = _info(kind="launched", pid=pid, env=env)
        telemetry = RunTelemetry(info, clock.now_ns, 10.0, 0.0, nvml=nvml)
        energy, status = _run(telemetry, clock)
    assert status["gpu_attribution"]["method"] == "CUDA_VISIBLE_DEVICES"
    assert energy["gpu_devices"] == [2, 5] and energy["gpu_energy_j"] == 540.0


def test_a_launched_server_on_cuda_visible_devices_by_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inherited from the harness's own environment; indices read as NVML's because every
    GPU is the same model, and the reason says so."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    clock = fake.FakeClock()
    nvml = fake.eight_gpu_host(clock)
    with server_tree(1) as (pid, _):
        info = _info(kind="embedded", pid=pid, env={})
        telemetry = RunTelemetry(info, clock.now_ns, 10.0, 0.0, nvml=nvml)
        energy, status = _run(telemetry, clock)
    attribution = status["gpu_attribution"]
    assert attribution["method"] == "CUDA_VISIBLE_DEVICES"
    assert "fastest-first order is the PCI order" in attribution["reason"]
    assert energy["gpu_devices"] == [2, 5] and energy["gpu_energy_j"] == 540.0


def test_gpus_named_on_the_command_line_are_the_servers() -> None:
    clock = fake.FakeClock()
    nvml = fake.eight_gpu_host(clock, gpu0={"compute_pids": [1]})
    telemetry = RunTelemetry(
        _info(kind="attached"), clock.now_ns, 10.0, 0.0, nvml=nvml, gpus=(UUID[5], "2")
    )
    energy, status = _run(telemetry, clock)
    assert status["gpu_attribution"]["method"] == "--gpus"
    assert energy["gpu_energy_j"] == 540.0


def test_unknown_gpus_named_are_an_error_naming_the_option() -> None:
    clock = fake.FakeClock()
    with pytest.raises(ConfigError, match=r"--gpus 2,9: no GPU 9 on this host"):
        RunTelemetry(
            _info(kind="attached"),
            clock.now_ns,
            10.0,
            0.0,
            nvml=fake.eight_gpu_host(clock),
            gpus=("2", "9"),
        )


def test_gpus_beside_dcgm_exporters_are_refused_before_the_run() -> None:
    from types import SimpleNamespace

    from harness.run.prepare import check_gpus

    plan = SimpleNamespace(gpus=("0",), gpu_metrics=("http://node-a:9400/metrics",))
    with pytest.raises(ConfigError, match="--gpus names GPUs of this host, but with --gpu-metrics"):
        check_gpus(plan)  # type: ignore[arg-type]
