"""Run comparison, pure: run summaries and sweep capacities in, side-by-side figures, ratios
to the first run and report sections out. Reading the directories is the command's job.

A figure a run does not have stays None (shown as n/a) and so does any ratio built on it:
a comparison never invents a 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from harness.capacity import CAPACITY_FILE, capacity_points
from harness.config_files import validation_message
from harness.errors import ResultsError
from harness.figures import MISSING, Section, format_share, lookup, slo_text, target_text
from harness.figures import format_value as format_figure
from harness.summary import LoadApplied, Summary, describe_arrivals
from harness.workload.slo import RecordedSlo, Slo

EntryKind = Literal["run", "sweep"]
COMPARISON_KIND = "harness-comparison"
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Metric:
    """One compared figure: its key (unit in the name), label, table and display format."""

    key: str
    label: str
    group: str
    digits: int = 2
    share: bool = False
    """A fraction shown as a percentage."""


_LATENCIES: tuple[tuple[str, str], ...] = (
    ("ttft", "TTFT"),
    ("tpot", "TPOT"),
    ("itl", "ITL"),
    ("e2el", "E2EL"),
)
_PERCENTILES: tuple[str, ...] = ("p50", "p90", "p99")

THROUGHPUT = "Throughput"
LATENCY = "Latency (ms)"
GOODPUT = "Goodput"
ENERGY = "Energy"
SPLIT = "Latency split (CPU vs GPU)"
CAPACITY = "Capacity at the SLO (sweeps, per device)"

METRICS: tuple[Metric, ...] = (
    Metric("request_throughput_rps", "Request throughput (req/s)", THROUGHPUT, 3),
    Metric("output_throughput_tok_s", "Output throughput (tok/s)", THROUGHPUT),
    Metric("total_throughput_tok_s", "Total throughput (tok/s)", THROUGHPUT),
    *(
        Metric(f"{key}_ms_{p}", f"{label} {p}", LATENCY)
        for key, label in _LATENCIES
        for p in _PERCENTILES
    ),
    Metric("goodput_rps", "Goodput (req/s)", GOODPUT, 3),
    Metric("slo_attainment", "SLO attainment", GOODPUT, share=True),
    Metric("j_per_output_token", "J per output token", ENERGY, 4),
    Metric("avg_power_w", "Average GPU power (W)", ENERGY, 1),
    Metric("steady_j_per_output_token", "J per output token, steady state", ENERGY, 4),
    Metric("steady_avg_power_w", "Average GPU power, steady state (W)", ENERGY, 1),
    Metric("cpu_share", "CPU share (tools + orchestration)", SPLIT, share=True),
    Metric("gpu_share", "GPU share (LLM)", SPLIT, share=True),
    Metric("capacity_tok_s", "Capacity, input + output (tok/s)", CAPACITY),
    Metric("capacity_output_tok_s", "Capacity, output (tok/s)", CAPACITY),
    Metric("capacity_requests_s", "Capacity (req/s)", CAPACITY, 3),
    Metric("capacity_sessions_s", "Capacity (sessions/s)", CAPACITY, 3),
    Metric("busy_w", "Busy power at capacity (W)", CAPACITY, 1),
    Metric("idle_w", "Idle power (W)", CAPACITY, 1),
    Metric("tool_cpu_s_per_session", "Tool CPU seconds per session", CAPACITY, 3),
)
"""Every compared figure, in table order."""

_CAPACITY_KEYS: tuple[str, ...] = tuple(m.key for m in METRICS if m.group == CAPACITY)

FLEET_METRICS: tuple[Metric, ...] = (
    Metric("gpus", "GPUs", "Fleet", 0),
    Metric("servers", "Servers", "Fleet", 0),
    Metric("it_power_avg_mw", "IT power, average (MW)", "Fleet", 3),
    Metric("it_power_peak_mw", "IT power, peak (MW)", "Fleet", 3),
    Metric("facility_power_avg_mw", "Facility power, average (MW)", "Fleet", 3),
    Metric("it_energy_mwh_per_day", "IT energy (MWh/day)", "Fleet", 2),
    Metric("facility_energy_gwh_per_year", "Facility energy (GWh/year)", "Fleet", 3),
    Metric("cpu_cores_needed", "CPU cores needed", "Fleet", 0),
)
"""Fleet figures compared across profiles (keys of harness.fleet.model.fleet_figures)."""


@dataclass(slots=True)
class CompareEntry:
    """One compared run: a plain run, or a sweep represented by its capacity point."""

    name: str
    kind: EntryKind
    path: str
    figures: dict[str, float | None]
    workload: str | None = None
    model: str | None = None
    load: float | None = None
    """The sweep's load at capacity (rate or concurrency); None for a plain run."""
    slo: Slo | None = None
    points: list[dict[str, Any]] = field(default_factory=list)
    """A sweep's load points (capacity.json `points`); empty for a plain run."""
    notes: list[str] = field(default_factory=list)
    capacity: dict[str, Any] | None = None
    """A sweep's parsed capacity.json; None for a plain run."""
    settings: dict[str, str] = field(default_factory=dict)
    """How the run was made (load, limits, server, host), as shown beside its figures."""


def number(value: Any) -> float | None:
    """A finite float, or None for anything absent, non-numeric or not finite."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def _capacity_slo(capacity: Mapping[str, Any], path: str) -> Slo | None:
    """The SLO a capacity.json names; a malformed one is an error naming the file."""
    raw = capacity.get("slo")
    if raw is None:
        return None
    try:
        return RecordedSlo.model_validate(raw)
    except ValidationError as err:
        where = f"{path}/{CAPACITY_FILE}"
        raise ResultsError(validation_message(where, err, "slo").splitlines()[0]) from None


_SUMMARY_METRICS: tuple[str, ...] = tuple(m.key for m in METRICS if m.group != CAPACITY)
"""Compared figures a run's summary gives (`Summary.figures()` names)."""


def _from_point(point: Mapping[str, Any]) -> dict[str, float | None]:
    """The compared figures a capacity.json point holds (the others None)."""
    return {key: number(point.get(key)) for key in _SUMMARY_METRICS}


def figures_from_summary(summary: Summary | None) -> dict[str, float | None]:
    """The compared figures of one run from its summary; capacity figures are None."""
    flat = summary.figures() if summary is not None else {}
    return {m.key: number(flat.get(m.key)) for m in METRICS}


def capacity_point(capacity: Mapping[str, Any]) -> dict[str, Any] | None:
    """The load point of a capacity.json that its `capacity` names, or None if none met the SLO."""
    cap = capacity.get("capacity")
    if not isinstance(cap, Mapping) or cap.get("load") is None:
        return None
    points = capacity_points(capacity)
    run_dir = cap.get("run_dir")
    for point in points:
        if run_dir is not None and point.get("run_dir") == run_dir:
            return dict(point)
    for point in points:
        if number(point.get("load")) == number(cap.get("load")):
            return dict(point)
    return None


def figures_from_capacity(
    capacity: Mapping[str, Any], point_summary: Summary | None = None
) -> dict[str, float | None]:
    """The compared figures of a sweep: its capacity point's run summary where given, gaps
    filled from the point in capacity.json, plus the per-device capacity figures."""
    figures = figures_from_summary(point_summary)
    from_point = _from_point(capacity_point(capacity) or {})
    for key, value in from_point.items():
        if figures[key] is None:
            figures[key] = value
    cap = capacity.get("capacity")
    for key in _CAPACITY_KEYS:
        figures[key] = number(cap.get(key)) if isinstance(cap, Mapping) else None
    return figures


def _text(value: Any) -> str | None:
    """A manifest value as a cell, None where absent or not a plain value."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


def _arrivals(replay: Mapping[str, Any]) -> str | None:
    """A run's arrivals in words from its manifest's `replay` block: the fallback for a run
    whose summary has no `load` (summary schema 1)."""
    pattern = replay.get("pattern")
    if not isinstance(pattern, str):
        return None
    concurrency, cap = number(replay.get("concurrency")), number(replay.get("max_concurrency"))
    return describe_arrivals(
        pattern,
        time_scale=number(replay.get("time_scale")),
        rate_per_s=number(replay.get("rate_per_s")),
        concurrency=None if concurrency is None else int(concurrency),
        max_concurrency=None if cap is None else int(cap),
    )


def _host_text(host: Any) -> str | None:
    """The host as "CPU model, N cores"."""
    if not isinstance(host, Mapping):
        return None
    return f"{host.get('cpu_model') or MISSING}, {host.get('cpu_logical_cores') or MISSING} cores"


def _gpu_text(gpu: Any) -> str | None:
    """The GPUs a manifest names, or "none (reason)"."""
    if not isinstance(gpu, Mapping):
        return None
    if gpu.get("available"):
        return ", ".join(str(g.get("name")) for g in gpu.get("gpus", [])) or MISSING
    return "none"


def _block(manifest: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A manifest's sub-mapping `key`, empty where absent or not a mapping."""
    value = manifest.get(key)
    return value if isinstance(value, Mapping) else {}


def run_settings(manifest: Mapping[str, Any], load: LoadApplied | None = None) -> dict[str, str]:
    """How a run was made: the arrivals as its summary's `load` says them (from the manifest
    for a summary without one), limits, API, server, load workers and host from its
    manifest; settings the manifest lacks are left out."""
    replay, server = _block(manifest, "replay"), _block(manifest, "server")
    version = _text(server.get("server_version"))
    replicas = server.get("replicas")
    count = len(replicas) if isinstance(replicas, list) else 1
    several = count > 1
    url = _text(server.get("base_url"))
    if several:
        url = f"{count} replicas from {url}"
    # Several replicas' kind ("replicas") would say again what the count says.
    launch = None if several else lookup(server, "launch.kind")
    server_text = " ".join(
        t for t in (url, None if version is None else f"vLLM {version}", _text(launch)) if t
    )
    values: dict[str, str | None] = {
        "arrivals": load.description if load is not None else _arrivals(replay),
        "max concurrency": _text(replay.get("max_concurrency")),
        "max requests": _text(replay.get("max_requests")),
        "duration limit (s)": _text(replay.get("duration_s")),
        "warmup requests": _text(replay.get("warmup_requests")),
        "API": _text(lookup(manifest, "workload.request.api")),
        "server": server_text or None,
        "routing": _text(lookup(manifest, "workload.routing")) if several else None,
        "load workers": _text(lookup(manifest, "plan.load_workers.used")),
        "host": _host_text(manifest.get("host")),
        "GPUs": _gpu_text(manifest.get("gpu")),
        "server GPUs (DCGM)": _gpu_text(manifest.get("gpu_metrics")),
    }
    return {k: v for k, v in values.items() if v is not None}


def sweep_settings(
    capacity: Mapping[str, Any], point_manifest: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """How a sweep was made: its load ladder and SLO target, then the capacity point's run
    settings (server, limits, host) where its manifest is at hand."""
    loads = [number(p.get("load")) for p in capacity_points(capacity)]
    ladder = ", ".join(f"{v:g}" for v in loads if v is not None) or MISSING
    values: dict[str, str] = {"load ladder": f"{capacity.get('load_kind') or 'load'}: {ladder}"}
    target = number(capacity.get("slo_target_attainment"))
    if target is not None:
        values["SLO attainment target"] = target_text(target)
    devices = _text(lookup(capacity, "capacity.devices"))
    kind = _text(lookup(capacity, "capacity.device_kind"))
    if devices is not None:
        values["devices"] = f"{devices} ({kind})" if kind else devices
    if point_manifest is not None:
        point = run_settings(point_manifest)
        point.pop("arrivals", None)  # each point's arrivals are the ladder's
        values.update(point)
    elif (host := _host_text(capacity.get("host"))) is not None:
        values["host"] = host
    return values


def settings_section(entries: Sequence[CompareEntry]) -> Section:
    """Each compared run's settings side by side, one column per run (n/a where one run
    lacks a setting another has)."""
    labels: list[str] = []
    for e in entries:
        labels.extend(k for k in e.settings if k not in labels)
    section = Section("Settings of each run", ("setting", *(e.name for e in entries)))
    for label in labels:
        section.rows.append((label, *(e.settings.get(label, MISSING) for e in entries)))
    return section


def run_entry(name: str, path: str, summary: Summary, manifest: Mapping[str, Any]) -> CompareEntry:
    """A plain run as a comparison entry."""
    workload = lookup(manifest, "workload.name")
    if workload is None and isinstance(manifest.get("workload"), str):
        workload = manifest["workload"]
    model = lookup(manifest, "server.model") or manifest.get("model")
    return CompareEntry(
        name=name,
        kind="run",
        path=path,
        figures=figures_from_summary(summary),
        workload=None if workload is None else str(workload),
        model=None if model is None or isinstance(model, Mapping) else str(model),
        slo=summary.slo,
        settings=run_settings(manifest, summary.load),
    )


def sweep_entry(
    name: str,
    path: str,
    capacity: Mapping[str, Any],
    point_summary: Summary | None = None,
    point_manifest: Mapping[str, Any] | None = None,
) -> CompareEntry:
    """A sweep (capacity.json) as a comparison entry: its capacity point's figures and its
    load points for the throughput-vs-latency curves; its settings from capacity.json and
    the capacity point's manifest where given."""
    entry = CompareEntry(
        name=name,
        kind="sweep",
        path=path,
        figures=figures_from_capacity(capacity, point_summary),
        workload=None if capacity.get("workload") is None else str(capacity["workload"]),
        model=None if lookup(capacity, "model.name") is None else str(capacity["model"]["name"]),
        load=number(lookup(capacity, "capacity.load")),
        slo=_capacity_slo(capacity, path),
        points=capacity_points(capacity),
        capacity=dict(capacity),
        settings=sweep_settings(capacity, point_manifest),
    )
    if entry.load is None:
        entry.notes.append(f"{name}: no load point met the SLO, so its figures are n/a.")
    return entry


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None where either is missing or the base is 0."""
    if value is None or base is None or base == 0:
        return None
    return value / base


def ratios_to_first(
    entries: Sequence[CompareEntry], metrics: Sequence[Metric] = METRICS
) -> list[dict[str, float | None]]:
    """Each entry's figures divided by the first entry's (the first's ratios are 1 or None)."""
    if not entries:
        return []
    base = entries[0].figures
    return [{m.key: ratio(e.figures.get(m.key), base.get(m.key)) for m in metrics} for e in entries]


def format_value(value: float | None, metric: Metric) -> str:
    """A figure for a table cell: n/a where absent, a percentage for shares, else
    harness.report.format_value to the metric's digits."""
    if metric.share:
        return format_share(value)
    return format_figure(None if value is None else float(value), metric.digits)


def format_ratio(value: float | None) -> str:
    """A ratio for a table cell, e.g. "1.25×"; n/a where absent."""
    return MISSING if value is None else f"{value:.2f}×"


def _headers(names: Sequence[str]) -> tuple[str, ...]:
    """metric, A, B, B / A, C, C / A, ..."""
    headers = ["metric", names[0]] if names else ["metric"]
    for name in names[1:]:
        headers.extend((name, f"{name} / {names[0]}"))
    return tuple(headers)


def metric_section(
    title: str,
    names: Sequence[str],
    metrics: Sequence[Metric],
    values: Sequence[Mapping[str, float | None]],
) -> Section:
    """One table of figures side by side, each after the first followed by its ratio."""
    section = Section(title, _headers(names))
    for metric in metrics:
        base = values[0].get(metric.key) if values else None
        row = [metric.label]
        for i, figures in enumerate(values):
            value = figures.get(metric.key)
            row.append(format_value(value, metric))
            if i > 0:
                row.append(format_ratio(ratio(value, base)))
        section.rows.append(tuple(row))
    return section


def comparison_sections(entries: Sequence[CompareEntry]) -> list[Section]:
    """The comparison's tables: what was compared, then each metric group side by side.
    The capacity table appears only when a sweep is compared."""
    runs = Section("Compared runs", ("run", "kind", "workload", "model", "load at capacity", "SLO"))
    for e in entries:
        load = MISSING if e.load is None else f"{e.load:g}"
        runs.rows.append(
            (
                e.name,
                e.kind,
                e.workload or MISSING,
                e.model or MISSING,
                load if e.kind == "sweep" else "",
                slo_text(e.slo, number="{:g}".format, none="none"),
            )
        )
    names = [e.name for e in entries]
    values = [e.figures for e in entries]
    groups: list[str] = []
    for metric in METRICS:
        if metric.group not in groups:
            groups.append(metric.group)
    sections = [runs, settings_section(entries)]
    for group in groups:
        if group == CAPACITY and not any(e.kind == "sweep" for e in entries):
            continue
        metrics = [m for m in METRICS if m.group == group]
        sections.append(metric_section(group, names, metrics, values))
    return sections


def fleet_comparison_section(
    scenario_name: str, profiles: Mapping[str, Mapping[str, Any]]
) -> Section:
    """The fleet figures of one scenario per profile side by side, ratios to the first."""
    names = list(profiles)
    values = [{m.key: number(profiles[n].get(m.key)) for m in FLEET_METRICS} for n in names]
    return metric_section(f"Fleet for scenario {scenario_name}", names, FLEET_METRICS, values)


def comparison_json(
    entries: Sequence[CompareEntry], fleet: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The machine-readable comparison: each run's figures and ratios to the first run,
    metric definitions, and the fleet figures when a scenario was given (null otherwise)."""
    ratios = ratios_to_first(entries)
    return {
        "kind": COMPARISON_KIND,
        "schema_version": SCHEMA_VERSION,
        "baseline": entries[0].name if entries else None,
        "metrics": [
            {"key": m.key, "label": m.label, "group": m.group, "share": m.share} for m in METRICS
        ],
        "runs": [
            {
                "name": e.name,
                "kind": e.kind,
                "path": e.path,
                "workload": e.workload,
                "model": e.model,
                "load_at_capacity": e.load,
                "slo": e.slo.limits_ms() if e.slo is not None else {},
                "figures": e.figures,
                "ratios_to_baseline": r,
            }
            for e, r in zip(entries, ratios, strict=True)
        ],
        "fleet": None if fleet is None else dict(fleet),
    }


def ratio_chart_series(entries: Sequence[CompareEntry]) -> list[tuple[str, list[float | None]]]:
    """(label, ratio per entry) for the headline metrics of the ratio bar chart."""
    headline = (
        "output_throughput_tok_s",
        "total_throughput_tok_s",
        "goodput_rps",
        "ttft_ms_p99",
        "tpot_ms_p99",
        "e2el_ms_p50",
        "j_per_output_token",
    )
    ratios = ratios_to_first(entries)
    by_key = {m.key: m for m in METRICS}
    return [(by_key[k].label, [r[k] for r in ratios]) for k in headline]
