"""`harness report DIR [DIR ...]`: print each run's summary, write its report.md (with a
power/utilisation/activity timeline where telemetry was sampled, a latency-split chart for
agent runs) and its self-contained report.html where asked (--html) or where the run
already has one (the end of `harness run` writes both: neither is left out of date), and,
for several runs, a side-by-side breakdown."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.console import make_console
from harness.csv_export import write_csv
from harness.plots import latency_breakdown_chart, split_components
from harness.report import breakdown_markdown, render_console, run_notes
from harness.report_files import HTML_REPORT_FILE, run_name, write_run_report
from harness.results import RunReader, write_run_file
from harness.run_summary import read_summary
from harness.summary import LatencySplit
from harness.sweep_report import is_sweep_dir, report_sweep

BREAKDOWN_FIGURE = "breakdown.png"


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
        help="also write a self-contained report.html (figures embedded) beside report.md; "
        "a run that has one (the end of harness run writes it) gets it rewritten anyway",
    )
    p.add_argument(
        "--csv",
        action="store_true",
        help="also write requests.csv (one row per request) and summary.csv (name, value, "
        "unit per figure) into each run directory",
    )
    p.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    """Handler of `harness report`."""
    console = make_console()
    splits: list[tuple[str, LatencySplit]] = []
    for run_dir in args.run_dir:
        if is_sweep_dir(run_dir):  # a sweep's own report (its ladder), not a run's
            report_sweep(Path(run_dir), console)
            continue
        reader = RunReader(run_dir)
        summary = read_summary(reader)
        render_console(summary, reader.manifest, console)
        for note in run_notes(summary):
            console.print(f"note: {note}", markup=False, highlight=False)
        if summary.latency_split is not None:
            splits.append((run_name(reader), summary.latency_split))
        html = args.html or (reader.run_dir / HTML_REPORT_FILE).is_file()
        for path in write_run_report(reader, summary, html=html):
            console.print(f"report: {path}", markup=False, highlight=False)
        if args.csv:
            for path in write_csv(reader, summary):
                console.print(f"csv: {path}")
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
