"""A run's telemetry wiring with GPU nodes' DCGM exporters: their GPUs counted (never this
host's), a last reading after the load, and a coarse exporter refresh said."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
from dcgm_exposition import DcgmExposition, ServedGpu, serve

from harness.records import RunClock
from harness.run.telemetry import RunTelemetry
from harness.server import ServerInfo


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
