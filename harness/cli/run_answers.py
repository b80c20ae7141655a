"""The files that end every `harness run`: report.md and report.html (unless `--no-report`)
and, with `--csv`, requests.csv and summary.csv. A failure to write one is a warning: the
run's results are already written, and `harness report RUN_DIR` can try again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.csv_export import write_csv
from harness.report_files import write_run_report
from harness.results import RunReader
from harness.summary import Summary


def write_answers(
    out: Path,
    summary: Summary | None,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    *,
    report: bool = True,
    csv: bool = False,
) -> list[Path]:
    """Write the run's report files and CSV into `out` as asked; the paths written. Nothing
    is written for a run that left no summary."""
    if summary is None or not (report or csv):
        return []
    written: list[Path] = []
    steps: list[tuple[str, Callable[[], list[Path]]]] = []
    if report:
        steps.append(("report", lambda: write_run_report(RunReader(out), summary)))
    if csv:
        steps.append(("csv", lambda: write_csv(RunReader(out), summary)))
    for what, step in steps:
        again = f"harness report {out}" + (" --csv" if what == "csv" else " --html")
        written.extend(write_or_warn(what, step, again, say, warn))
    return written


def write_or_warn(
    what: str,
    step: Callable[[], list[Path]],
    again: str,
    say: Callable[[str], None],
    warn: Callable[[str], None],
    kept: str = "the run's results",
) -> list[Path]:
    """Run one step that writes `what` and say each path written; a failure is a warning
    naming the command (`again`) that tries again, since `kept` is already written."""
    try:
        paths = step()
    except Exception as err:  # any failure to render: the results themselves are written
        why = f"{type(err).__name__}: {err}"
        warn(f"{what} not written ({why}); {kept} are kept: {again}")
        return []
    for path in paths:
        say(f"{what}: {path}")
    return paths
