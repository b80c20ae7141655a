"""`harness report --html`: report.html beside report.md, same sections, figure embedded."""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.cli import main

_SUMMARY = {
    "requests_completed": 2,
    "output_throughput_tok_s": 50.0,
    "latency_split": {
        "llm_s": 1.0,
        "tool_s": 3.0,
        "orchestration_s": 0.5,
        "total_s": 4.5,
        "cpu_share": 3.5 / 4.5,
        "gpu_share": 1.0 / 4.5,
        "sessions": 1,
        "per_tool_kind": {},
    },
}


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
