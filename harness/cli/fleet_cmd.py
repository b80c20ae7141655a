"""`harness fleet SCENARIO.yaml --profile P ...`: cards, servers, MW and CPU cores of a demand
scenario per hardware profile (default model, FLOPs cross-check, inverse, sweep), as tables,
JSON, Markdown or one self-contained HTML page with its charts, and with `--calibrate` the
forecast-model parameters each profile implies."""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.cli.console import make_console
from harness.errors import ConfigError
from harness.fleet.calibrate import calibration_document
from harness.fleet.catalog import (
    PRECISIONS,
    Accelerator,
    catalog_name,
    load_catalog,
    unknown_accelerator,
)
from harness.fleet.model import fleet_study
from harness.fleet.profile import HardwareProfile, load_profile
from harness.fleet.report import (
    CPU_HOSTS,
    any_cpu,
    calibration_sections,
    chart_panels,
    fleet_sections,
    fleet_title,
    is_inverse,
    profile_chart_series,
    sweep_chart_series,
)
from harness.fleet.scenario import load_scenario
from harness.html_report import render_html
from harness.report import print_sections, sections_markdown

DEFAULT_CALIBRATION_OUT = Path("results") / "fleet-calibration.json"


def add_parser(sub: Any) -> None:
    """Register `harness fleet`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "fleet", help="cards, servers, MW and CPU cores for a demand scenario, per profile"
    )
    p.add_argument(
        "scenario", type=Path, nargs="?", help="scenario YAML (optional with --calibrate)"
    )
    p.add_argument(
        "--profile",
        dest="profiles",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        help="profile YAML or sweep run directory (capacity.json); repeat or list several",
    )
    p.add_argument("--catalog", type=Path, default=None, help="extra accelerator catalog YAML")
    p.add_argument("--json", dest="json_out", type=Path, default=None, help="write JSON here")
    p.add_argument("--md", dest="md_out", type=Path, default=None, help="write Markdown here")
    p.add_argument(
        "--html",
        dest="html_out",
        type=Path,
        default=None,
        help="write one self-contained HTML page (tables and charts embedded) here",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="precision of profiles that state none (measured ones), for peak FLOP/s and MFU",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="print and write the forecast-model parameters (MFU, J/token, tok/s, W) per profile",
    )
    p.add_argument(
        "--calibrate-out",
        type=Path,
        default=DEFAULT_CALIBRATION_OUT,
        help=f"calibration JSON (default {DEFAULT_CALIBRATION_OUT})",
    )
    p.set_defaults(handler=fleet)


def _with_precision(profile: HardwareProfile, precision: str | None) -> HardwareProfile:
    """The profile with `--precision` filled in where it states none (listed as assumed)."""
    if precision is None or profile.precision is not None:
        return profile
    unavailable = {k: v for k, v in profile.unavailable.items() if k != "precision"}
    return profile.model_copy(
        update={
            "precision": precision,
            "unavailable": unavailable,
            "assumptions": [*profile.assumptions, f"precision {precision}: given by --precision"],
        }
    )


def load_profiles(
    paths: list[Path],
    catalog: dict[str, Accelerator],
    precision: str | None = None,
    loaded: Sequence[tuple[Path, HardwareProfile]] = (),
) -> list[HardwareProfile]:
    """Profiles from files and sweep directories, after the `loaded` ones (each with the path
    it came from); names must be unique and accelerators known, across all of them."""
    profiles: list[HardwareProfile] = []
    seen: dict[str, Path] = {}
    read = ((path, load_profile(path)) for path in paths)  # lazily: errors in path order
    for path, given in itertools.chain(loaded, read):
        profile = _with_precision(given, precision)
        if profile.name in seen:
            other = seen[profile.name]
            raise ConfigError(f"{path}: key 'name': profile '{profile.name}' is also in {other}")
        if profile.accelerator is not None:
            named = catalog_name(profile.accelerator, catalog)
            if named is None:
                why = unknown_accelerator(profile.accelerator, catalog)
                raise ConfigError(f"{path}: key 'accelerator': {why} (add it with --catalog)")
            profile = profile.model_copy(update={"accelerator": named})
        seen[profile.name] = path
        profiles.append(profile)
    return profiles


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


def fleet_charts(result: dict[str, Any]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(caption, PNG) of a study's charts: GPUs and facility MW per profile, and for a scenario
    with a `sweep:` cards and MW against the swept parameter; and a note for each chart not
    drawn, saying why (matplotlib loaded only here)."""
    from harness.plots import NotDrawn, empty_fleet_panels, fleet_profiles_chart, fleet_sweep_chart

    title = fleet_title(result)
    hosts = f" ({CPU_HOSTS} for profiles measured on a CPU server)" if any_cpu(result) else ""
    if is_inverse(result):
        budget = (result.get("scenario") or {}).get("facility_power_mw")
        what = "The chart of the sessions per day the power budget serves"
        caption = (
            f"Sessions per day that {budget:,.6g} MW of facility power serves, and the "
            f"GPUs{hosts} it runs, per profile (n/a: the profile lacks a figure it needs)"
        )
    else:
        what = "The chart of the GPUs and facility power per profile"
        caption = (
            f"GPUs{hosts} the demand needs and the facility power they draw (average and "
            "peak, MW), per profile (n/a: the profile lacks a figure it needs)"
        )
    series, panels = profile_chart_series(result), chart_panels(result)
    empty = empty_fleet_panels(series, panels)
    if empty:
        caption += f"; not drawn, no profile has a figure for it: {', '.join(empty)}"
    charts: list[tuple[str, bytes]] = []
    notes: list[str] = []
    chart = fleet_profiles_chart(series, title, panels)
    if isinstance(chart, NotDrawn):
        notes.append(f"{what} is {chart}.")
    else:
        charts.append((caption, chart))
    sweep = sweep_chart_series(result)
    if sweep is not None:
        axis, curves = sweep
        drawn = fleet_sweep_chart(curves, axis, title)
        if isinstance(drawn, NotDrawn):
            notes.append(f"The chart against {axis} is {drawn}.")
        else:
            charts.append(
                (
                    f"GPUs{hosts} and average facility power (MW) against {axis}, "
                    "one line per profile",
                    drawn,
                )
            )
    return charts, notes


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _write_study(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    """Write the study's --json, --md and --html files; returns a line naming each one."""
    title, sections = fleet_title(result), fleet_sections(result)
    written = []
    if args.json_out is not None:
        _write_json(args.json_out, result)
        written.append(f"fleet JSON: {args.json_out}")
    if args.md_out is not None:
        _write_text(args.md_out, sections_markdown(title, sections))
        written.append(f"fleet Markdown: {args.md_out}")
    if args.html_out is not None:
        charts, notes = fleet_charts(result)
        _write_text(args.html_out, render_html(title, sections, charts, notes))
        written.append(f"fleet HTML: {args.html_out}")
    return written


def fleet(args: argparse.Namespace) -> int:
    """Handler of `harness fleet`. Every file is written before anything is printed, so a
    reader that goes away (`| head`) or a killed process does not lose them."""
    if args.scenario is None:
        if not args.calibrate:
            raise ConfigError("harness fleet: give a scenario YAML (or --calibrate)")
        outputs = (("--json", args.json_out), ("--md", args.md_out), ("--html", args.html_out))
        given = [flag for flag, out in outputs if out is not None]
        if given:
            flags = ", ".join(given)
            raise ConfigError(f"harness fleet: {flags}: no study to write without a scenario YAML")
    console = make_console()
    catalog = load_catalog(args.catalog)
    profiles = load_profiles(list(args.profiles), catalog, args.precision)
    result = None
    written: list[str] = []
    if args.scenario is not None:
        result = fleet_study(load_scenario(args.scenario), profiles, catalog)
        written += _write_study(args, result)
    document = None
    if args.calibrate:
        document = calibration_document(profiles, catalog)
        _write_json(args.calibrate_out, document)
        written.append(f"calibration: {args.calibrate_out}")
    if result is not None:
        print_sections(fleet_sections(result), console)
    if document is not None:
        print_sections(calibration_sections(document), console)
    for line in written:
        console.print(line)
    return 0
