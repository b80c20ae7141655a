"""`harness report DIR [DIR ...]`: print each run's summary, write its report.md (with a
power/utilisation/activity timeline where telemetry was sampled, a latency-split chart for
agent runs; with --html also a self-contained report.html) and, for
several runs, a side-by-side breakdown."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.console import make_console
from harness.html_report import render_html
from harness.plots import latency_breakdown_chart, split_components, timeline_chart
from harness.report import (
    RunReportContent,
    breakdown_markdown,
    render_console,
    run_notes,
    run_report_content,
    write_report,
)
from harness.results import RunReader, write_run_file
from harness.run_summary import read_summary
from harness.summary import LatencySplit
from harness.timeline import build_timeline, unavailable_sources

SPLIT_FIGURE = "latency_split.png"
TIMELINE_FIGURE = "timeline.png"
BREAKDOWN_FIGURE = "breakdown.png"
HTML_REPORT_FILE = "report.html"


def add_parser(sub: Any) -> None:
    """Register `harness report`."""
    p: argparse.ArgumentParser = sub.add_parser("report", help="summarise run directories")
    p.add_argument("run_dir", type=Path, nargs="+", help="run directory (results/<run>)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the side-by-side latency breakdown of several runs "
        "(default: breakdown/ beside the first run)",
    )
    p.add_argument(
        "--html",
        action="store_true",
        help="also write a self-contained report.html (figures embedded) beside report.md",
    )
    p.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    """Handler of `harness report`."""
    console = make_console()
    splits: list[tuple[str, LatencySplit]] = []
    for run_dir in args.run_dir:
        reader = RunReader(run_dir)
        summary = read_summary(reader)
        render_console(summary, reader.manifest, console)
        for note in run_notes(summary):
            console.print(f"note: {note}", markup=False, highlight=False)
        figures: list[str] = []
        split = summary.latency_split
        if split is not None:
            name = str(reader.manifest.get("run_name") or Path(run_dir).name)
            splits.append((name, split))
            png = latency_breakdown_chart(
                [(name, split_components(split))], f"{name}: seconds per session"
            )
            write_run_file(run_dir, SPLIT_FIGURE, png)
            figures.append(SPLIT_FIGURE)
        telemetry = reader.frame("telemetry")
        if telemetry is not None:
            name = str(reader.manifest.get("run_name") or Path(run_dir).name)
            tools = reader.table("tools") if reader.has_table("tools") else None
            timeline = build_timeline(
                telemetry, reader.requests(), tools, unavailable_sources(summary)
            )
            write_run_file(run_dir, TIMELINE_FIGURE, timeline_chart(timeline, name))
            figures.append(TIMELINE_FIGURE)
        content = run_report_content(run_dir, reader)
        console.print(f"report: {write_report(run_dir, figures, content)}")
        if args.html:
            console.print(f"report: {write_html_report(run_dir, figures, content)}")
    if len(splits) > 1:
        out: Path = args.out or Path(args.run_dir[0]).resolve().parent / "breakdown"
        out.mkdir(parents=True, exist_ok=True)
        png = latency_breakdown_chart(
            [(n, split_components(s)) for n, s in splits], "Latency breakdown per workload"
        )
        write_run_file(out, BREAKDOWN_FIGURE, png)
        path = write_run_file(out, "breakdown.md", breakdown_markdown(splits, BREAKDOWN_FIGURE))
        console.print(f"breakdown: {path}")
    return 0


def write_html_report(run_dir: Path, figures: list[str], content: RunReportContent) -> Path:
    """Write report.html into the run dir: the report's `content` (the sections report.md
    shows), `figures` (PNG files in the run dir) embedded."""
    embedded = [(name, (Path(run_dir) / name).read_bytes()) for name in figures]
    page = render_html(content.title, content.sections, embedded, content.notes)
    return write_run_file(Path(run_dir), HTML_REPORT_FILE, page)
