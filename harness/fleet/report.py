"""Fleet study tables (harness.report.Section) for the console, Markdown and HTML: the
scenario, per-profile fleet figures, the FLOPs cross-check, implied MFU, the inverse
question, a sweep, null figures with their reasons, and every assumption."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.figures import Section, format_share, format_value

Row = tuple[str, str, Callable[[Any], str]]


def _num(digits: int) -> Callable[[Any], str]:
    return lambda v: format_value(float(v) if isinstance(v, int | float) else v, digits)


def _count(value: Any) -> str:
    """A count: whole numbers with separators (floats rounded for display only)."""
    if isinstance(value, float):
        return f"{value:,.0f}"
    return format_value(value)


def _big(value: Any) -> str:
    """Large quantities (tokens, FLOP) with a T/G/M suffix."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return format_value(value)
    if abs(value) >= 1e21:
        return f"{value:.3e}"
    for scale, suffix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(value) >= scale:
            return f"{value / scale:,.2f} {suffix}"
    return f"{value:,.1f}"


def _plain(value: Any) -> str:
    """A scenario value as written: up to 6 significant digits, large ones with a suffix."""
    if isinstance(value, float) and abs(value) >= 1e6:
        return _big(value)
    if isinstance(value, float):
        return f"{value:,.6g}"
    return format_value(value)


def _text(value: Any) -> str:
    return format_value(value)


_FLEET_ROWS: tuple[Row, ...] = (
    ("Tokens per day (input+output)", "tokens_per_day", _big),
    ("Capacity per GPU (tok/s, input+output)", "capacity_tok_s", _num(0)),
    ("GPUs", "gpus", _count),
    ("Servers", "servers", _count),
    ("Average load of the GPUs", "avg_load_fraction", format_share),
    ("IT power, average (MW)", "it_power_avg_mw", _num(2)),
    ("IT power, peak (MW)", "it_power_peak_mw", _num(2)),
    ("Facility power, average (MW)", "facility_power_avg_mw", _num(2)),
    ("Facility power, peak (MW)", "facility_power_peak_mw", _num(2)),
    ("GPU energy (MWh/day)", "gpu_energy_mwh_per_day", _num(1)),
    ("IT energy (MWh/day)", "it_energy_mwh_per_day", _num(1)),
    ("Facility energy (GWh/year)", "facility_energy_gwh_per_year", _num(1)),
    ("IT energy per token (J)", "it_energy_j_per_token", _num(4)),
    ("CPU cores needed (tools)", "cpu_cores_needed", _count),
    ("CPU cores the GPU servers bring", "cpu_cores_available", _count),
    ("CPU cores sufficient", "cpu_cores_sufficient", _text),
)
_FLOPS_ROWS: tuple[Row, ...] = (
    ("Model (from)", "model_label", _text),
    ("FLOPs per token (2N + 2·n_layer·n_ctx·d_attn)", "flops_per_token", _big),
    ("FLOP per day", "flop_per_day", _big),
    ("Precision", "precision", _text),
    ("Peak dense FLOP/s", "peak_flop_s", _big),
    ("Utilisation assumed (scenario)", "flops_utilization", format_share),
    ("GPUs by the FLOPs rule (average load)", "gpus", _count),
    ("GPUs by the FLOPs rule × peak_to_average / headroom", "gpus_peak_basis", _count),
    ("GPUs by the default model (peak ÷ headroom)", "default_gpus", _count),
    ("FLOPs rule × peak_to_average / headroom ÷ default", "gpus_ratio_to_default_model", _num(2)),
)
_MFU_ROWS: tuple[Row, ...] = (
    ("Capacity per GPU (tok/s)", "capacity_tok_s", _num(0)),
    ("Profile's FLOPs per token", "profile_flops_per_token", _big),
    ("Precision", "precision", _text),
    ("Peak dense FLOP/s", "peak_flop_s", _big),
    ("Implied MFU", "implied_mfu", format_share),
)
_INVERSE_ROWS: tuple[Row, ...] = (
    ("Facility power budget (MW)", "facility_power_mw", _num(1)),
    ("IT power budget (MW)", "it_power_budget_mw", _num(1)),
    ("Server peak power (W)", "server_peak_w", _num(0)),
    ("Servers", "servers", _count),
    ("GPUs", "gpus", _count),
    ("Sessions per day, GPU-bound", "sessions_per_day_gpu_bound", _big),
    ("Sessions per day, CPU-bound", "sessions_per_day_cpu_bound", _big),
    ("Sessions per day served", "sessions_per_day", _big),
    ("Bound by", "binding", _text),
    ("Tokens per day served", "tokens_per_day", _big),
    ("Requests per day served", "requests_per_day", _big),
    ("Users per day served", "users_per_day", _big),
)
_SWEEP_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("tokens/day", "tokens_per_day", _big),
    ("GPUs", "gpus", _count),
    ("servers", "servers", _count),
    ("IT avg MW", "it_power_avg_mw", _num(1)),
    ("IT peak MW", "it_power_peak_mw", _num(1)),
    ("facility avg MW", "facility_power_avg_mw", _num(1)),
    ("facility GWh/yr", "facility_energy_gwh_per_year", _num(0)),
    ("CPU cores", "cpu_cores_needed", _count),
    ("GPUs (FLOPs rule, peak ÷ headroom)", "flops_gpus_peak_basis", _count),
)
CPU_HOSTS = "CPU hosts"
"""What a CPU-measured profile's "GPUs" are: the count stays under `gpus` in the JSON."""
_HOST_SUFFIX: dict[str, str] = {
    "gpus": f" ({CPU_HOSTS})",
    "default_gpus": f" ({CPU_HOSTS})",
    "gpus_peak_basis": f" ({CPU_HOSTS})",
    "capacity_tok_s": " (per CPU host)",
    "capacity_output_tok_s": " (per CPU host)",
}
"""Cells of a CPU-measured profile that name their unit, so a host is not read as a GPU."""


def _is_cpu(figures: Mapping[str, Any]) -> bool:
    """Whether a profile's figures were measured on a CPU server (device_kind "cpu")."""
    return figures.get("device_kind") == "cpu"


def _cell(key: str, value: Any, fmt: Callable[[Any], str], cpu: bool) -> str:
    """A formatted cell; a CPU profile's device counts and capacity say they are per host."""
    text = fmt(value)
    if cpu and value is not None and key in _HOST_SUFFIX:
        text += _HOST_SUFFIX[key]
    return text


def _matrix(title: str, rows: Sequence[Row], columns: Mapping[str, Mapping[str, Any]]) -> Section:
    """Figures as rows, one column per profile (rows no profile has are left out; rows
    that are n/a for every profile are named in one line under the table)."""
    sec = Section(title, ("figure", *columns))
    absent: list[str] = []
    for label, key, fmt in rows:
        if not any(key in col for col in columns.values()):
            continue
        if columns and all(col.get(key) is None for col in columns.values()):
            absent.append(label)
            continue
        cells = (_cell(key, col.get(key), fmt, _is_cpu(col)) for col in columns.values())
        sec.rows.append((label, *cells))
    if absent:
        sec.note = f"n/a for every profile: {', '.join(absent)} (why: Figures not available)"
    return sec


def _scenario_section(scenario: Any) -> Section:
    sec = Section("Scenario", ("key", "value"))
    if not isinstance(scenario, Mapping):
        sec.rows.append(("scenario", format_value(scenario)))
        return sec
    sec.rows.append(("name", format_value(scenario.get("name"))))
    if scenario.get("description"):
        sec.rows.append(("description", str(scenario["description"])))
    sec.rows.append(("demand", format_value(scenario.get("demand_basis"))))
    sec.rows.append(("tokens per day", _big(scenario.get("demand_tokens_per_day"))))
    skip = {"name", "description", "demand_basis", "demand_tokens_per_day", "assumptions"}
    skip.add("tokens_per_day")
    for key, value in scenario.items():
        if key in skip or value is None or value == [] or value == {}:
            continue
        if isinstance(value, Mapping):
            text = ", ".join(f"{k}={_plain(v)}" for k, v in value.items() if v is not None)
        else:
            text = _plain(value)
        sec.rows.append((key, text))
    return sec


def _reasons(profiles: Mapping[str, Mapping[str, Any]]) -> Section:
    """Why figures are null: one row per reason, with the figures and profiles it holds
    for (not one row per profile and figure)."""
    sec = Section("Figures not available", ("reason", "figures", "profiles"))
    grouped: dict[str, tuple[list[str], list[str]]] = {}
    for name, fig in profiles.items():
        for part, reasons in (
            ("", fig.get("reasons")),
            ("flops.", (fig.get("flops") or {}).get("reasons")),
            ("inverse.", (fig.get("inverse") or {}).get("reasons")),
        ):
            for key, reason in (reasons or {}).items():
                keys, names = grouped.setdefault(str(reason), ([], []))
                if part + key not in keys:
                    keys.append(part + key)
                if name not in names:
                    names.append(name)
    for reason, (keys, names) in grouped.items():
        who = "every profile" if len(names) == len(profiles) > 1 else ", ".join(names)
        sec.rows.append((reason, ", ".join(keys), who))
    return sec


def _sweep(profiles: Mapping[str, Mapping[str, Any]]) -> Section | None:
    sweeps = {n: f["sweep"] for n, f in profiles.items() if f.get("sweep")}
    if not sweeps:
        return None
    first = next(iter(sweeps.values()))
    label = first.get("label") or first.get("parameter")
    sec = Section(f"Sweep: {label}", (str(first.get("parameter")), "profile"))
    sec.headers += tuple(c[0] for c in _SWEEP_COLUMNS)
    rows = [(row, name) for name, s in sweeps.items() for row in s.get("rows", [])]
    rows.sort(key=lambda r: float(r[0].get("value", 0.0)))
    for row, name in rows:
        cpu = _is_cpu(profiles[name])
        cells = tuple(_cell(key, row.get(key), fmt, cpu) for _, key, fmt in _SWEEP_COLUMNS)
        sec.rows.append((_plain(row.get("value")), name, *cells))
    return sec


def _assumptions(profiles: Mapping[str, Mapping[str, Any]]) -> Section:
    sec = Section("Assumptions", ("assumption",))
    seen: list[str] = []
    for fig in profiles.values():
        seen.extend(a for a in fig.get("assumptions", []) if a not in seen)
    sec.rows.extend((f"{i}. {text}",) for i, text in enumerate(seen, 1))
    return sec


def fleet_title(result: Mapping[str, Any]) -> str:
    """The heading of a fleet study: "Fleet study: SCENARIO"."""
    scenario = result.get("scenario")
    name = scenario.get("name") if isinstance(scenario, Mapping) else scenario
    return f"Fleet study: {name}" if name else "Fleet study"


def fleet_sections(result: Mapping[str, Any]) -> list[Section]:
    """The tables of a fleet study `{"scenario": ..., "profiles": {NAME: fleet_figures}}`."""
    profiles: Mapping[str, Mapping[str, Any]] = result.get("profiles") or {}
    fleet = {
        n: {
            **f,
            **{k: (f.get("inputs") or {}).get(k) for k in ("tokens_per_day", "capacity_tok_s")},
        }
        for n, f in profiles.items()
    }
    flops = {}
    for name, fig in profiles.items():
        part = dict(fig.get("flops") or {})
        part["device_kind"] = fig.get("device_kind")
        model = part.get("model_name") or part.get("model_from")
        part["model_label"] = None if model is None else f"{model} ({part.get('model_from')})"
        part["default_gpus"] = fig.get("gpus")
        part["capacity_tok_s"] = (fig.get("inputs") or {}).get("capacity_tok_s")
        flops[name] = part
    sections = [
        _scenario_section(result.get("scenario")),
        _matrix("Fleet per profile (default model)", _FLEET_ROWS, fleet),
        _matrix("FLOPs cross-check (the seeds' forecast model)", _FLOPS_ROWS, flops),
        _matrix("Utilisation (MFU) implied by each profile", _MFU_ROWS, flops),
    ]
    inverse = {
        n: {**f["inverse"], "device_kind": f.get("device_kind")}
        for n, f in profiles.items()
        if f.get("inverse")
    }
    if inverse:
        sections.append(_matrix("What the facility power serves (inverse)", _INVERSE_ROWS, inverse))
    sweep = _sweep(profiles)
    if sweep is not None:
        sections.append(sweep)
    sources = Section("Profiles", ("profile", "origin", "device", "accelerator", "source"))
    for name, fig in profiles.items():
        sources.rows.append(
            (
                name,
                format_value(fig.get("origin")),
                format_value(fig.get("device_kind")),
                format_value(fig.get("accelerator")),
                format_value(fig.get("source")),
            )
        )
    sections.append(sources)
    reasons = _reasons(profiles)
    if reasons.rows:
        sections.append(reasons)
    sections.append(_assumptions(profiles))
    return sections


def calibration_sections(document: Mapping[str, Any]) -> list[Section]:
    """The forecast-model parameters of each profile as one table (figures × profiles)."""
    rows: tuple[Row, ...] = (
        ("Origin", "origin", _text),
        ("Device", "device_kind", _text),
        ("Accelerator", "accelerator", _text),
        ("Capacity per GPU (tok/s, input+output)", "capacity_tok_s", _num(1)),
        ("Capacity per GPU (output tok/s)", "capacity_output_tok_s", _num(1)),
        ("Busy power (W)", "busy_w", _num(1)),
        ("Idle power (W)", "idle_w", _num(1)),
        ("J per token at capacity (GPU)", "j_per_token_at_capacity", _num(4)),
        ("J per output token at capacity (GPU)", "j_per_output_token_at_capacity", _num(4)),
        *_MFU_ROWS[1:],
    )
    profiles = document.get("profiles") or {}
    sections = [_matrix("Forecast-model parameters per profile", rows, profiles)]
    reasons = _reasons(profiles)
    if reasons.rows:
        sections.append(reasons)
    return sections


CHART_KEYS: tuple[str, ...] = ("gpus", "facility_power_avg_mw", "facility_power_peak_mw")
"""Figures of the per-profile fleet chart."""


def chart_label(name: str, figures: Mapping[str, Any]) -> str:
    """A profile's name on a chart; a CPU-measured one says its "GPUs" are CPU hosts."""
    return f"{name} ({CPU_HOSTS})" if _is_cpu(figures) else name


def any_cpu(result: Mapping[str, Any]) -> bool:
    """Whether any profile of a study was measured on a CPU server."""
    profiles: Mapping[str, Mapping[str, Any]] = result.get("profiles") or {}
    return any(_is_cpu(fig) for fig in profiles.values())


ChartPanel = tuple[str, tuple[tuple[str, str], ...]]
"""A panel of the per-profile chart: (axis label, bars as (figure key, legend label))."""

DEMAND_CHART_PANELS: tuple[ChartPanel, ...] = (
    ("GPUs", (("gpus", "GPUs"),)),
    (
        "facility power (MW)",
        (
            ("facility_power_avg_mw", "facility, average"),
            ("facility_power_peak_mw", "facility, peak"),
        ),
    ),
)
"""A stated demand's answer: the GPUs it needs and the facility power they draw."""
INVERSE_CHART_PANELS: tuple[ChartPanel, ...] = (
    ("sessions per day served", (("inverse.sessions_per_day", "sessions per day"),)),
    ("GPUs the power budget runs", (("inverse.gpus", "GPUs"),)),
)
"""A stated power budget's answer: the sessions per day it serves and the GPUs it runs (the
budget itself is the input, the same for every profile, so it is not drawn)."""
_INVERSE_CHART_KEYS: tuple[str, ...] = ("sessions_per_day", "gpus")


def is_inverse(result: Mapping[str, Any]) -> bool:
    """Whether a study answers a stated facility power budget (the scenario's
    facility_power_mw) rather than a stated demand."""
    scenario = result.get("scenario")
    return isinstance(scenario, Mapping) and scenario.get("facility_power_mw") is not None


def chart_panels(result: Mapping[str, Any]) -> tuple[ChartPanel, ...]:
    """The per-profile chart's panels: the answer the study gives (GPUs and MW for a demand,
    sessions per day and GPUs for a power budget)."""
    return INVERSE_CHART_PANELS if is_inverse(result) else DEMAND_CHART_PANELS


def profile_chart_series(result: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(profile label, {gpus, facility MW avg and peak, inverse.sessions_per_day,
    inverse.gpus}) per profile of a study, for the fleet chart; absent figures stay None,
    CPU-measured profiles are labelled as CPU hosts."""
    profiles: Mapping[str, Mapping[str, Any]] = result.get("profiles") or {}
    series = []
    for name, fig in profiles.items():
        figures = {k: fig.get(k) for k in CHART_KEYS}
        inverse = fig.get("inverse") or {}
        figures.update({f"inverse.{k}": inverse.get(k) for k in _INVERSE_CHART_KEYS})
        series.append((chart_label(name, fig), figures))
    return series


def sweep_chart_series(
    result: Mapping[str, Any],
) -> tuple[str, list[tuple[str, list[Mapping[str, Any]]]]] | None:
    """(axis label of the swept parameter, [(profile, sweep rows)]) of a study whose scenario
    has a `sweep:`, else None."""
    profiles: Mapping[str, Mapping[str, Any]] = result.get("profiles") or {}
    sweeps = {n: f["sweep"] for n, f in profiles.items() if f.get("sweep")}
    if not sweeps:
        return None
    first = next(iter(sweeps.values()))
    parameter, label = first.get("parameter"), first.get("label")
    axis = f"{label} ({parameter})" if label else str(parameter)
    return axis, [
        (chart_label(name, profiles[name]), list(s.get("rows") or [])) for name, s in sweeps.items()
    ]
