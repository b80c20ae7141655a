"""`harness report DIR`: print a run's summary and write its report.md."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.errors import ResultsError
from harness.report import render_console, write_report
from harness.results import RunReader


def add_parser(sub: Any) -> None:
    """Register `harness report`."""
    p: argparse.ArgumentParser = sub.add_parser("report", help="summarise a run directory")
    p.add_argument("run_dir", type=Path, nargs="+", help="run directory (results/<run>)")
    p.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    """Handler of `harness report`."""
    console = Console()
    for run_dir in args.run_dir:
        reader = RunReader(run_dir)
        summary = reader.summary
        if summary is None:
            raise ResultsError(f"{run_dir}: no summary.json (the run did not finish)")
        render_console(summary, reader.manifest, console)
        console.print(f"report: {write_report(run_dir)}")
    return 0
