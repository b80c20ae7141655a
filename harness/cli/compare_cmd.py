"""`harness compare RUN_A RUN_B ...`: side-by-side figures with ratios to the first run,
throughput-vs-latency curves of sweeps and, with --scenario, the fleet each sweep implies.
Writes compare.md, compare.html, compare.json and PNG plots into --out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.capacity import CAPACITY_FILE, CAPACITY_KIND
from harness.cli.console import make_console
from harness.compare import (
    CompareEntry,
    capacity_point,
    comparison_json,
    comparison_sections,
    fleet_comparison_section,
    ratio_chart_series,
    run_entry,
    sweep_entry,
)
from harness.errors import ConfigError, ResultsError
from harness.figures import Section
from harness.html_report import render_html
from harness.plots import NotDrawn, ratio_bars_chart, throughput_latency_chart
from harness.report import print_sections, sections_markdown
from harness.results import RunReader, read_json_file, write_run_file
from harness.run_summary import read_summary
from harness.summary import Summary

CURVES_FIGURE = "throughput_latency.png"
RATIOS_FIGURE = "ratios.png"
_X_AXES = {
    "total": ("total_throughput_tok_s", "total throughput, input + output (tok/s)"),
    "output": ("output_throughput_tok_s", "output throughput (tok/s)"),
}


def add_parser(sub: Any) -> None:
    """Register `harness compare`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "compare", help="compare runs and sweeps side by side (Markdown, HTML, JSON, plots)"
    )
    p.add_argument(
        "run_dir", type=Path, nargs="+", help="run directory or sweep directory (capacity.json)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: comparison/ beside the first run)",
    )
    p.add_argument(
        "--x-axis",
        choices=sorted(_X_AXES),
        default="total",
        help="throughput on the x axis of the sweep curves (default: total)",
    )
    p.add_argument("--scenario", type=Path, default=None, help="fleet scenario YAML")
    p.add_argument(
        "--profile-from-runs",
        action="store_true",
        help="with --scenario: use each compared sweep's measured profile",
    )
    p.add_argument(
        "--profile",
        type=Path,
        action="append",
        default=[],
        help="with --scenario: an extra hardware profile (YAML or sweep directory); repeatable",
    )
    p.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="with --scenario: extra accelerator catalog YAML (as for harness fleet)",
    )
    p.set_defaults(handler=compare)


def _point_run(sweep_dir: Path, capacity: dict[str, Any]) -> tuple[Summary, dict[str, Any]] | None:
    """The summary and manifest of the sweep's capacity point, where that run directory
    holds them."""
    rel = (capacity.get("capacity") or {}).get("run_dir")
    if not rel:
        return None
    point_dir = sweep_dir / str(rel)
    if not (point_dir / "manifest.json").is_file():
        return None
    reader = RunReader(point_dir)
    return read_summary(reader), reader.manifest


def load_entry(path: Path, name: str) -> CompareEntry:
    """A run or sweep directory as a comparison entry (a sweep is one holding capacity.json)."""
    if not path.is_dir():
        raise ResultsError(f"{path}: run directory not found")
    capacity_path = path / CAPACITY_FILE
    if capacity_path.is_file():
        capacity = read_json_file(capacity_path)
        if not isinstance(capacity, dict) or capacity.get("kind") != CAPACITY_KIND:
            raise ResultsError(f"{capacity_path}: not a {CAPACITY_KIND} file")
        point = _point_run(path, capacity)
        if point is None:
            return sweep_entry(name, str(path), capacity)
        return sweep_entry(name, str(path), capacity, *point)
    reader = RunReader(path)
    return run_entry(name, str(path), read_summary(reader), reader.manifest)


def _names(paths: list[Path]) -> list[str]:
    """A short unique label per run: the folder name, with its parent where names repeat."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    labels = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    return [
        label if labels.count(label) == 1 else f"{label}#{i + 1}" for i, label in enumerate(labels)
    ]


def _fleet(
    args: argparse.Namespace, entries: list[CompareEntry]
) -> tuple[dict[str, Any], list[Section], list[str]]:
    """Fleet figures of the scenario per profile (the compared sweeps', then --profile ones),
    as `harness fleet` computes them (profile names must be unique), the sections showing
    them, and notes on runs that give no profile."""
    from harness.cli.fleet_cmd import load_profiles
    from harness.fleet.catalog import load_catalog
    from harness.fleet.model import fleet_study
    from harness.fleet.profile import HardwareProfile, profile_from_capacity
    from harness.fleet.report import fleet_sections
    from harness.fleet.scenario import load_scenario

    if not args.profile_from_runs and not args.profile:
        raise ConfigError("--scenario needs profiles: pass --profile-from-runs and/or --profile")
    scenario = load_scenario(args.scenario)
    notes: list[str] = []
    measured: list[tuple[Path, HardwareProfile]] = []
    if args.profile_from_runs:
        for entry in entries:
            if entry.capacity is None:
                notes.append(f"{entry.name} is a single run, not a sweep: no fleet profile.")
                continue
            sweep_dir = Path(entry.path)
            profile = profile_from_capacity(entry.capacity, sweep_dir, sweep_dir / CAPACITY_FILE)
            measured.append((sweep_dir, profile))
    catalog = load_catalog(args.catalog)
    profiles = load_profiles(list(args.profile), catalog, loaded=measured)
    if not profiles:
        raise ConfigError("--scenario: none of the compared runs is a sweep; add --profile")
    result = fleet_study(scenario, profiles, catalog)
    sections = [
        fleet_comparison_section(scenario.name, result["profiles"]),
        *fleet_sections(result),
    ]
    return result, sections, notes


def compare(args: argparse.Namespace) -> int:
    """Handler of `harness compare`."""
    console = make_console()
    paths: list[Path] = list(args.run_dir)
    entries = [load_entry(p, n) for p, n in zip(paths, _names(paths), strict=True)]
    sections = comparison_sections(entries)
    notes = [note for e in entries for note in e.notes]
    fleet: dict[str, Any] | None = None
    if args.scenario is not None:
        fleet, fleet_secs, fleet_notes = _fleet(args, entries)
        sections.extend(fleet_secs)
        notes.extend(fleet_notes)
    elif args.profile_from_runs or args.profile:
        raise ConfigError("--profile-from-runs and --profile need --scenario")
    elif args.catalog is not None:
        raise ConfigError("--catalog needs --scenario")

    figures: list[tuple[str, str, bytes]] = []
    if len(entries) > 1:
        names = [e.name for e in entries]
        chart = ratio_bars_chart(names, ratio_chart_series(entries), "Ratios to the first run")
        if isinstance(chart, NotDrawn):
            notes.append(f"Ratio chart {chart}.")
        else:
            caption = (
                f"Each run's headline figures divided by {names[0]}'s (1 = the same; "
                "above 1: more throughput, or more latency and energy)"
            )
            figures.append((RATIOS_FIGURE, caption, chart))
    curves = [(e.name, e.points, e.slo) for e in entries if e.points]
    if curves:
        x_key, x_label = _X_AXES[args.x_axis]
        marked = [capacity_point(e.capacity) if e.capacity else None for e in entries if e.points]
        title = "Throughput vs latency (sweeps; star: capacity at the SLO)"
        png = throughput_latency_chart(curves, x_key, x_label, title, marked)
        caption = (
            f"Latency against {x_label} at each load of each sweep, its SLO limit dashed (named "
            "at the top of a panel instead where it lies far above the points) and its capacity "
            "point starred"
        )
        figures.append((CURVES_FIGURE, caption, png))

    out: Path = args.out or paths[0].resolve().parent / "comparison"
    out.mkdir(parents=True, exist_ok=True)
    drawn = {file_name for file_name, _, _ in figures}
    for stale in {RATIOS_FIGURE, CURVES_FIGURE} - drawn:
        (out / stale).unlink(missing_ok=True)  # an earlier comparison's, not this one's
    for file_name, _, png in figures:
        write_run_file(out, file_name, png)
    title = "Comparison: " + " vs ".join(e.name for e in entries)
    markdown = sections_markdown(title, sections, notes, [(f, c) for f, c, _ in figures])
    html_page = render_html(title, sections, [(c, png) for _, c, png in figures], notes)
    document = comparison_json(entries, fleet)
    written = [
        write_run_file(out, "compare.md", markdown),
        write_run_file(out, "compare.html", html_page),
        write_run_file(out, "compare.json", json.dumps(document, indent=2) + "\n"),
    ]
    print_sections(sections, console)
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    for path in written:
        console.print(f"compare: {path}", highlight=False, markup=False)
    return 0
