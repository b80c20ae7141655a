"""A server's capacity at its SLO, from a sweep's load points: which points meet the SLO, when
the server is saturated, and the `capacity.json` calibration of one hardware generation.

Pure functions of run summaries; `harness sweep` runs the points and writes the file."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

CAPACITY_FILE = "capacity.json"
CAPACITY_KIND = "harness-capacity"
SCHEMA_VERSION = 1


def _get(mapping: Mapping[str, Any] | None, *path: str) -> Any:
    """mapping[path[0]][path[1]]..., None where any level is missing."""
    node: Any = mapping
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def point_figures(
    load: float, run_dir: str, summary: Mapping[str, Any], target_attainment: float
) -> dict[str, Any]:
    """One load point's entry of capacity.json, from its run's summary.json."""
    per_hour = _get(summary, "session_figures", "sessions_per_hour")
    split = summary.get("latency_split") or {}
    sessions = split.get("sessions")
    tool_cpu = split.get("tool_cpu_s")
    attainment = _float(summary.get("slo_attainment"))
    point: dict[str, Any] = {
        "load": float(load),
        "run_dir": run_dir,
        "requests_completed": int(summary.get("requests_completed") or 0),
        "requests_failed": int(summary.get("requests_failed") or 0),
        "request_throughput_rps": _float(summary.get("request_throughput_rps")),
        "output_throughput_tok_s": _float(summary.get("output_throughput_tok_s")),
        "total_throughput_tok_s": _float(summary.get("total_throughput_tok_s")),
        "goodput_rps": _float(summary.get("goodput_rps")),
        "slo_attainment": attainment,
        "sessions_per_s": None if per_hour is None else float(per_hour) / 3600.0,
        "avg_gpu_power_w": _float(_get(summary, "energy", "avg_power_w")),
        "idle_gpu_power_w": _float(_get(summary, "energy", "idle_power_w")),
        "gpu_source": _get(summary, "energy", "gpu_source") or "unavailable",
        "j_per_output_token": _float(_get(summary, "energy", "j_per_output_token")),
        "tool_cpu_s_per_session": (
            float(tool_cpu) / float(sessions) if tool_cpu is not None and sessions else None
        ),
    }
    for metric in ("ttft_ms", "tpot_ms", "e2el_ms"):
        for stat in ("p50", "p99"):
            point[f"{metric}_{stat}"] = _float(_get(summary, metric, stat))
    completed = point["requests_completed"] > 0
    point["meets_slo"] = completed and attainment is not None and attainment >= target_attainment
    return point


def saturated(points: Sequence[Mapping[str, Any]], min_gain: float = 0.05) -> bool:
    """Whether the server is clearly saturated: the last point missed the SLO and either its
    throughput gained less than `min_gain` over the best earlier point (more offered load, no
    more served), or the point before it missed the SLO too."""
    if not points or points[-1]["meets_slo"]:
        return False
    if len(points) >= 2 and not points[-2]["meets_slo"]:
        return True
    earlier = [p["total_throughput_tok_s"] for p in points[:-1] if p["total_throughput_tok_s"]]
    last = points[-1]["total_throughput_tok_s"]
    return bool(earlier) and last is not None and last < max(earlier) * (1.0 + min_gain)


def _per_device(value: float | None, devices: int) -> float | None:
    return None if value is None else value / devices


def capacity_block(
    points: Sequence[Mapping[str, Any]],
    devices: int,
    device_kind: str,
    accelerator: str | None,
) -> dict[str, Any]:
    """The capacity at the highest load that met the SLO, per device; null figures (never 0)
    when no point met it or a figure was not measured."""
    best = max((p for p in points if p["meets_slo"]), key=lambda p: p["load"], default=None)
    idles = [p["idle_gpu_power_w"] for p in points if p["idle_gpu_power_w"] is not None]
    idle = statistics.median(idles) if idles else None  # over the points' idle baselines
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
        "busy_w": None,
        "busy_w_source": "unavailable",
        "idle_w": _per_device(idle, devices),
        "tool_cpu_s_per_session": None,
    }
    if best is None:
        return block
    busy = best["avg_gpu_power_w"]
    block.update(
        {
            "load": best["load"],
            "run_dir": best["run_dir"],
            "capacity_tok_s": _per_device(best["total_throughput_tok_s"], devices),
            "capacity_output_tok_s": _per_device(best["output_throughput_tok_s"], devices),
            "capacity_requests_s": _per_device(best["goodput_rps"], devices),
            "capacity_sessions_s": _per_device(best["sessions_per_s"], devices),
            "busy_w": _per_device(busy, devices),
            "busy_w_source": best["gpu_source"] if busy is not None else "unavailable",
            "tool_cpu_s_per_session": best["tool_cpu_s_per_session"],
        }
    )
    return block


def capacity_document(
    *,
    name: str,
    workload: str,
    load_kind: str,
    slo: Mapping[str, Any],
    target_attainment: float,
    points: Sequence[Mapping[str, Any]],
    status: str,
    stopped_early: bool,
    devices: int,
    device_kind: str,
    accelerator: str | None,
    model: Mapping[str, Any],
    host: Mapping[str, Any],
) -> dict[str, Any]:
    """The whole capacity.json (written after every point, so a stopped sweep keeps its
    points; `status` says whether it finished)."""
    return {
        "kind": CAPACITY_KIND,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "workload": workload,
        "status": status,
        "load_kind": load_kind,
        "slo": {key: slo.get(key) for key in ("ttft_ms", "tpot_ms", "e2el_ms")},
        "slo_target_attainment": target_attainment,
        "points": list(points),
        "saturated": saturated(points),
        "stopped_early": stopped_early,
        "capacity": capacity_block(points, devices, device_kind, accelerator),
        "model": dict(model),
        "host": dict(host),
    }
