"""The files of a run's report, written into its run directory: the figures (a latency-split
chart for agent runs, the telemetry timeline where samples were taken), report.md and
report.html. `harness report RUN_DIR` and the end of `harness run` write them the same way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.figures import FigureRef
from harness.html_report import render_html
from harness.plots import (
    NotDrawn,
    latency_breakdown_chart,
    not_drawn_panels,
    split_components,
    timeline_chart,
)
from harness.report import RunReportContent, run_report_content, write_report
from harness.results import RunReader, write_run_file
from harness.summary import Summary
from harness.timeline import Timeline, build_timeline, other_gpus, unavailable_sources

SPLIT_FIGURE = "latency_split.png"
TIMELINE_FIGURE = "timeline.png"
HTML_REPORT_FILE = "report.html"


def run_name(reader: RunReader) -> str:
    """The run's name as its figures title it: the manifest's, else the folder's."""
    return str(reader.manifest.get("run_name") or reader.run_dir.name)


def split_caption(components: Sequence[str]) -> str:
    """What the latency-split chart shows: the parts it stacks, as drawn (a run without tools
    names no tool kind)."""
    return "Where a session's time goes: seconds per session in " + ", ".join(components)


def timeline_caption(timeline: Timeline) -> str:
    """What the timeline figure shows, in words (the activity lines by name), and which
    panels it leaves out and why."""
    panels = (("power", timeline.power_w), ("utilisation", timeline.utilization_pct))
    shown = [name for name, series in panels if series]
    if timeline.activity:
        shown.append("activity (" + ", ".join(s.label for s in timeline.activity) + ")")
    text = ", ".join(shown) or "nothing"
    caption = f"Over the run, on one time axis (0 = the first request sent): {text}."
    missing = not_drawn_panels(timeline)
    if missing:
        caption += " Not drawn: " + "; ".join(missing) + "."
    return caption


def write_figures(reader: RunReader, summary: Summary) -> list[FigureRef]:
    """The run's figures, written into its directory, in report order: each file with a
    caption saying what it shows (a chart not drawn has no file; its caption says why)."""
    run_dir, name = reader.run_dir, run_name(reader)
    figures: list[FigureRef] = []
    split = summary.latency_split
    if split is not None:
        parts = split_components(split)
        png = latency_breakdown_chart([(name, parts)], f"{name}: seconds per session")
        write_run_file(run_dir, SPLIT_FIGURE, png)
        figures.append(FigureRef(split_caption(list(parts)), SPLIT_FIGURE))
    telemetry = reader.frame("telemetry")
    if telemetry is not None:
        tools = reader.table("tools") if reader.has_table("tools") else None
        timeline = build_timeline(
            telemetry, reader.requests(), tools, unavailable_sources(summary), other_gpus(summary)
        )
        chart = timeline_chart(timeline, name)
        if isinstance(chart, NotDrawn):
            (run_dir / TIMELINE_FIGURE).unlink(missing_ok=True)
            figures.append(FigureRef(f"Timeline {chart}."))
        else:
            write_run_file(run_dir, TIMELINE_FIGURE, chart)
            figures.append(FigureRef(timeline_caption(timeline), TIMELINE_FIGURE))
    return figures


def write_html_report(
    run_dir: Path, figures: Sequence[FigureRef], content: RunReportContent
) -> Path:
    """Write report.html into the run dir: the report's `content` (the headline and the
    sections report.md shows), `figures` (PNG files in the run dir) embedded with their
    captions; one not drawn is a note saying why."""
    embedded = [
        (f.caption, (Path(run_dir) / f.file).read_bytes()) for f in figures if f.file is not None
    ]
    notes = [*content.notes, *(f.caption for f in figures if f.file is None)]
    page = render_html(content.title, content.sections, embedded, notes, content.headline)
    return write_run_file(Path(run_dir), HTML_REPORT_FILE, page)


def write_run_report(reader: RunReader, summary: Summary, html: bool = True) -> list[Path]:
    """The run's figures, report.md and (with `html`) report.html; the report files' paths."""
    figures = write_figures(reader, summary)
    content = run_report_content(reader.run_dir, reader)
    written = [write_report(reader.run_dir, figures, content)]
    if html:
        written.append(write_html_report(reader.run_dir, figures, content))
    return written
