"""A server's capacity at its SLO, from a sweep's load points: which points meet the SLO, when
the server is saturated, and the `capacity.json` calibration of one hardware generation.

Pure functions of run summaries; `harness sweep` runs the points and writes the file."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.summary import STEADY_FIGURES, Summary
from harness.workload.slo import Slo

CAPACITY_FILE = "capacity.json"
CAPACITY_KIND = "harness-capacity"
SCHEMA_VERSION = 2
"""Version 2 names the GPU power figures of a point as the summary does (`avg_power_w`,
`idle_power_w`; version 1: `avg_gpu_power_w`, `idle_gpu_power_w`)."""

_V1_POINT_NAMES: dict[str, str] = {
    "avg_gpu_power_w": "avg_power_w",
    "idle_gpu_power_w": "idle_power_w",
}
"""Point keys of capacity.json version 1 -> this version's names."""


POINT_FIGURES: tuple[str, ...] = (
    "requests_completed",
    "requests_failed",
    "request_throughput_rps",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "goodput_rps",
    "slo_attainment",
    "sessions_per_s",
    "avg_power_w",
    "idle_power_w",
    "j_per_output_token",
    "tool_cpu_s_per_session",
    *(f"{m}_{s}" for m in ("ttft_ms", "tpot_ms", "e2el_ms") for s in ("p50", "p99")),
    *STEADY_FIGURES,
)
"""The figures of a load point, in file order: names of `Summary.figures()`."""


def point_figures(
    load: float, run_dir: str, summary: Summary, target_attainment: float
) -> dict[str, Any]:
    """One load point's entry of capacity.json, from its run's summary."""
    figures = summary.figures()
    point: dict[str, Any] = {"load": float(load), "run_dir": run_dir}
    point.update({key: figures[key] for key in POINT_FIGURES})
    point["gpu_source"] = summary.energy.gpu_source if summary.energy else "unavailable"
    point.update(gpu_attribution(summary))
    point["error"] = None
    # Whether the client, not the server, may have set this point's pace (None: unknown).
    point["client_bound"] = summary.client.client_bound if summary.client is not None else None
    completed = bool(point["requests_completed"])
    point["meets_slo"] = completed and meets_target(point["slo_attainment"], target_attainment)
    return point


def gpu_attribution(summary: Summary) -> dict[str, Any]:
    """How many GPUs a point's power figures cover (`gpu_devices`: the server's, where they
    were told; None: every GPU NVML saw) and how they were told (`gpu_attribution`)."""
    telemetry = summary.telemetry
    found = telemetry.gpu_attribution if telemetry is not None else None
    devices = summary.energy.gpu_devices if summary.energy is not None else None
    return {
        "gpu_devices": len(devices) if devices else None,
        "gpu_attribution": found.method if found is not None else None,
    }


def meets_target(attainment: float | None, target: float) -> bool:
    """The one rule of a load point's verdict: its SLO attainment is at least the target."""
    return attainment is not None and attainment >= target


LOWER_LOADS = 3
"""How many lower loads a sweep whose every load missed the SLO suggests."""


def lower_loads(points: Sequence[Mapping[str, Any]], integer: bool) -> list[float]:
    """Loads to try when no point met the SLO: halving down from the lowest load tried
    (rates 1 -> 0.125, 0.25, 0.5; concurrencies 4 -> 1, 2), rising; [] where some point met
    it, none was tried, or there is no lower load (concurrency 1)."""
    if not points or any(p["meets_slo"] for p in points):
        return []
    load = min(float(p["load"]) for p in points)
    found: list[float] = []
    for _ in range(LOWER_LOADS):
        load = float(int(load / 2)) if integer else load / 2
        if load <= 0 or (found and load >= found[-1]):
            break
        found.append(load)
    return sorted(found)


def capacity_points(capacity: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A capacity.json's load points under this version's names (a version 1 file's GPU
    power figures renamed); entries that are not objects are left out."""
    points = capacity.get("points")
    if not isinstance(points, list):
        return []
    rename: Mapping[str, str] = _V1_POINT_NAMES if capacity.get("schema_version") == 1 else {}
    return [
        {rename.get(str(k), str(k)): v for k, v in p.items()}
        for p in points
        if isinstance(p, Mapping)
    ]


def failed_point(load: float, run_dir: str, error: str) -> dict[str, Any]:
    """A load point whose run left no summary: kept, with why, so the file shows it was tried."""
    point: dict[str, Any] = {"load": float(load), "run_dir": run_dir}
    point.update(dict.fromkeys(POINT_FIGURES))
    point.update({"gpu_source": "unavailable", "gpu_devices": None, "gpu_attribution": None})
    point.update({"error": error, "meets_slo": False})
    point["client_bound"] = None
    return point


def saturated(points: Sequence[Mapping[str, Any]], min_gain: float = 0.05) -> bool:
    """Whether the server has levelled off: the last point missed the SLO and its throughput
    rose less than `min_gain` over the best earlier point (more offered, no more served)."""
    if not points or points[-1]["meets_slo"]:
        return False
    earlier = [p["total_throughput_tok_s"] for p in points[:-1] if p["total_throughput_tok_s"]]
    last = points[-1]["total_throughput_tok_s"]
    return bool(earlier) and last is not None and last < max(earlier) * (1.0 + min_gain)


def stop_reason(points: Sequence[Mapping[str, Any]], min_gain: float = 0.05) -> str | None:
    """Why a rising-load sweep can stop now: `saturated` (throughput levelled off) or
    `slo_missed_twice` (two loads in a row missed the SLO); None to go on."""
    if saturated(points, min_gain):
        return "saturated"
    if len(points) >= 2 and not points[-1]["meets_slo"] and not points[-2]["meets_slo"]:
        return "slo_missed_twice"
    return None


def refine_load(
    points: Sequence[Mapping[str, Any]], integer: bool, min_step: float = 0.0
) -> float | None:
    """The next load to try between the capacity load and the lowest load above it that
    missed the SLO (bisection), or None when there is no such gap left to narrow."""
    met = [float(p["load"]) for p in points if p["meets_slo"]]
    if not met:
        return None
    low = max(met)
    above = [float(p["load"]) for p in points if not p["meets_slo"] and p["load"] > low]
    if not above:
        return None
    high = min(above)
    mid = (low + high) / 2
    if integer:
        mid = float(int(mid))
    if mid <= low or mid >= high or high - low <= min_step:
        return None
    return mid


def _per_device(value: float | None, devices: int) -> float | None:
    return None if value is None else value / devices


def _window_figures(point: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The capacity point's throughput and busy power, each over its steady window where
    the point has one (summary.energy.steady), else over the whole run, with which
    (`capacity_window`, `busy_w_window`): both windows' figures are never mixed, so busy_w
    over capacity_tok_s is one window's J per token."""
    steady_tok = [point.get(f"steady_{k}_throughput_tok_s") for k in ("total", "output")]
    if all(v is not None for v in steady_tok):
        tokens = {"tok_s": steady_tok[0], "output_tok_s": steady_tok[1], "window": "steady"}
    else:
        tokens = {
            "tok_s": point["total_throughput_tok_s"],
            "output_tok_s": point["output_throughput_tok_s"],
            "window": "whole-run",
        }
    steady_w = point.get("steady_avg_power_w")
    if steady_w is not None and tokens["window"] == "steady":
        power = {"w": steady_w, "window": "steady"}
    elif point["avg_power_w"] is not None and tokens["window"] == "whole-run":
        power = {"w": point["avg_power_w"], "window": "whole-run"}
    else:
        power = {"w": None, "window": None}
    return tokens, power


def _power_per_device(
    point: Mapping[str, Any], watts: float | None, devices: int, power_note: str | None
) -> tuple[float | None, str | None]:
    """A point's GPU power (`watts`, one of its figures) per device, or None and why not.
    Where the point's summary told the server's GPUs (`gpu_devices`) its power is theirs,
    per device where they are the `devices` the capacity is divided by; else `power_note`
    (every GPU NVML sees is not the server's) leaves it null."""
    attributed = point.get("gpu_devices")
    if attributed:
        if int(attributed) == devices:
            return _per_device(watts, devices), None
        return None, (
            f"the server's GPUs are {attributed} (told by {point.get('gpu_attribution')}) but "
            f"the capacity is per {devices} devices, so busy_w and idle_w per device are not "
            f"reported (give --devices {attributed})"
        )
    if power_note is not None:
        return None, power_note
    return _per_device(watts, devices), None


def capacity_block(
    points: Sequence[Mapping[str, Any]],
    devices: int,
    device_kind: str,
    accelerator: str | None,
    power_note: str | None = None,
) -> dict[str, Any]:
    """The capacity at the highest load that met the SLO, per device; null figures (never 0)
    when no point met it or a figure was not measured. The true capacity lies between that
    load and `next_load_missed` (the lowest higher load that missed), so it is a lower bound.
    Tokens/s and busy_w are the point's steady-window figures where it has a steady window,
    else its whole run's (`capacity_window`, `busy_w_window`); requests/s and sessions/s are
    always the whole run's. Power per device is the server's GPUs' where a point's summary
    told them (then `power_note` does not apply); else `power_note` says why GPU power can't
    be attributed to the server's devices (then the power figures are null). The block's
    `power_note` says why busy_w is null where it is."""
    best = max((p for p in points if p["meets_slo"]), key=lambda p: p["load"], default=None)
    idles = [
        idle
        for p in points
        if p["idle_power_w"] is not None
        and (idle := _power_per_device(p, p["idle_power_w"], devices, power_note)[0]) is not None
    ]
    note, busy = power_note, None
    if best is not None:
        tokens, power = _window_figures(best)
        busy, note = _power_per_device(best, power["w"], devices, power_note)
    missed = [p["load"] for p in points if not p["meets_slo"]]
    block: dict[str, Any] = {
        "load": None,
        "run_dir": None,
        "devices": devices,
        "device_kind": device_kind,
        "accelerator": accelerator,
        "capacity_tok_s": None,
        "capacity_output_tok_s": None,
        "capacity_requests_s": None,
        "capacity_sessions_s": None,
        "capacity_window": None,
        "busy_w": None,
        "busy_w_source": "unavailable",
        "busy_w_window": None,
        "idle_w": statistics.median(idles) if idles else None,
        "power_note": note,
        "tool_cpu_s_per_session": None,
        "next_load_missed": None,
        "lower_loads_missed": sorted(missed),
    }
    if best is None:
        return block
    block["next_load_missed"] = min((x for x in missed if x > best["load"]), default=None)
    block["lower_loads_missed"] = sorted(x for x in missed if x < best["load"])
    block.update(
        {
            "load": best["load"],
            "run_dir": best["run_dir"],
            "capacity_tok_s": _per_device(tokens["tok_s"], devices),
            "capacity_output_tok_s": _per_device(tokens["output_tok_s"], devices),
            "capacity_requests_s": _per_device(best["request_throughput_rps"], devices),
            "capacity_sessions_s": _per_device(best["sessions_per_s"], devices),
            "capacity_window": tokens["window"],
            "busy_w": busy,
            "busy_w_source": best["gpu_source"] if busy is not None else "unavailable",
            "busy_w_window": power["window"] if busy is not None else None,
            "tool_cpu_s_per_session": best["tool_cpu_s_per_session"],
        }
    )
    return block


def capacity_document(
    *,
    name: str,
    workload: str,
    load_kind: str,
    slo: Slo,
    target_attainment: float,
    points: Sequence[Mapping[str, Any]],
    status: str,
    stopped: str | None,
    devices: int,
    device_kind: str,
    accelerator: str | None,
    model: Mapping[str, Any],
    host: Mapping[str, Any],
    power_note: str | None = None,
    server: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole capacity.json (written after every point, so a stopped sweep keeps its
    points; `status` says whether it finished). Points are sorted by load; `run_index` keeps
    the order they ran in (refinement points run last). `stop_reason` says why the ladder
    stopped before its last load, if it did. `server` names the server measured (its URLs,
    the replicas' where several; None before it answered)."""
    ordered = sorted(({**p, "run_index": i} for i, p in enumerate(points)), key=lambda p: p["load"])
    return {
        "kind": CAPACITY_KIND,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "workload": workload,
        "status": status,
        "load_kind": load_kind,
        "slo": slo.model_dump(),
        "slo_target_attainment": target_attainment,
        "points": ordered,
        "saturated": stopped == "saturated",
        "stopped_early": stopped is not None,
        "stop_reason": stopped,
        "capacity": capacity_block(points, devices, device_kind, accelerator, power_note),
        "model": dict(model),
        "server": None if server is None else dict(server),
        "host": dict(host),
    }


def mean_context_tok(lengths: Iterable[tuple[float, float]]) -> float | None:
    """Mean context a token attends to over ALL tokens of the given (prompt, output) lengths,
    as the FLOPs-per-token rule multiplies by input + output tokens: a prompt of P tokens
    attends to P/2 on average, its O outputs to P + O/2, so per request (P²/2 + O·(P + O/2))
    over P + O tokens; None for no tokens."""
    weighted = tokens = 0.0
    for p, o in lengths:
        weighted += p * p / 2 + o * (p + o / 2)
        tokens += p + o
    return weighted / tokens if tokens else None
