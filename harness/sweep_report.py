"""A sweep's own report, from its capacity.json: the load ladder (each point's figures and
verdict), the capacity point, why the ladder stopped, lower loads to try where every load
missed the SLO, and the throughput-latency curves with the capacity point marked. The console
table of `harness sweep` is the same ladder section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from harness.capacity import (
    CAPACITY_FILE,
    CAPACITY_KIND,
    capacity_points,
    lower_loads,
)
from harness.compare import capacity_point
from harness.config_files import validation_message
from harness.errors import ResultsError
from harness.figures import (
    MISSING,
    Section,
    attainment_text,
    format_value,
    slo_text,
    target_text,
)
from harness.html_report import render_html
from harness.plots import throughput_latency_chart
from harness.report import print_sections, sections_markdown
from harness.results import MANIFEST_FILE, read_json_file, write_run_file
from harness.workload.slo import RecordedSlo

SWEEP_REPORT_FILE = "report.md"
SWEEP_HTML_FILE = "report.html"
CURVES_FIGURE = "throughput_latency.png"
CURVES_X_KEY = "total_throughput_tok_s"
CURVES_X_LABEL = "total throughput, input + output (tok/s)"

LOAD_FLAGS = {"rate": "--rates", "concurrency": "--concurrencies"}
"""The `harness sweep` option that sets each kind of load ladder."""
LOAD_UNITS = {"rate": "sessions/s", "concurrency": "sessions in flight"}

STOP_REASONS = {
    "saturated": "the server was saturated (the last load missed the SLO and served less than "
    "5 % more than an earlier one)",
    "slo_missed_twice": "two loads in a row missed the SLO",
}
"""capacity.json `stop_reason` values in words."""

WINDOW_TEXT = {
    "steady": "the steady window (the batch near its maximum)",
    "whole-run": "the whole run (ramp-up and drain included)",
}
"""capacity.json `capacity_window` and `busy_w_window` values in words."""


def window_text(value: Any) -> str:
    """Which window a capacity figure was taken over, in words; n/a where none."""
    return WINDOW_TEXT.get(str(value), str(value)) if value is not None else MISSING


@dataclass(slots=True)
class SweepReport:
    """What a sweep's report shows: its title, notes (verdicts in words) and tables."""

    title: str
    notes: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def is_sweep_dir(path: Path) -> bool:
    """Whether `path` holds a sweep (a capacity.json, no run manifest) rather than a run."""
    return (Path(path) / CAPACITY_FILE).is_file() and not (Path(path) / MANIFEST_FILE).exists()


def read_capacity(sweep_dir: Path) -> dict[str, Any]:
    """A sweep directory's capacity.json; an error naming the file where it is not one."""
    path = Path(sweep_dir) / CAPACITY_FILE
    doc = read_json_file(path)
    if not isinstance(doc, dict) or doc.get("kind") != CAPACITY_KIND:
        raise ResultsError(f"{path}: not a {CAPACITY_KIND} file")
    if doc.get("load_kind") not in LOAD_FLAGS:
        raise ResultsError(f"{path}: key 'load_kind': expected 'rate' or 'concurrency'")
    return doc


def _slo(doc: Mapping[str, Any], where: str) -> RecordedSlo | None:
    raw = doc.get("slo")
    if raw is None:
        return None
    try:
        return RecordedSlo.model_validate(raw)
    except ValidationError as err:
        raise ResultsError(validation_message(where, err, "slo").splitlines()[0]) from None


def _target(doc: Mapping[str, Any]) -> float:
    value = doc.get("slo_target_attainment")
    return float(value) if isinstance(value, int | float) else 1.0


def _capacity(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    cap = doc.get("capacity")
    return cap if isinstance(cap, Mapping) else {}


def verdict(point: Mapping[str, Any], capacity_run_dir: Any = None) -> str:
    """A load point's verdict in words: met (the capacity point says so), missed, or failed."""
    if point.get("error"):
        return f"failed: {point['error']}"
    if not point.get("meets_slo"):
        return "missed"
    return "met (capacity)" if point.get("run_dir") == capacity_run_dir else "met"


def ladder_section(doc: Mapping[str, Any], *, full: bool = True) -> Section:
    """The load ladder, one row per point by load: throughput, latency percentiles, SLO
    attainment (digits enough to agree with the verdict) and the verdict; `full` adds
    requests, p50s and the point's run directory (the console shows the rest)."""
    kind = str(doc["load_kind"])
    target = _target(doc)
    cap_dir = _capacity(doc).get("run_dir")
    headers = [f"{kind} ({LOAD_UNITS[kind]})"]
    if full:
        headers += ["requests ok", "failed"]
    headers += ["total tok/s", "output tok/s"]
    latency = ("ttft_ms", "tpot_ms", "e2el_ms")
    stats = ("p50", "p99") if full else ("p99",)
    headers += [f"{m.removesuffix('_ms').upper()} {s} ms" for m in latency for s in stats]
    headers += [f"SLO attainment (target {target_text(target)})", "verdict"]
    if full:
        headers.append("run")
    section = Section("Load ladder", tuple(headers))
    for p in capacity_points(doc):
        row = [MISSING if p.get("load") is None else f"{p['load']:g}"]
        if full:
            row += [
                format_value(p.get("requests_completed")),
                format_value(p.get("requests_failed")),
            ]
        row += [format_value(p.get("total_throughput_tok_s"), 1)]
        row += [format_value(p.get("output_throughput_tok_s"), 1)]
        row += [format_value(p.get(f"{m}_{s}"), 1) for m in latency for s in stats]
        row += [attainment_text(_number(p.get("slo_attainment")), target), verdict(p, cap_dir)]
        if full:
            row.append(str(p.get("run_dir") or MISSING))
        section.rows.append(tuple(row))
    return section


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def capacity_section(doc: Mapping[str, Any]) -> Section:
    """The capacity at the SLO, per device, with what bounds it."""
    cap = _capacity(doc)
    kind = str(doc["load_kind"])
    section = Section("Capacity at the SLO (per device)", ("figure", "value"))
    load = cap.get("load")
    devices = f"{cap.get('devices', MISSING)} {cap.get('device_kind', '')}".strip()
    if cap.get("accelerator"):
        devices += f" ({cap['accelerator']})"
    nxt = cap.get("next_load_missed")
    rows = [
        (f"{kind} at capacity", MISSING if load is None else f"{load:g}"),
        ("capacity, input + output (tok/s)", format_value(cap.get("capacity_tok_s"), 1)),
        ("capacity, output (tok/s)", format_value(cap.get("capacity_output_tok_s"), 1)),
        ("capacity (requests/s)", format_value(cap.get("capacity_requests_s"), 3)),
        ("capacity (sessions/s)", format_value(cap.get("capacity_sessions_s"), 3)),
        ("tokens/s over", window_text(cap.get("capacity_window"))),
        (
            "upper bound",
            MISSING
            if load is None
            else "none: no higher load was tried"
            if nxt is None
            else f"below {kind} {nxt:g} (the next load tried missed the SLO)",
        ),
        ("devices", devices),
        ("busy power (W)", format_value(cap.get("busy_w"), 1)),
        ("busy power over", window_text(cap.get("busy_w_window"))),
        ("idle power (W)", format_value(cap.get("idle_w"), 1)),
        ("SLO", slo_text(_slo(doc, CAPACITY_FILE), number=lambda v: f"{v:,.6g}")),
        ("target attainment", target_text(_target(doc))),
        ("stopped", stop_text(doc)),
        ("status", str(doc.get("status", MISSING))),
    ]
    section.rows.extend(rows)
    return section


def stop_text(doc: Mapping[str, Any]) -> str:
    """Why the ladder ended where it did, in words."""
    reason = doc.get("stop_reason")
    if doc.get("status") == "interrupted":
        return "interrupted by a stop signal"
    if doc.get("status") == "failed":
        return "the sweep failed before its last load"
    if reason:
        return f"early: {STOP_REASONS.get(str(reason), str(reason))}"
    return "every load given was run"


def lower_loads_note(doc: Mapping[str, Any]) -> str | None:
    """Where every load missed the SLO: which lower loads to try (halving down from the lowest
    tried, as the sweep option), or that there is none lower; None where some load met it."""
    kind = str(doc["load_kind"])
    points = capacity_points(doc)
    if not points or any(p.get("meets_slo") for p in points):
        return None
    lowest = min(float(p["load"]) for p in points)
    loads = lower_loads(points, integer=kind == "concurrency")
    if not loads:
        return (
            f"every load missed the SLO, {kind} {lowest:g} included, and there is no lower "
            f"{kind}: relax the SLO or --slo-attainment, or use a faster server"
        )
    return (
        f"every load missed the SLO, the lowest ({kind} {lowest:g}) included: try lower loads, "
        f"{LOAD_FLAGS[kind]} {format_loads(loads)}"
    )


def format_loads(loads: Sequence[float]) -> str:
    """Loads as a sweep option's value: `0.125,0.25,0.5`."""
    return ",".join(f"{x:g}" for x in loads)


def sweep_notes(doc: Mapping[str, Any]) -> list[str]:
    """The report's verdicts in words: the capacity (or why there is none), lower loads to
    try, noisy points, points the client may have paced, the power note."""
    cap = _capacity(doc)
    kind = str(doc["load_kind"])
    notes: list[str] = []
    if cap.get("capacity_tok_s") is not None and cap.get("load") is not None:
        notes.append(
            f"capacity at the SLO: {kind} {cap['load']:g}, {cap['capacity_tok_s']:,.1f} tok/s "
            f"per {cap.get('device_kind', 'device')} device"
        )
    else:
        notes.append("no load met the SLO: capacity unavailable")
    lower = lower_loads_note(doc)
    if lower is not None:
        notes.append(lower)
    missed = cap.get("lower_loads_missed") if cap.get("load") is not None else None
    if missed:
        lower_missed = ", ".join(f"{x:g}" for x in missed)
        notes.append(f"lower loads missed the SLO ({lower_missed}): a noisy server")
    bound = [f"{p['load']:g}" for p in capacity_points(doc) if p.get("client_bound")]
    if bound:
        notes.append(
            f"the client may have set the pace at {kind} {', '.join(bound)}: give it more "
            "--workers or cores before trusting those points"
        )
    notes.append(f"stopped: {stop_text(doc)}")
    if cap.get("power_note"):
        notes.append(str(cap["power_note"]))
    return notes


def sweep_report(doc: Mapping[str, Any]) -> SweepReport:
    """The report of a sweep's capacity.json."""
    name = str(doc.get("name") or "sweep")
    workload = doc.get("workload")
    title = f"Sweep {name}" + (f": {workload}" if workload else "")
    return SweepReport(
        title=title,
        notes=sweep_notes(doc),
        sections=[ladder_section(doc), capacity_section(doc)],
    )


def curves_chart(doc: Mapping[str, Any]) -> bytes | None:
    """Throughput-vs-latency curves of the sweep with its capacity point marked; None where
    no point has a throughput to draw."""
    points = capacity_points(doc)
    if not any(p.get(CURVES_X_KEY) is not None for p in points):
        return None
    best = capacity_point(doc)
    name = str(doc.get("name") or "sweep")
    return throughput_latency_chart(
        [(name, points, _slo(doc, CAPACITY_FILE))],
        CURVES_X_KEY,
        CURVES_X_LABEL,
        f"{name}: throughput vs latency (star: capacity at the SLO)",
        marked=[best],
    )


def write_sweep_report(sweep_dir: Path) -> list[Path]:
    """Write the sweep's report.md and report.html (and its curves) into `sweep_dir`;
    returns the report paths."""
    sweep_dir = Path(sweep_dir)
    doc = read_capacity(sweep_dir)
    content = sweep_report(doc)
    figures: list[tuple[str, str, bytes]] = []
    png = curves_chart(doc)
    if png is not None:
        caption = (
            "Latency percentiles against throughput at each load point; the dashed line is "
            "the SLO (named at the top of a panel instead where it lies far above the points), "
            "the star the capacity point"
        )
        write_run_file(sweep_dir, CURVES_FIGURE, png)
        figures.append((CURVES_FIGURE, caption, png))
    else:
        content.notes.append("no curves: no load point measured a throughput")
    markdown = sections_markdown(
        content.title, content.sections, content.notes, [(f, c) for f, c, _ in figures]
    )
    page = render_html(
        content.title, content.sections, [(c, b) for _, c, b in figures], content.notes
    )
    return [
        write_run_file(sweep_dir, SWEEP_REPORT_FILE, markdown),
        write_run_file(sweep_dir, SWEEP_HTML_FILE, page),
    ]


def report_sweep(sweep_dir: Path, console: Console) -> list[Path]:
    """`harness report SWEEP_DIR`: the ladder and verdicts printed, report.md and report.html
    (with the curves) written into the sweep directory; returns the report paths."""
    doc = read_capacity(sweep_dir)
    print_sections([ladder_section(doc, full=False)], console)
    for note in sweep_notes(doc):
        console.print(f"note: {note}", markup=False, highlight=False)
    written = write_sweep_report(sweep_dir)
    for path in written:
        console.print(f"report: {path}", markup=False, highlight=False)
    return written
