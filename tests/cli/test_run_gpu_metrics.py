"""`harness run --gpu-metrics`: the GPU nodes' DCGM exporters as the server's GPUs, end to end
against the real vLLM server with served exposition text (integration), and an exporter
that does not answer stopping the run before its directory exists."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from dcgm_exposition import DcgmExposition, ServedGpu, serve

from harness.cli import main
from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


class StepOnLoad:
    """Steps each GPU's energy counter by a known amount once the run is under load, with a
    reading of the old value on both sides of the window's start: the exporter sees the first
    completed request in the run's journal, serves the old value twice more (the second of
    those scrapes began after the load did), then the new one for good."""

    def __init__(self, journal: Path, steps_mj: dict[str, int]) -> None:
        self.journal = journal
        self.steps_mj = steps_mj
        self.after_load = 0
        self.stepped_unix_ns: int | None = None

    def __call__(self, expo: DcgmExposition) -> None:
        if self.stepped_unix_ns is not None:
            return
        if self.after_load == 0 and not (self.journal.exists() and self.journal.stat().st_size):
            return
        self.after_load += 1
        if self.after_load == 3:
            for gpu in expo.gpus:
                gpu.energy_mj += self.steps_mj[gpu.uuid]
            self.stepped_unix_ns = time.time_ns()


@pytest.mark.integration
def test_run_reports_the_served_counters_energy_exactly(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    """Two nodes' exporters step their GPUs' counters by 4321 J, 1234.5 J and 777 J during the
    load and not outside it: the run reports exactly those joules per UUID, source
    dcgm-counter, and says which GPUs it counted."""
    out = tmp_path / "dcgm-run"
    a0, a1 = "GPU-22dbdd79-f55a-92a8-aa39-322198e72ed6", "GPU-289275cb-a907-ab73-9a95-058ae119f62d"
    b0 = "GPU-f814846a-9bbe-469e-97c3-d037d67c3c32"
    steps = {a0: 4_321_000, a1: 1_234_500, b0: 777_000}
    node_a = DcgmExposition(
        [ServedGpu(a0, 0, 312.5, 1_000_000_000), ServedGpu(a1, 1, 67.25, 2_000_000_000)]
    )
    node_b = DcgmExposition([ServedGpu(b0, 0, 250.0, 3_000_000_000)], host="node-b")
    hooks = [StepOnLoad(out / "requests.partial.jsonl", steps) for _ in range(2)]
    node_a.on_scrape, node_b.on_scrape = hooks
    with serve(node_a) as url_a, serve(node_b) as url_b:
        code = main(
            [
                "run",
                str(AZURE),
                "--server",
                vllm_server.base_url,
                "--max-requests",
                "20",  # seconds of load, so a busy host's scrapes still see it step
                "--time-scale",
                "0",
                "--max-concurrency",
                "1",  # one at a time: seconds of load after the first completion
                "--idle-baseline",
                "0.5",
                "--gpu-metrics",
                url_a,
                "--gpu-metrics",
                url_b,
                "--gpu-metrics-every",
                "0.1",
                "--no-report",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    energy, window = summary["energy"], summary["energy"]["window_ns"]
    for hook in hooks:  # the precondition of exactness: the step fell inside the window
        assert hook.stepped_unix_ns is not None, "the exporter never saw the load"
        assert hook.stepped_unix_ns < manifest["anchor"]["unix_ns"] + window[1]
    assert energy["gpu_source"] == "dcgm-counter"
    assert energy["gpu_energy_per_device_j"] == {
        a0: pytest.approx(4321.0, abs=1e-9),
        a1: pytest.approx(1234.5, abs=1e-9),
        b0: pytest.approx(777.0, abs=1e-9),
    }
    assert energy["gpu_energy_j"] == pytest.approx(6332.5, abs=1e-9)
    duration_s = (window[1] - window[0]) / 1e9
    assert energy["avg_power_w"] == pytest.approx(6332.5 / duration_s)
    assert energy["peak_power_w"] == pytest.approx(312.5 + 67.25 + 250.0)
    # the served counters stood still before the load: a held reading, not a GPU at 0 W
    assert energy["idle_power_w"] is None and energy["gpu_dynamic_energy_j"] is None
    assert energy["gpu_coverage_frac"] == pytest.approx(1.0)
    assert url_a in energy["gpu_source_note"] and "node-a, node-b" in energy["gpu_source_note"]
    dcgm = summary["telemetry"]["dcgm"]
    assert dcgm["urls"] == [url_a, url_b] and dcgm["available"] is True
    assert [(g["uuid"], g["host"]) for g in dcgm["gpus"]] == [
        (a0, "node-a"),
        (a1, "node-a"),
        (b0, "node-b"),
    ]
    assert dcgm["scrape_errors"] == {url_a: 0, url_b: 0}
    (idle,) = dcgm["problems"]
    assert idle.startswith("idle power not measured: the DCGM exporters' energy counters")
    assert idle in summary["telemetry"]["problems"]
    assert manifest["gpu_metrics"]["available"] is True
    assert len(manifest["gpu_metrics"]["gpus"]) == 3
    samples = pd.read_parquet(out / "telemetry.parquet")
    rows = samples[samples["source"] == "dcgm"]
    assert set(rows["uuid"]) == {a0, a1, b0} and set(rows["energy_source"]) == {"dcgm-counter"}
    assert len(rows) >= 3 * 10  # a tenth of a second apart over a run of over a second


def test_an_exporter_that_does_not_answer_stops_the_run_before_its_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(DcgmExposition([])) as url:
        pass  # closed again: nothing listens at the URL now
    out = tmp_path / "never"
    argv = ["run", str(AZURE), "--server", "http://127.0.0.1:9", "--gpu-metrics", url]
    code = main([*argv, "--max-requests", "1", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--gpu-metrics {url}: no DCGM GPU readings there" in err
    assert "ClientConnectorError" in err and not out.exists()


def test_a_bad_gpu_metrics_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(AZURE), "--gpu-metrics", "ftp://node-a"])
    assert exit_info.value.code == 2
    assert "--gpu-metrics: 'ftp://node-a': not an http(s) URL" in capsys.readouterr().err
