"""The end of `harness run`: report.md and report.html written without a second command
(`--no-report` turns it off), `--csv`, a report that cannot be written is a warning and the
run is kept; and one small run against the real vLLM server (integration)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from summary_builders import request_record

from harness.analysis import summarize_requests
from harness.cli import main
from harness.cli.run_answers import write_answers
from harness.records import record_to_row
from harness.results import RunWriter
from harness.server import ServerInfo
from harness.summary import Summary, new_summary

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


def _finished_run(tmp_path: Path) -> tuple[Path, Summary]:
    """A run directory as a finished run leaves it: manifest, tables, summary.json."""
    run = tmp_path / "run"
    records = [request_record(i) for i in range(3)]
    figures = summarize_requests(pd.DataFrame([record_to_row(r) for r in records]))
    summary = new_summary({**figures, "run": _run_block(), "server_metrics": {"available": False}})
    with RunWriter(run) as writer:
        writer.write_manifest({"run_name": "run", "status": "finished"})
        writer.append(records)
        writer.seal_tables()
        writer.finalize(summary)
    return run, summary


def _run_block() -> dict[str, object]:
    return {
        "requests_planned": 3,
        "requests_sent": 3,
        "prompt_token_mismatches": 0,
        "output_token_mismatches": 0,
        "interrupted": False,
        "aborted_reason": None,
    }


class _Lines:
    """What the run said and warned."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.warned: list[str] = []


def test_the_report_is_written_at_the_end_of_a_run(tmp_path: Path) -> None:
    run, summary = _finished_run(tmp_path)
    lines = _Lines()
    written = write_answers(run, summary, lines.said.append, lines.warned.append)
    assert written == [run / "report.md", run / "report.html"]
    assert lines.said == [f"report: {run / 'report.md'}", f"report: {run / 'report.html'}"]
    assert lines.warned == []
    assert (run / "report.md").read_text().startswith("# Benchmark report: run")
    assert "<h1>Benchmark report: run</h1>" in (run / "report.html").read_text()
    assert not (run / "requests.csv").exists()


def test_csv_with_or_without_the_report(tmp_path: Path) -> None:
    run, summary = _finished_run(tmp_path)
    lines = _Lines()
    written = write_answers(
        run, summary, lines.said.append, lines.warned.append, report=False, csv=True
    )
    assert written == [run / "requests.csv", run / "summary.csv"]
    assert not (run / "report.md").exists()
    assert write_answers(run, summary, print, print, report=False) == []
    assert write_answers(run, None, print, print, csv=True) == []  # no summary: nothing


def test_a_report_that_cannot_be_written_is_a_warning_and_the_run_is_kept(
    tmp_path: Path,
) -> None:
    run, summary = _finished_run(tmp_path)
    (run / "report.md").mkdir()  # report.md cannot replace a folder
    lines = _Lines()
    written = write_answers(run, summary, lines.said.append, lines.warned.append, csv=True)
    assert written == [run / "requests.csv", run / "summary.csv"]  # the next step still ran
    [warning] = lines.warned
    assert warning.startswith("report not written (")
    assert warning.endswith(f"the run's results are kept: harness report {run} --html")
    assert (run / "summary.json").is_file()


def test_report_csv_for_a_run_made_earlier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = _finished_run(tmp_path)
    assert main(["report", str(run), "--csv"]) == 0
    out = capsys.readouterr().out
    assert f"csv: {run / 'requests.csv'}" in out and f"csv: {run / 'summary.csv'}" in out
    with (run / "summary.csv").open(newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert rows["ttft_ms.percentiles.p95"]["unit"] == "ms"
    assert rows["requests_completed"]["value"] == "3"


@pytest.mark.integration
def test_a_run_answers_at_its_end(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small run of a trace with --rate: the console states the replaced timing, the load
    and the chosen percentiles; the run directory has the reports and the CSV files."""
    out = tmp_path / "answers"
    argv = ["run", str(AZURE), "--server", vllm_server.base_url, "--max-requests", "6"]
    argv += ["--rate", "20", "--percentiles", "50,99.9", "--csv", "--out", str(out)]
    assert main(argv) == 0
    console = capsys.readouterr().out
    assert "note: --rate 20 replaced the trace's own timestamps with Poisson arrivals" in console
    assert "Load applied" in console and "Poisson arrivals at 20 sessions/s" in console
    assert "p99.9" in console
    for name in ("report.md", "report.html", "requests.csv", "summary.csv"):
        assert (out / name).is_file(), name
        assert f"{out / name}" in console
    summary = json.loads((out / "summary.json").read_text())
    assert summary["load"]["pattern"] == "poisson" and summary["load"]["rate_per_s"] == 20
    assert summary["load"]["trace_timing_replaced"] is True
    assert summary["percentiles"] == [50.0, 99.9]
    assert set(summary["ttft_ms"]["percentiles"]) == {"p99.9"}  # p50 is the fixed key
    # Six requests: a p99.9 needs 1000 values, so it is flagged.
    few = [f for f in summary["timing_flags"] if f["kind"] == "few_samples"]
    assert {"ttft_ms", "e2el_ms"} <= {name for f in few for name in f["figures"]}
    assert "from 6 values" in (out / "report.md").read_text()
    with (out / "requests.csv").open(newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    quiet = tmp_path / "quiet"
    argv = ["run", str(AZURE), "--server", vllm_server.base_url, "--max-requests", "2"]
    assert main([*argv, "--time-scale", "0", "--no-report", "--out", str(quiet)]) == 0
    assert (quiet / "summary.json").is_file() and not (quiet / "report.md").exists()
    assert not (quiet / "report.html").exists()
