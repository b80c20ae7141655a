"""A killed run's directory is read back: its summary recovered from the journals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from summary_builders import request_record, summary

from harness.errors import ResultsError
from harness.records import RequestRecord, StepRecord
from harness.results import RunReader, RunWriter
from harness.run_summary import read_summary
from harness.summary import SCHEMA_VERSION

MS = 1_000_000


def _record(i: int, ok: bool = True) -> RequestRecord:
    return request_record(i, ok)


def _killed_run(tmp_path: Path) -> Path:
    """A run directory as a SIGKILL leaves it: manifest `running`, journals, no summary."""
    run_dir = tmp_path / "killed"
    writer = RunWriter(run_dir)
    writer.write_manifest(
        {
            "run_name": "killed",
            "status": "running",
            "plan": {"requests": 10},
            "workload": {"name": "w", "slo": {"ttft_ms": 5.0}},
        }
    )
    writer.append([_record(0), _record(1), _record(2, ok=False)])
    step = StepRecord("s0", 0, "r0", 0, 5 * MS, 0, 4 * MS, None, None, 0, 0, 0, True)
    writer.append_rows("steps", [step])
    writer.close()  # the process died here
    return run_dir


def test_a_killed_run_is_recovered_and_says_so(tmp_path: Path) -> None:
    summary = read_summary(RunReader(_killed_run(tmp_path)))
    assert summary.recovered is not None and summary.recovered.status == "running"
    assert "did not finish" in summary.recovered.note
    assert summary.requests_completed == 2 and summary.requests_failed == 1
    assert summary.run.requests_planned == 10
    assert summary.run.requests_sent == 3
    assert summary.requests_meeting_slo == 2  # the workload's SLO from the manifest
    assert summary.latency_split is not None and summary.latency_split.steps == 1
    assert summary.energy is None
    assert summary.server_metrics.available is False
    assert summary.schema_version == SCHEMA_VERSION
    assert summary.to_json()["recovered"]["from"] == "journals"


def test_a_finished_run_reads_its_own_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "done"
    writer = RunWriter(run_dir)
    writer.write_manifest({"run_name": "done"})
    writer.append([_record(0)])
    written = summary(requests_completed=1)
    writer.finalize(written)
    assert read_summary(RunReader(run_dir)) == written


def test_a_bad_slo_in_the_manifest_is_a_clear_error(tmp_path: Path) -> None:
    run_dir = _killed_run(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["workload"]["slo"] = {"ttft_ms": "soon"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultsError, match=r"manifest\.json: key 'workload\.slo\.ttft_ms'"):
        read_summary(RunReader(run_dir))


def test_a_run_that_recorded_nothing_is_a_clear_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text('{"run_name": "empty"}')
    with pytest.raises(ResultsError, match=r"no summary\.json and no request journal"):
        read_summary(RunReader(run_dir))
