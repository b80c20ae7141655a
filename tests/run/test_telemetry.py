"""A run's telemetry wiring: with GPU nodes' DCGM exporters, their GPUs counted (never this
host's), a last reading after the load, and a coarse exporter refresh said; and the energy
block's steady window from the server rows of the same samples, with the client's records
as the fallback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from dcgm_exposition import DcgmExposition, ServedGpu, serve

from harness.records import RequestRecord, RunClock, record_to_row
from harness.results import table_schema
from harness.run.telemetry import RunTelemetry
from harness.server import ServerInfo
from harness.summary import Energy
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
