"""The default fleet model (documented in the README's "Fleet model"): cards, servers, power,
energy and CPU cores for a scenario's demand on one hardware profile. Every null figure comes
with a reason; more refined models may sit beside this one, never replace it."""

from __future__ import annotations

from typing import Any

from harness.fleet.catalog import Accelerator, load_catalog
from harness.fleet.figures import (
    DAYS_PER_YEAR,
    H_PER_DAY,
    J_PER_MWH,
    MWH_PER_GWH,
    S_PER_DAY,
    W_PER_MW,
    Figures,
    ceil_count,
)
from harness.fleet.flops import FLOPS_ASSUMPTIONS, flops_cross_check
from harness.fleet.inverse import INVERSE_ASSUMPTIONS, inverse_figures
from harness.fleet.profile import HardwareProfile
from harness.fleet.scenario import Scenario, sweep_points

MODEL_ASSUMPTIONS: tuple[str, ...] = (
    "model: capacity_tok_s and tokens_per_day both count input + output tokens",
    "model: GPUs are sized for the peak, gpus = ceil(avg_tok_s × peak_to_average / "
    "(capacity_tok_s × headroom)), and all of them are powered all day",
    "model: GPU power is linear in load between idle_w (no tokens) and busy_w (at "
    "capacity_tok_s): GPU J/day = gpus × idle_w × 86400 + tokens_per_day × (busy_w − idle_w) "
    "/ capacity_tok_s",
    "model: each server draws server_other_w (CPUs, memory, network, fans) all day",
    "model: a year is 365 days of the same daily demand",
)


def cpu_assumption(scenario: Scenario) -> str:
    """The CPU sizing basis: cores for tool work follow the daily AVERAGE session rate, while
    GPUs are sized for the peak, so at the peak the cores run hotter than planned."""
    text = (
        "model: CPU cores for tool work are sized for the daily average session rate, "
        "cpu_cores_needed = tool_cpu_s_per_session × sessions_per_day / 86400 / "
        "cpu_target_utilization (the inverse bounds sessions the same way), while GPUs are "
        "sized for the peak (× peak_to_average / headroom)"
    )
    util = scenario.cpu_target_utilization
    if util is None:
        return text
    p2a = scenario.peak_to_average
    return (
        f"{text}: at the peak ({p2a:g}× the average) tool work would keep those cores "
        f"{util * p2a:.0%} busy, not the planned {util:.0%}"
    )


SWEEP_ROW_KEYS: tuple[str, ...] = (
    "tokens_per_day",
    "gpus",
    "servers",
    "it_power_avg_mw",
    "it_power_peak_mw",
    "facility_power_avg_mw",
    "facility_energy_gwh_per_year",
    "cpu_cores_needed",
)


PEAK_KEYS: tuple[str, ...] = ("it_power_peak_mw", "facility_power_peak_mw")
ENERGY_KEYS: tuple[str, ...] = (
    "gpu_energy_mwh_per_day",
    "it_energy_mwh_per_day",
    "it_power_avg_mw",
    "facility_power_avg_mw",
    "facility_energy_gwh_per_year",
    "it_energy_j_per_token",
)


def _missing(out: Figures, keys: tuple[str, ...], reason: str) -> None:
    for key in keys:
        out.missing(key, reason)


def _power(
    out: Figures, scenario: Scenario, profile: HardwareProfile, tokens_per_day: float
) -> None:
    """Peak power, daily energy and average power of the fleet already sized in `out`."""
    gpus, servers = out.values["gpus"], out.values["servers"]
    busy, idle, cap = profile.busy_w, profile.idle_w, profile.capacity_tok_s
    if busy is None or cap is None:
        _missing(out, PEAK_KEYS + ENERGY_KEYS, profile.why_missing("busy_w"))
        return
    other_w = servers * scenario.server_other_w
    peak_mw = (gpus * busy + other_w) / W_PER_MW
    out.put("it_power_peak_mw", peak_mw)
    out.put("facility_power_peak_mw", peak_mw * scenario.pue)
    if idle is None:
        _missing(out, ENERGY_KEYS, profile.why_missing("idle_w"))
        return
    gpu_j = gpus * idle * S_PER_DAY + tokens_per_day * (busy - idle) / cap
    it_j = gpu_j + other_w * S_PER_DAY
    it_mwh = it_j / J_PER_MWH
    out.put("gpu_energy_mwh_per_day", gpu_j / J_PER_MWH)
    out.put("it_energy_mwh_per_day", it_mwh)
    out.put("it_power_avg_mw", it_mwh / H_PER_DAY)
    out.put("facility_power_avg_mw", it_mwh / H_PER_DAY * scenario.pue)
    out.put("facility_energy_gwh_per_year", it_mwh * scenario.pue * DAYS_PER_YEAR / MWH_PER_GWH)
    out.put("it_energy_j_per_token", it_j / tokens_per_day if tokens_per_day else None, "no tokens")


def _cpu(
    out: Figures, scenario: Scenario, profile: HardwareProfile, sessions_per_day: float | None
) -> None:
    """Cores for tool work (agent scenarios), set against the cores the GPU servers bring."""
    tool_s = scenario.tool_cpu_s_per_session
    if tool_s is None:
        tool_s = profile.tool_cpu_s_per_session
    util = scenario.cpu_target_utilization
    if sessions_per_day is None:
        out.missing("cpu_cores_needed", "scenario states no agent sessions per day")
    elif tool_s is None:
        out.missing("cpu_cores_needed", "neither scenario nor profile gives tool_cpu_s_per_session")
    elif util is None:
        out.missing("cpu_cores_needed", "scenario gives no cpu_target_utilization")
    else:
        out.put("cpu_cores_needed", tool_s * sessions_per_day / S_PER_DAY / util)
    servers = out.values.get("servers")
    per_server = scenario.cpu_cores_per_server
    if servers is None:
        out.missing("cpu_cores_available", out.reasons.get("servers", "no servers"))
    elif per_server is None:
        out.missing("cpu_cores_available", "scenario gives no cpu_cores_per_server")
    else:
        out.put("cpu_cores_available", servers * per_server)
    needed, available = out.values["cpu_cores_needed"], out.values["cpu_cores_available"]
    out.put(
        "cpu_cores_sufficient",
        None if needed is None or available is None else needed <= available,
        "a core figure is missing",
    )


def default_model(
    scenario: Scenario,
    profile: HardwareProfile,
    tokens_per_day: float | None,
    sessions_per_day: float | None,
    no_demand: str = "scenario states no demand",
) -> Figures:
    """gpus, servers, power, energy and CPU cores of the default model for the given demand
    (`no_demand` is the reason given for every figure when there is no demand)."""
    out = Figures()
    cap = profile.capacity_tok_s
    if tokens_per_day is None:
        reason = no_demand
    elif cap is None:
        reason = profile.why_missing("capacity_tok_s")
    else:
        avg_tok_s = tokens_per_day / S_PER_DAY
        need = avg_tok_s * scenario.peak_to_average / (cap * scenario.headroom)
        gpus = out.put("gpus", ceil_count(need))
        out.put("servers", -(-gpus // scenario.gpus_per_server))
        out.put("avg_load_fraction", avg_tok_s / (gpus * cap) if gpus else None, "no GPUs")
        _power(out, scenario, profile, tokens_per_day)
        _cpu(out, scenario, profile, sessions_per_day)
        return out
    for key in ("gpus", "servers", "avg_load_fraction"):
        out.missing(key, reason)
    _missing(out, PEAK_KEYS + ENERGY_KEYS, reason)
    _cpu(out, scenario, profile, sessions_per_day)
    return out


def _inputs(
    scenario: Scenario,
    profile: HardwareProfile,
    tokens_per_day: float | None,
    sessions_per_day: float | None,
    basis: str,
) -> dict[str, Any]:
    """Every input the figures used, with units in the key names."""
    tool_s = scenario.tool_cpu_s_per_session
    return {
        "demand_basis": basis,
        "tokens_per_day": tokens_per_day,
        "avg_tok_s": None if tokens_per_day is None else tokens_per_day / S_PER_DAY,
        "sessions_per_day": sessions_per_day,
        "peak_to_average": scenario.peak_to_average,
        "headroom": scenario.headroom,
        "capacity_tok_s": profile.capacity_tok_s,
        "busy_w": profile.busy_w,
        "idle_w": profile.idle_w,
        "gpus_per_server": scenario.gpus_per_server,
        "server_other_w": scenario.server_other_w,
        "pue": scenario.pue,
        "tool_cpu_s_per_session": profile.tool_cpu_s_per_session if tool_s is None else tool_s,
        "tool_cpu_s_per_session_from": "profile" if tool_s is None else "scenario",
        "cpu_target_utilization": scenario.cpu_target_utilization,
        "cpu_cores_per_server": scenario.cpu_cores_per_server,
        "facility_power_budget_mw": scenario.facility_power_mw,
        "s_per_day": S_PER_DAY,
        "days_per_year": DAYS_PER_YEAR,
    }


def _figures(
    scenario: Scenario, profile: HardwareProfile, catalog: dict[str, Accelerator]
) -> dict[str, Any]:
    """Default model, FLOPs cross-check and inverse for one scenario (no sweep)."""
    tokens = scenario.demand_tokens_per_day()
    sessions = scenario.demand_sessions_per_day()
    basis = scenario.demand_basis()
    inverse = inverse_figures(scenario, profile)
    no_demand = "scenario states no demand"
    if tokens is None and inverse is not None:
        tokens, sessions = inverse["tokens_per_day"], inverse["sessions_per_day"]
        no_demand = f"inverse: {inverse['reasons'].get('tokens_per_day', no_demand)}"
    result = default_model(scenario, profile, tokens, sessions, no_demand).as_dict()
    result["flops"] = flops_cross_check(scenario, profile, catalog, tokens, result["gpus"])
    result["inverse"] = inverse
    result["inputs"] = _inputs(scenario, profile, tokens, sessions, basis)
    return result


def _model_mismatch(scenario: Scenario, profile: HardwareProfile) -> str | None:
    """A warning when the scenario's tokens are served at a capacity measured with another
    model: the card count then rests on that substitution."""
    wanted = scenario.model.name if scenario.model is not None else None
    measured = profile.model.name if profile.model is not None else None
    if not wanted or not measured or wanted.casefold() == measured.casefold():
        return None
    return (
        f"profile {profile.name}'s capacity was measured with model {measured}, the scenario "
        f"states {wanted}: its GPU and power figures assume {wanted}'s tokens are served at "
        f"{measured}'s speed"
    )


FLOPS_SWEEP_KEYS: tuple[tuple[str, str], ...] = (
    ("flops_gpus", "gpus"),
    ("flops_gpus_peak_basis", "gpus_peak_basis"),
)
"""Sweep-row keys taken from the FLOPs cross-check: (row key, key in `flops`)."""


def _sweep_rows(
    scenario: Scenario, profile: HardwareProfile, catalog: dict[str, Accelerator]
) -> list[dict[str, Any]]:
    """One row of figures per value of the scenario's `sweep:`, nulls with their reasons."""
    rows = []
    for value, point in sweep_points(scenario):
        figures = _figures(point, profile, catalog)
        row: dict[str, Any] = {"value": value}
        row["tokens_per_day"] = figures["inputs"]["tokens_per_day"]
        row.update({k: figures[k] for k in SWEEP_ROW_KEYS if k != "tokens_per_day"})
        flops = figures["flops"]
        row.update({key: flops[flops_key] for key, flops_key in FLOPS_SWEEP_KEYS})
        inverse = figures["inverse"]
        row["sessions_per_day_served"] = None if inverse is None else inverse["sessions_per_day"]
        reasons = {k: v for k, v in figures["reasons"].items() if k in row}
        for key, flops_key in FLOPS_SWEEP_KEYS:
            if flops_key in flops["reasons"]:
                reasons[key] = flops["reasons"][flops_key]
        row["reasons"] = reasons
        rows.append(row)
    return rows


def fleet_figures(
    scenario: Scenario,
    profile: HardwareProfile,
    catalog: dict[str, Accelerator] | None = None,
) -> dict[str, Any]:
    """The per-profile JSON object: fleet figures, `flops`, `inverse`, `sweep` (rows per swept
    value), `inputs` and `assumptions` (scenario's, profile's and the model's)."""
    catalog = load_catalog() if catalog is None else catalog
    head: dict[str, Any] = {
        "profile": profile.name,
        "origin": profile.origin,
        "source": profile.source,
        "accelerator": profile.accelerator,
        "device_kind": profile.device_kind,
    }
    result = {**head, **_figures(scenario, profile, catalog)}
    sweep = scenario.sweep
    result["sweep"] = (
        None
        if sweep is None
        else {
            "parameter": sweep.parameter,
            "label": sweep.label,
            "rows": _sweep_rows(scenario, profile, catalog),
        }
    )
    assumptions = [f"scenario: {a}" for a in scenario.assumptions]
    assumptions += [f"profile {profile.name}: {a}" for a in profile.assumptions]
    mismatch = _model_mismatch(scenario, profile)
    if mismatch is not None:
        assumptions.append(mismatch)
    assumptions += list(MODEL_ASSUMPTIONS)
    if result["inputs"]["sessions_per_day"] is not None:
        assumptions.append(cpu_assumption(scenario))
    if result["flops"]["gpus"] is not None:
        assumptions += list(FLOPS_ASSUMPTIONS)
    if scenario.facility_power_mw is not None:
        assumptions += list(INVERSE_ASSUMPTIONS)
    result["assumptions"] = assumptions
    return result


def scenario_summary(scenario: Scenario) -> dict[str, Any]:
    """The scenario as given, plus the demand it implies (for the JSON's `scenario`)."""
    return {
        **scenario.model_dump(mode="json"),
        "demand_basis": scenario.demand_basis(),
        "demand_tokens_per_day": scenario.demand_tokens_per_day(),
        "demand_sessions_per_day": scenario.demand_sessions_per_day(),
    }


def fleet_study(
    scenario: Scenario,
    profiles: list[HardwareProfile],
    catalog: dict[str, Accelerator] | None = None,
) -> dict[str, Any]:
    """`{"scenario": ..., "profiles": {NAME: fleet_figures}}` for several profiles."""
    catalog = load_catalog() if catalog is None else catalog
    return {
        "scenario": scenario_summary(scenario),
        "profiles": {p.name: fleet_figures(scenario, p, catalog) for p in profiles},
    }
