"""Unit tests for harness.results: round trip, crash recovery, overwrite protection."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from summary_builders import summary

from harness.errors import ResultsError
from harness.records import REQUEST_COLUMNS, RequestRecord
from harness.results import (
    JOURNAL_FILE,
    MANIFEST_FILE,
    REQUEST_SCHEMA,
    REQUESTS_FILE,
    SUMMARY_FILE,
    RunReader,
    RunWriter,
    requests_frame,
    write_run_file,
)


def _record(i: int, *, ok: bool = True, warmup: bool = False) -> RequestRecord:
    """A plausible record; failures have no token stamps or usage."""
    base = 1_000_000 * i
    return RequestRecord(
        request_id=f"r{i}",
        session_id=f"s{i % 2}",
        step_index=i,
        api="chat",
        prompt_tokens_expected=100 + i,
        output_tokens_expected=3,
        scheduled_ns=base,
        sent_ns=base + 10,
        first_token_ns=base + 100 if ok else None,
        last_token_ns=base + 300 if ok else None,
        done_ns=base + 310,
        chunk_ns=[base + 100, base + 200, base + 300] if ok else [],
        chunk_tokens=[1, 1, 1] if ok else [],
        prompt_tokens=100 + i if ok else None,
        output_tokens=3 if ok else None,
        cached_prompt_tokens=0 if ok else None,
        http_status=200 if ok else 500,
        error=None if ok else "server error: boom | pipe",
        warmup=warmup,
    )


def _records() -> list[RequestRecord]:
    return [_record(0, warmup=True), _record(1), _record(2, ok=False), _record(3)]


def _check_frame(df: pd.DataFrame, records: list[RequestRecord]) -> None:
    """The frame holds exactly the records, column for column."""
    assert list(df.columns) == list(REQUEST_COLUMNS)
    assert len(df) == len(records)
    for (_, row), rec in zip(df.iterrows(), records, strict=True):
        assert row["request_id"] == rec.request_id
        assert row["sent_ns"] == rec.sent_ns
        assert list(row["chunk_ns"]) == rec.chunk_ns
        assert list(row["chunk_tokens"]) == rec.chunk_tokens
        assert bool(row["warmup"]) is rec.warmup
        assert bool(row["ok"]) is rec.ok
        if rec.first_token_ns is None:
            assert pd.isna(row["first_token_ns"])
        else:
            assert row["first_token_ns"] == rec.first_token_ns
        if rec.error is None:
            assert pd.isna(row["error"])
        else:
            assert row["error"] == rec.error
    assert df["sent_ns"].dtype == pd.Int64Dtype()
    assert df["first_token_ns"].dtype == pd.Int64Dtype()  # nullable, not float
    assert df["ok"].dtype == pd.BooleanDtype()


def test_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "run1"
    records = _records()
    manifest = {"run_name": "run1", "model": "tiny", "path": Path("/x"), "nested": {"a": [1, 2]}}
    writer = RunWriter(run_dir)
    writer.write_manifest(manifest)
    assert writer.append(records[:2]) == 2
    assert writer.append(records[2:]) == 2
    assert writer.append([]) == 0
    writer.write_json("extra.json", {"k": (1, 2)})
    writer.finalize(summary(requests_completed=2))

    assert (run_dir / REQUESTS_FILE).is_file()
    assert not (run_dir / JOURNAL_FILE).exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left

    reader = RunReader(run_dir)
    assert reader.manifest == {**manifest, "path": "/x"}
    assert reader.summary == summary(requests_completed=2).to_json()
    assert reader.read_json("extra.json") == {"k": [1, 2]}
    assert not reader.recovered
    _check_frame(reader.requests(), records)
    # The file carries the explicit schema, not one pyarrow inferred.
    assert pq.read_schema(run_dir / REQUESTS_FILE).equals(REQUEST_SCHEMA)
    assert REQUEST_SCHEMA.field("chunk_ns").type == pa.list_(pa.int64())
    assert REQUEST_SCHEMA.field("done_ns").nullable


def test_manifest_is_pretty_json(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    writer.write_manifest({"a": 1, "b": {"c": 2}})
    text = (tmp_path / "run" / MANIFEST_FILE).read_text()
    assert text.startswith("{\n  ")
    assert json.loads(text) == {"a": 1, "b": {"c": 2}}


def test_finalize_with_no_requests(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "empty")
    writer.write_manifest({})
    writer.finalize(summary())
    df = RunReader(tmp_path / "empty").requests()
    assert len(df) == 0
    assert list(df.columns) == list(REQUEST_COLUMNS)


def test_recovery_after_hard_kill(tmp_path: Path) -> None:
    """A writer that never finalizes or closes: what append returned for is on disk."""
    run_dir = tmp_path / "killed"
    records = _records()
    writer = RunWriter(run_dir)
    writer.write_manifest({"run_name": "killed"})
    writer.append(records[:3])
    writer.append(records[3:])
    # Simulated kill: read while the writer's file handle is still open and unfinalized.
    reader = RunReader(run_dir)
    assert reader.recovered
    assert reader.summary is None
    assert not (run_dir / REQUESTS_FILE).exists()
    _check_frame(reader.requests(), records)
    writer.close()


def test_recovery_drops_a_torn_last_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "torn"
    records = _records()
    with RunWriter(run_dir) as writer:
        writer.write_manifest({})
        writer.append(records)
    with (run_dir / JOURNAL_FILE).open("a") as fh:
        fh.write('{"request_id": "half-writ')  # killed in the middle of a write
    reader = RunReader(run_dir)
    assert reader.recovered
    _check_frame(reader.requests(), records)


def test_recovery_rejects_corruption_in_the_middle(tmp_path: Path) -> None:
    run_dir = tmp_path / "corrupt"
    with RunWriter(run_dir) as writer:
        writer.write_manifest({})
        writer.append(_records()[:1])
    journal = run_dir / JOURNAL_FILE
    journal.write_text("not json\n" + journal.read_text())
    with pytest.raises(ResultsError, match=r"requests\.partial\.jsonl:1"):
        RunReader(run_dir).requests()


def test_run_killed_before_first_append_is_empty_not_missing(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "r") as writer:
        writer.write_manifest({})
    df = RunReader(tmp_path / "r").requests()
    assert len(df) == 0


def test_refuses_to_overwrite_a_finished_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir)
    writer.write_manifest({"n": 1})
    writer.append(_records())
    writer.finalize(summary(requests_completed=1))
    with pytest.raises(ResultsError, match="already holds a run"):
        RunWriter(run_dir)
    # Untouched by the refused attempt.
    assert RunReader(run_dir).summary == summary(requests_completed=1).to_json()
    assert len(RunReader(run_dir).requests()) == 4


def test_refuses_a_crashed_run_dir_too(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir)
    writer.append(_records())
    writer.close()
    with pytest.raises(ResultsError, match=JOURNAL_FILE.replace(".", r"\.")):
        RunWriter(run_dir)


def test_overwrite_replaces_the_old_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    old = RunWriter(run_dir)
    old.write_manifest({"n": 1})
    old.append(_records())
    old.finalize(summary(requests_completed=1))
    new = RunWriter(run_dir, overwrite=True)
    assert not (run_dir / SUMMARY_FILE).exists()
    assert not (run_dir / REQUESTS_FILE).exists()
    new.write_manifest({"n": 2})
    new.append([_record(7)])
    reader = RunReader(run_dir)
    assert reader.recovered
    assert list(reader.requests()["request_id"]) == ["r7"]  # no rows of the old run
    new.finalize(summary(requests_completed=2))
    assert RunReader(run_dir).summary == summary(requests_completed=2).to_json()


def test_failed_json_write_keeps_the_previous_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir)
    writer.write_manifest({"good": True})
    with pytest.raises(TypeError):
        writer.write_manifest({"bad": object()})
    assert json.loads((run_dir / MANIFEST_FILE).read_text()) == {"good": True}
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]


def test_nan_in_an_extra_file_is_written_as_null(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    writer.write_manifest({})
    writer.write_json("extra.json", {"x": float("nan"), "y": float("inf"), "z": 1.5})
    reader = RunReader(tmp_path / "run")
    assert reader.read_json("extra.json") == {"x": None, "y": None, "z": 1.5}


def test_append_after_finalize_fails(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    writer.finalize(summary())
    with pytest.raises(ResultsError):
        writer.append([_record(1)])
    with pytest.raises(ResultsError):
        writer.finalize(summary())


def test_reader_errors_name_path_and_what_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ResultsError, match=r"nope.*not found"):
        RunReader(missing)
    (tmp_path / "bare").mkdir()
    with pytest.raises(ResultsError, match=r"bare.*manifest\.json"):
        RunReader(tmp_path / "bare")
    (tmp_path / "bare" / MANIFEST_FILE).write_text("{}")
    with pytest.raises(ResultsError, match=r"requests\.parquet"):
        RunReader(tmp_path / "bare").requests()
    (tmp_path / "bare" / MANIFEST_FILE).write_text("{broken")
    with pytest.raises(ResultsError, match="unreadable JSON"):
        RunReader(tmp_path / "bare")


@pytest.mark.parametrize("name", ["../escape.json", "sub/x.json", "", ".hidden", "summary.json"])
def test_extra_file_names_are_checked(tmp_path: Path, name: str) -> None:
    writer = RunWriter(tmp_path / "run")
    with pytest.raises(ResultsError):
        writer.write_json(name, {})
    with pytest.raises(ResultsError):
        write_run_file(tmp_path / "run", name, "x")


def test_write_run_file(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    writer.close()
    path = write_run_file(tmp_path / "run", "report.md", "# hi\n")
    assert path == tmp_path / "run" / "report.md"
    assert path.read_text() == "# hi\n"
    with pytest.raises(ResultsError, match="not found"):
        write_run_file(tmp_path / "missing", "report.md", "x")


def test_requests_frame_matches_what_the_reader_returns(tmp_path: Path) -> None:
    records = _records()
    writer = RunWriter(tmp_path / "run")
    writer.write_manifest({})
    writer.append(records)
    recovered = RunReader(tmp_path / "run").requests()
    writer.finalize(summary())
    finished = RunReader(tmp_path / "run").requests()
    in_memory = requests_frame(records)
    _check_frame(in_memory, records)
    pd.testing.assert_frame_equal(in_memory, finished)
    pd.testing.assert_frame_equal(recovered, finished)
    pd.testing.assert_frame_equal(requests_frame(records), finished)


def test_read_json_file_maps_failures_to_results_error(tmp_path: Path) -> None:
    from harness.results import read_json_file

    good = tmp_path / "good.json"
    good.write_text('{"a": [1, null]}', encoding="utf-8")
    assert read_json_file(good) == {"a": [1, None]}
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ResultsError, match="unreadable JSON"):
        read_json_file(bad)
    with pytest.raises(ResultsError, match="unreadable JSON"):
        read_json_file(tmp_path / "missing.json")


def test_samples_stream_to_a_journal_readable_before_and_after_the_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir)
    writer.write_manifest({"run_name": "x"})
    writer.append_samples([{"t_ns": 20, "source": "cpu", "cpu_pct": 5.0}])
    writer.append_samples([{"t_ns": 10, "source": "gpu", "device": 0, "power_w": float("nan")}])
    # A killed run: the samples are read back from their journal, sorted, all columns.
    live = RunReader(run_dir).frame("telemetry")
    assert live is not None
    assert list(live["t_ns"]) == [10, 20]
    assert set(live.columns) == {"t_ns", "source", "cpu_pct", "device", "power_w"}
    assert pd.isna(live.loc[0, "power_w"])  # NaN written as null, not as a number
    writer.finalize(summary())
    assert not (run_dir / "telemetry.partial.jsonl").exists()
    done = RunReader(run_dir).frame("telemetry")
    assert done is not None and list(done["t_ns"]) == [10, 20]
    assert writer.append_samples([{"t_ns": 30}]) == 0  # after the end: dropped


def test_seal_keeps_the_journals_until_the_summary_is_written(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    writer.write_manifest({"run_name": "x"})
    writer.append([_record(1)])
    writer.seal_tables()
    assert (tmp_path / "run" / "requests.parquet").is_file()
    assert (tmp_path / "run" / "requests.partial.jsonl").is_file()
    writer.finalize(summary())
    assert not (tmp_path / "run" / "requests.partial.jsonl").exists()


def test_a_journal_line_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path / "run")
    writer.write_manifest({"run_name": "x"})
    writer.append([_record(1)])
    writer.close()
    journal = tmp_path / "run" / "requests.partial.jsonl"
    journal.write_bytes(journal.read_bytes() + b"\xff\xfe{}\n")
    with pytest.raises(ResultsError, match=r"requests\.partial\.jsonl:2: corrupt journal line"):
        RunReader(tmp_path / "run").requests()


def test_a_run_directory_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResultsError, match="cannot create the run directory"):
        RunWriter(tmp_path / "file" / "run")
