"""`harness report --html`: report.html beside report.md, same sections, figure embedded;
a report.html the run already has is rewritten with report.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from summary_builders import split_block, summary_dict

from harness.cli import main

_SUMMARY = summary_dict(
    requests_completed=2,
    output_throughput_tok_s=50.0,
    latency_split=split_block(llm_s=1.0, tool_s=3.0, orchestration_s=0.5),
)


def _run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_name": "run", "model": "m"}))
    (run / "summary.json").write_text(json.dumps(_SUMMARY))
    return run


def test_html_only_when_asked(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert main(["report", str(run)]) == 0
    assert (run / "report.md").is_file() and not (run / "report.html").exists()


def test_a_report_html_the_run_wrote_is_rewritten_with_report_md(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The end of harness run writes report.html: harness report (without --html) rewrites
    it with report.md, so the two never disagree; the console names both."""
    run = _run(tmp_path)
    (run / "report.html").write_text("<html>out of date</html>")
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "out of date" not in page and "<h1>Benchmark report: run</h1>" in page
    out = capsys.readouterr().out
    assert f"report: {run / 'report.md'}" in out and f"report: {run / 'report.html'}" in out


def test_html_has_the_markdown_sections_and_the_figure(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert main(["report", str(run), "--html"]) == 0
    page = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    md_titles = re.findall(r"^## (.+)$", md, re.M)
    html_titles = re.findall(r"<h2>(.+?)</h2>", page)
    assert md_titles and html_titles == md_titles
    assert "<h1>Benchmark report: run</h1>" in page
    assert page.count('<img src="data:image/png;base64,') == 1
    assert "(latency_split.png)" in md


def test_timeline_figure_when_telemetry_was_sampled(tmp_path: Path) -> None:
    import pandas as pd

    run = _run(tmp_path)
    s = 1_000_000_000
    pd.DataFrame(
        [
            {"t_ns": 0, "source": "cpu", "device": None, "system_cpu_pct": 30.0},
            {"t_ns": s, "source": "cpu", "device": None, "system_cpu_pct": 60.0},
        ]
    ).to_parquet(run / "telemetry.parquet")
    pd.DataFrame({"sent_ns": [0], "done_ns": [s]}).to_parquet(run / "requests.parquet")
    assert main(["report", str(run), "--html"]) == 0
    assert (run / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert "(timeline.png)" in (run / "report.md").read_text()
    assert (run / "report.html").read_text().count('<img src="data:image/png;base64,') == 2


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"requests_completed": "two"},
            "key 'requests_completed': Input should be a valid integer",
        ),
        ({"ttft_ms": {"count": 1, "mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}}, "ttft_ms.std"),
        ({"output_thruput_tok_s": 50.0}, "unknown key 'output_thruput_tok_s'"),
    ],
)
def test_a_hand_edited_summary_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], needle: str
) -> None:
    """A summary.json with a wrong type, a missing figure or a misspelt key: one line naming
    the file and the key, exit 2, never a traceback."""
    run = tmp_path / "invalid-on-purpose"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_name": "run"}))
    (run / "summary.json").write_text(json.dumps({**_SUMMARY, **change}))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'summary.json'}: invalid summary: " in err and needle in err
    assert "Traceback" not in err and "internal error" not in err
    assert not (run / "report.md").exists()


def test_report_on_a_sweep_directory_writes_the_sweeps_own_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness report SWEEP_DIR` (capacity.json, no manifest.json): the ladder with verdicts,
    report.md and report.html in the sweep directory, no "missing manifest.json"."""
    from summary_builders import stats, summary

    from harness.capacity import capacity_document, point_figures
    from harness.workload.slo import Slo

    def point(load: float, attainment: float) -> dict[str, object]:
        run = summary(
            requests_completed=10,
            slo_attainment=attainment,
            total_throughput_tok_s=1000.0 * load,
            ttft_ms=stats(10.0, 20.0, 30.0 * load),
        )
        return point_figures(load, f"points/concurrency-{load:g}", run, 0.9)

    doc = capacity_document(
        name="sw", workload="chat", load_kind="concurrency", slo=Slo(ttft_ms=50.0),
        target_attainment=0.9, points=[point(2, 0.97), point(4, 0.897)], status="finished",
        stopped=None, devices=1, device_kind="cpu", accelerator=None, model={}, host={},
    )  # fmt: skip
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "capacity.json").write_text(json.dumps(doc))
    assert main(["report", str(sweep)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "manifest" not in out
    assert "89.7 %" in out and "missed" in out and "met (capacity)" in out
    assert "capacity at the SLO: concurrency 2" in out
    assert f"report: {sweep / 'report.md'}" in out and f"report: {sweep / 'report.html'}" in out
    md = (sweep / "report.md").read_text()
    assert "## Load ladder" in md and "(throughput_latency.png)" in md
    assert (sweep / "throughput_latency.png").is_file() and (sweep / "report.html").is_file()
