"""harness.csv_export: requests.csv from the request table (latencies per request in ms)
and summary.csv (one row per figure: name, value, unit; unknown is empty, never 0)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
from summary_builders import request_record, stats, summary

from harness.analysis import summarize_requests
from harness.csv_export import (
    REQUESTS_CSV,
    SUMMARY_CSV,
    summary_csv,
    unit_of,
    write_csv,
    write_requests_csv,
)
from harness.records import record_to_row
from harness.results import RunReader, RunWriter
from harness.summary import Summary


def _run_dir(tmp_path: Path, n: int = 3, failed: tuple[int, ...] = ()) -> Path:
    run = tmp_path / "run"
    with RunWriter(run) as writer:
        writer.write_manifest({"run_name": "run"})
        writer.append([request_record(i, ok=i not in failed) for i in range(n)])
        writer.seal_tables()
    return run


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_requests_csv_has_one_row_per_request_with_its_latencies(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, n=3, failed=(2,))
    path = write_requests_csv(RunReader(run))
    assert path == run / REQUESTS_CSV
    rows = _rows(path)
    assert [r["request_id"] for r in rows] == ["r0", "r1", "r2"]
    first = rows[0]
    # 2 ms to the first token, 4 ms to the last, 3 output tokens: TPOT (4 - 2) / 2 = 1 ms.
    assert float(first["ttft_ms"]) == 2.0
    assert float(first["e2el_ms"]) == 4.0
    assert float(first["tpot_ms"]) == 1.0
    assert first["chunks"] == "3" and first["output_tokens"] == "3"
    assert first["ok"] == "true" and rows[2]["ok"] == "false"
    assert rows[2]["error"] == "http 500"
    # The per-chunk lists stay in requests.parquet.
    assert "chunk_ns" not in first and "chunk_tokens" not in first


def test_requests_csv_of_a_run_without_requests_is_the_header(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, n=0)
    text = write_requests_csv(RunReader(run)).read_text()
    header = text.splitlines()
    assert len(header) == 1 and header[0].startswith('"request_id"')
    assert header[0].endswith('"chunks","ttft_ms","tpot_ms","e2el_ms"')


def test_summary_csv_has_name_value_unit_per_figure() -> None:
    text = summary_csv(
        summary(ttft_ms=stats(20.0, 30.0, 40.0), duration_s=None, output_throughput_tok_s=100.0)
    )
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["name", "value", "unit"]
    by_name = {name: (value, unit) for name, value, unit in rows[1:]}
    assert by_name["ttft_ms.p99"] == ("40.0", "ms")
    assert by_name["ttft_ms.count"] == ("10", "samples")
    assert by_name["output_throughput_tok_s"] == ("100.0", "tok/s")
    assert by_name["requests_completed"] == ("10", "requests")
    # Unknown is empty, never 0; text and booleans are not figures.
    assert by_name["duration_s"] == ("", "s")
    assert "run.interrupted" not in by_name and "server_metrics.reason" not in by_name


def _csv_names(parsed: Summary) -> dict[str, tuple[str, str]]:
    rows = list(csv.reader(io.StringIO(summary_csv(parsed))))
    return {name: (value, unit) for name, value, unit in rows[1:]}


LOAD = {
    "pattern": "poisson",
    "description": "Poisson at 5 sessions/s",
    "time_scale": None,
    "rate_per_s": 5.0,
    "concurrency": None,
    "max_concurrency": None,
    "max_requests": 10,
    "duration_s": None,
    "warmup_requests": 0,
    "workers": 1,
    "trace_timing_replaced": False,
}


def test_summary_csv_leaves_out_text_and_absent_blocks() -> None:
    """Text (a reason, a description) and blocks that are null (no SLO, no energy, no split)
    are not figures; a numeric figure that is null is kept as an empty value."""
    names = _csv_names(summary(load=LOAD, run={"aborted_reason": None}))
    for text in ("run.aborted_reason", "server_metrics.reason", "load.description"):
        assert text not in names, text
    for block in ("slo", "latency_split", "energy", "telemetry", "session_figures"):
        assert not any(n == block or n.startswith(f"{block}.") for n in names), block
    assert names["load.rate_per_s"] == ("5.0", "1/s")
    assert names["load.concurrency"] == ("", "")  # numeric and unknown: empty, never 0
    assert "load.pattern" not in names and "load.trace_timing_replaced" not in names
    assert "load" not in _csv_names(summary()) and not any(
        n.startswith("load.") for n in _csv_names(summary())
    )


def test_summary_csv_has_one_row_per_percentile() -> None:
    """The fixed p50/p90/p99 are one row each, also where an early version 2 summary
    repeats them under `percentiles`; the chosen ones beyond them have their own rows."""
    repeated = {**stats(20.0, 30.0, 40.0), "percentiles": {"p50": 20.0, "p95": 35.0, "p99": 40.0}}
    names = _csv_names(summary(ttft_ms=repeated))
    assert names["ttft_ms.p50"] == ("20.0", "ms") and names["ttft_ms.p99"] == ("40.0", "ms")
    assert names["ttft_ms.percentiles.p95"] == ("35.0", "ms")
    assert "ttft_ms.percentiles.p50" not in names and "ttft_ms.percentiles.p99" not in names
    frame = pd.DataFrame([record_to_row(request_record(i)) for i in range(4)])
    fresh = _csv_names(summary(**summarize_requests(frame)))
    assert not [n for n in fresh if ".percentiles.p50" in n or ".percentiles.p99" in n]
    assert "ttft_ms.percentiles.p95" in fresh


def test_units_follow_the_names() -> None:
    assert unit_of(("request_throughput_rps",)) == "req/s"
    assert unit_of(("energy", "j_per_output_token")) == "J/token"
    assert unit_of(("energy", "avg_power_w")) == "W"
    assert unit_of(("energy", "gpu_energy_per_device_j", "0")) == "J"
    assert unit_of(("ttft_ms", "percentiles", "p99.9")) == "ms"
    assert unit_of(("latency_split", "per_tool_kind", "grep", "call_s", "p50")) == "s"
    assert unit_of(("slo_attainment",)) == "fraction"
    assert unit_of(("latency_split", "shares", "llm")) == "fraction"
    assert unit_of(("session_figures", "sessions_per_hour")) == "1/h"


def test_write_csv_writes_both_files_from_a_run(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, n=4)
    frame = pd.DataFrame([record_to_row(request_record(i)) for i in range(4)])
    figures = summarize_requests(frame, percentiles=[50.0, 99.9])
    parsed = summary(**figures)
    paths = write_csv(RunReader(run), parsed)
    assert paths == [run / REQUESTS_CSV, run / SUMMARY_CSV]
    names = {row["name"]: row for row in _rows(run / SUMMARY_CSV)}
    assert names["ttft_ms.percentiles.p99.9"]["value"] == "2.0"
    assert names["ttft_ms.min"]["unit"] == "ms"
    assert len(_rows(run / REQUESTS_CSV)) == 4
