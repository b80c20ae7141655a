"""The files of a run's report, written into its run directory: the figures (a latency-split
chart for agent runs, the telemetry timeline where samples were taken), report.md and
report.html. `harness report RUN_DIR` and the end of `harness run` write them the same way."""

from __future__ import annotations

from pathlib import Path

from harness.html_report import render_html
from harness.plots import latency_breakdown_chart, split_components, timeline_chart
from harness.report import RunReportContent, run_report_content, write_report
from harness.results import RunReader, write_run_file
from harness.summary import Summary
from harness.timeline import build_timeline, unavailable_sources

SPLIT_FIGURE = "latency_split.png"
TIMELINE_FIGURE = "timeline.png"
HTML_REPORT_FILE = "report.html"


def run_name(reader: RunReader) -> str:
    """The run's name as its figures title it: the manifest's, else the folder's."""
    return str(reader.manifest.get("run_name") or reader.run_dir.name)


def write_figures(reader: RunReader, summary: Summary) -> list[str]:
    """The run's figures, written into its directory; their file names, in report order."""
    run_dir, name = reader.run_dir, run_name(reader)
    figures: list[str] = []
    split = summary.latency_split
    if split is not None:
        png = latency_breakdown_chart(
            [(name, split_components(split))], f"{name}: seconds per session"
        )
        write_run_file(run_dir, SPLIT_FIGURE, png)
        figures.append(SPLIT_FIGURE)
    telemetry = reader.frame("telemetry")
    if telemetry is not None:
        tools = reader.table("tools") if reader.has_table("tools") else None
        timeline = build_timeline(telemetry, reader.requests(), tools, unavailable_sources(summary))
        write_run_file(run_dir, TIMELINE_FIGURE, timeline_chart(timeline, name))
        figures.append(TIMELINE_FIGURE)
    return figures


def write_html_report(run_dir: Path, figures: list[str], content: RunReportContent) -> Path:
    """Write report.html into the run dir: the report's `content` (the sections report.md
    shows), `figures` (PNG files in the run dir) embedded."""
    embedded = [(name, (Path(run_dir) / name).read_bytes()) for name in figures]
    page = render_html(content.title, content.sections, embedded, content.notes)
    return write_run_file(Path(run_dir), HTML_REPORT_FILE, page)


def write_run_report(reader: RunReader, summary: Summary, html: bool = True) -> list[Path]:
    """The run's figures, report.md and (with `html`) report.html; the report files' paths."""
    figures = write_figures(reader, summary)
    content = run_report_content(reader.run_dir, reader)
    written = [write_report(reader.run_dir, figures, content)]
    if html:
        written.append(write_html_report(reader.run_dir, figures, content))
    return written
