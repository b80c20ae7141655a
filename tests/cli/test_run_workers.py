"""`harness run --workers N` against the real vLLM CPU server (integration): the same requests
as one worker, the trace's timing kept, a dead worker's requests recorded, Ctrl-C stopping
every worker."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from run_children import start_run, wait_for_records

from harness.cli import main
from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


def _azure30(server: ServerInfo, out: Path, workers: int) -> int:
    return main(
        [
            "run",
            str(AZURE),
            "--server",
            server.base_url,
            "--max-requests",
            "30",
            "--time-scale",
            "1",
            "--workers",
            str(workers),
            "--out",
            str(out),
        ]
    )


@pytest.mark.integration
def test_two_workers_send_the_trace_as_one_does(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """The first 30 Azure requests at their recorded times: with two workers the token totals
    equal the trace's sums, every request matches the one-worker run's (id, session,
    lengths) and is due at the same offset from the run's start: the arrivals are decided in
    one place. (How late they leave is timing, left to a benchmark: a loaded CI host is no
    measure of it.)"""
    with AZURE.open() as f:
        rows = list(csv.DictReader(f))[:30]
    runs: dict[int, pd.DataFrame] = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert _azure30(vllm_server, out, workers) == 0
        summary = _summary(out)
        assert summary["input_tokens"] == sum(int(r["ContextTokens"]) for r in rows)
        assert summary["output_tokens"] == sum(int(r["GeneratedTokens"]) for r in rows)
        assert summary["workers"]["used"] == workers
        assert len(summary["client"]["workers"]) == workers
        assert summary["send_lag_ms"]["p99"] is not None
        frame = pd.read_parquet(out / "requests.parquet").sort_values("request_id")
        frame["due_ns"] = frame["scheduled_ns"] - frame["scheduled_ns"].min()
        runs[workers] = frame
    cols = ["request_id", "session_id", "step_index", "prompt_tokens", "output_tokens", "due_ns"]
    one, two = (runs[w][cols].reset_index(drop=True) for w in (1, 2))
    pd.testing.assert_frame_equal(one, two)
    assert one["due_ns"].nunique() > 1  # the trace's spacing, not one burst


def _workers(proc: subprocess.Popen[bytes], timeout_s: float = 120) -> list[psutil.Process]:
    """The run's two load worker processes, once both are up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = [
            c
            for c in psutil.Process(proc.pid).children()
            if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in c.cmdline()[-1]
        ]
        if len(children) >= 2:
            return children
        time.sleep(0.2)
    raise AssertionError("the load workers did not start")


@pytest.mark.integration
def test_a_dead_worker_leaves_its_requests_failed_and_the_rest_go_on(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    out = tmp_path / "killed-worker"
    proc = start_run(vllm_server, out, "--workers", "2", in_flight=4)
    victim = _workers(proc)[1]
    wait_for_records(out / "requests.partial.jsonl", 4)
    victim.kill()
    time.sleep(3.0)  # the other worker goes on meanwhile
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    text = output.decode()
    assert proc.returncode == 130, text[-2000:]
    assert "Traceback" not in text
    summary = _summary(out)
    errors = summary["run"]["worker_errors"]
    assert len(errors) == 1 and "exited with code -9" in errors[0], errors
    requests = pd.read_parquet(out / "requests.parquet")
    dead = requests[requests["error"].fillna("").str.contains("load worker 1 exited")]
    assert len(dead) >= 1  # it had requests in flight: two of the four slots are its
    assert requests["ok"].sum() > 4  # the other worker went on


@pytest.mark.integration
def test_ctrl_c_stops_every_worker_and_writes_what_was_measured(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    out = tmp_path / "interrupted"
    proc = start_run(vllm_server, out, "--workers", "2", in_flight=4)
    workers = _workers(proc)
    wait_for_records(out / "requests.partial.jsonl", 2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, output.decode()[-2000:]
    assert b"Traceback" not in output
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    summary = _summary(out)
    assert summary["run"]["interrupted"] is True
    assert summary["run"]["worker_errors"] == []
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert not (out / "requests.partial.jsonl").exists()
