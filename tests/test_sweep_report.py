"""harness.sweep_report on capacity.json documents built from hand-written summaries: the
ladder's attainment and verdicts agree, the capacity point and stop reason are stated, lower
loads are suggested where every load missed, and report.md, report.html and the curves are
written into the sweep directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from summary_builders import sweep_point

from harness.capacity import CAPACITY_FILE, capacity_document
from harness.errors import ResultsError
from harness.sweep_report import (
    CURVES_FIGURE,
    capacity_section,
    curves_chart,
    is_sweep_dir,
    ladder_section,
    lower_loads_note,
    read_capacity,
    stop_text,
    sweep_notes,
    write_sweep_report,
)
from harness.workload.slo import Slo

TARGET = 0.9


def _doc(points: list[dict[str, Any]], stopped: str | None = None) -> dict[str, Any]:
    return capacity_document(
        name="sweep-x",
        workload="chat",
        load_kind="rate",
        slo=Slo(ttft_ms=100.0),
        target_attainment=TARGET,
        points=points,
        status="finished",
        stopped=stopped,
        devices=1,
        device_kind="cpu",
        accelerator=None,
        model={"name": "tiny"},
        host={},
    )


def _rows(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    section = ladder_section(doc)
    return {row[0]: dict(zip(section.headers, row, strict=True)) for row in section.rows}


ATTAINED = "SLO attainment (target 90 %)"


def test_a_near_miss_shows_its_digits_and_the_verdict_missed() -> None:
    doc = _doc([sweep_point(1, 0.95, 1000.0), sweep_point(2, 0.897, 1500.0)])
    rows = _rows(doc)
    assert rows["1"][ATTAINED] == "95.0 %" and rows["1"]["verdict"] == "met (capacity)"
    assert rows["2"][ATTAINED] == "89.7 %" and rows["2"]["verdict"] == "missed"
    assert rows["2"]["run"] == "points/rate-2"


def test_no_load_met_suggests_lower_loads_as_the_sweep_option() -> None:
    doc = _doc([sweep_point(1, 0.5, 900.0), sweep_point(2, 0.3, 950.0)], stopped="slo_missed_twice")
    note = lower_loads_note(doc)
    assert note is not None and note.endswith("try lower loads, --rates 0.125,0.25,0.5")
    notes = sweep_notes(doc)
    assert notes[0] == "no load met the SLO: capacity unavailable"
    assert "stopped: early: two loads in a row missed the SLO" in notes


def test_concurrency_one_missed_says_there_is_no_lower_load() -> None:
    doc = _doc([sweep_point(1, 0.5, 900.0)])
    doc["load_kind"] = "concurrency"
    note = lower_loads_note(doc)
    assert note is not None and "there is no lower concurrency" in note


def test_a_sweep_that_met_suggests_no_lower_loads() -> None:
    doc = _doc([sweep_point(1, 0.99, 900.0), sweep_point(2, 0.5, 950.0)])
    assert lower_loads_note(doc) is None
    assert sweep_notes(doc)[0] == "capacity at the SLO: rate 1, 900.0 tok/s per cpu device"


def test_the_capacity_says_which_window_its_figures_are_over() -> None:
    whole = dict(capacity_section(_doc([sweep_point(1, 0.95, 1000.0)])).rows)
    assert whole["tokens/s over"] == "the whole run (ramp-up and drain included)"
    assert whole["busy power over"] == "n/a"  # no power measured
    steady = {
        **sweep_point(1, 0.95, 1000.0),
        "steady_total_throughput_tok_s": 1200.0,
        "steady_output_throughput_tok_s": 120.0,
        "steady_avg_power_w": 350.0,
    }
    rows = dict(capacity_section(_doc([steady])).rows)
    assert rows["tokens/s over"] == "the steady window (the batch near its maximum)"
    assert rows["busy power over"] == rows["tokens/s over"]
    assert rows["capacity, input + output (tok/s)"] == "1,200.0"
    assert rows["busy power (W)"] == "350.0"


@pytest.mark.parametrize(
    ("status", "reason", "text"),
    [
        ("finished", None, "every load given was run"),
        ("finished", "saturated", "early: the server was saturated"),
        ("interrupted", None, "interrupted by a stop signal"),
    ],
)
def test_stop_reason_in_words(status: str, reason: str | None, text: str) -> None:
    doc = _doc([sweep_point(1, 0.99, 900.0)], stopped=reason)
    doc["status"] = status
    assert stop_text(doc).startswith(text)


def test_curves_mark_the_capacity_point() -> None:
    doc = _doc([sweep_point(1, 0.99, 900.0), sweep_point(2, 0.5, 1800.0)])
    marked = curves_chart(doc)
    assert marked is not None and marked.startswith(b"\x89PNG")
    unmarked = dict(doc, capacity={**doc["capacity"], "load": None, "run_dir": None})
    assert curves_chart(unmarked) != marked  # the star is drawn only where there is a capacity


def test_write_sweep_report_writes_markdown_html_and_curves(tmp_path: Path) -> None:
    doc = _doc([sweep_point(1, 0.99, 900.0), sweep_point(2, 0.897, 1800.0)], stopped="saturated")
    (tmp_path / CAPACITY_FILE).write_text(json.dumps(doc))
    assert is_sweep_dir(tmp_path)
    written = write_sweep_report(tmp_path)
    assert written == [tmp_path / "report.md", tmp_path / "report.html"]
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# Sweep sweep-x: chat")
    assert f"]({CURVES_FIGURE})" in md and (tmp_path / CURVES_FIGURE).is_file()
    assert "| 2 |" in md and "89.7 %" in md and "missed" in md and "met (capacity)" in md
    assert "## Capacity at the SLO (per device)" in md and "below rate 2" in md
    assert "stopped: early: the server was saturated" in md
    assert "| SLO | TTFT <= 100 ms |" in md
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "the star the capacity point" in html


def test_a_run_directory_is_not_a_sweep_and_a_foreign_capacity_json_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / CAPACITY_FILE).write_text('{"kind": "something-else"}')
    with pytest.raises(ResultsError, match="not a harness-capacity file"):
        read_capacity(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    assert not is_sweep_dir(tmp_path)
