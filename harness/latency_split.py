"""The CPU/GPU latency split of agent sessions: pure functions from the steps and tools tables.

Per step: `llm_s` is request sent → done (the inference server's part), `tool_s` the wall
time of the step's tool phase on the host CPU (with `tool_cpu_s`, the CPU seconds the tools
used), and `orchestration_s` the rest of the step's wall time (prompt building, waiting in
the harness). A user's think time before a step is neither the system's CPU nor its GPU:
it is reported as `think_s` and left out of the split. Steps of a session are contiguous, so
llm + tool + orchestration sum to the session's wall time less its think time.
`cpu_share` = (tool + orchestration) / total; `gpu_share` = llm / total.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.analysis import percentile_stats
from harness.units import NS_PER_S


def _s(ns: pd.Series) -> pd.Series:
    """Nanosecond column to float seconds, missing as NaN."""
    return ns.astype("Float64").astype(float) / NS_PER_S


def step_split(steps: pd.DataFrame, tools: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per step: wall_s, llm_s, tool_s, think_s and orchestration_s (seconds), and with the
    tools table, tool_cpu_s (NaN where the step's tools measured no CPU)."""
    out = steps[["session_id", "step_index"]].copy()
    out["wall_s"] = _s(steps["end_ns"] - steps["ready_ns"])
    out["llm_s"] = _s(steps["done_ns"] - steps["sent_ns"]).fillna(0.0)
    out["tool_s"] = _s(steps["tools_end_ns"] - steps["tools_start_ns"]).fillna(0.0)
    out["think_s"] = _s(steps["think_ns"]).fillna(0.0)
    out["orchestration_s"] = out["wall_s"] - out["llm_s"] - out["tool_s"] - out["think_s"]
    if tools is not None:
        cpu = tools["cpu_user_s"].astype("Float64") + tools["cpu_system_s"].astype("Float64")
        per_step = (
            cpu.astype(float)
            .groupby([tools["session_id"].astype(str), tools["step_index"].astype(int)])
            .sum(min_count=1)
            .rename("tool_cpu_s")
        )
        keys = pd.MultiIndex.from_arrays(
            [out["session_id"].astype(str), out["step_index"].astype(int)]
        )
        out["tool_cpu_s"] = per_step.reindex(keys).to_numpy()
    return out


def session_split(steps: pd.DataFrame, tools: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per session: the step sums, the session's wall time (first ready → last end) and steps."""
    per_step = step_split(steps, tools)
    grouped = per_step.groupby("session_id", sort=True)
    columns = ["llm_s", "tool_s", "think_s", "orchestration_s"]
    out = grouped[columns].sum()
    if tools is not None:
        out["tool_cpu_s"] = grouped["tool_cpu_s"].sum(min_count=1)
    bounds = steps.groupby("session_id", sort=True).agg(
        first_ready_ns=("ready_ns", "min"), last_end_ns=("end_ns", "max")
    )
    out["wall_s"] = _s(bounds["last_end_ns"] - bounds["first_ready_ns"])
    out["steps"] = grouped.size()
    return out.reset_index()


def _tool_cpu_s(tools: pd.DataFrame) -> float | None:
    """CPU seconds the tools used; None when no call measured it (replayed waits)."""
    cpu = tools["cpu_user_s"].astype("Float64") + tools["cpu_system_s"].astype("Float64")
    measured = cpu.dropna()
    if measured.empty:
        return 0.0 if tools.empty else None
    return float(measured.sum())


def _tool_queue_s(tools: pd.DataFrame) -> float | None:
    """Seconds tool calls waited for a free worker (execute mode); None where not measured."""
    queued = _s(tools["work_start_ns"] - tools["start_ns"]).dropna()
    return float(queued.sum()) if not queued.empty else None


def _shares(llm_s: float, tool_s: float, orch_s: float) -> dict[str, float | None]:
    total = llm_s + tool_s + orch_s
    if total <= 0:
        return {"total_s": total, "cpu_share": None, "gpu_share": None}
    return {"total_s": total, "cpu_share": (tool_s + orch_s) / total, "gpu_share": llm_s / total}


def per_tool_kind(tools: pd.DataFrame, total_s: float) -> dict[str, dict[str, Any]]:
    """Per tool kind: calls, failures, summed call wall time, CPU seconds and share of total."""
    result: dict[str, dict[str, Any]] = {}
    if tools.empty:
        return result
    wall = _s(tools["end_ns"] - tools["start_ns"])
    for kind, idx in tools.groupby("kind", sort=True).groups.items():
        part = tools.loc[idx]
        kind_wall = float(wall.loc[idx].sum())
        result[str(kind)] = {
            "calls": len(part),
            "queue_s": _tool_queue_s(part),
            "failures": int((part["status"] != "ok").sum()),
            "tool_s": kind_wall,
            "tool_cpu_s": _tool_cpu_s(part),
            "share": kind_wall / total_s if total_s > 0 else None,
            "call_s": percentile_stats(wall.loc[idx].tolist()),
        }
    return result


def latency_split(steps: pd.DataFrame, tools: pd.DataFrame, workload: str) -> dict[str, Any]:
    """The run's `latency_split` block for summary.json."""
    sessions = session_split(steps)
    llm_s = float(sessions["llm_s"].sum())
    tool_s = float(sessions["tool_s"].sum())
    orch_s = float(sessions["orchestration_s"].sum())
    totals: dict[str, Any] = {
        "llm_s": llm_s,
        "tool_s": tool_s,
        "tool_cpu_s": _tool_cpu_s(tools),
        "tool_queue_s": _tool_queue_s(tools),
        "orchestration_s": orch_s,
        "think_s": float(sessions["think_s"].sum()),
        **_shares(llm_s, tool_s, orch_s),
    }
    wall_total = float(sessions["wall_s"].sum() - sessions["think_s"].sum())
    totals["sum_check"] = {
        "session_wall_less_think_s": wall_total,
        "relative_error": abs(totals["total_s"] - wall_total) / wall_total if wall_total else None,
    }
    return {
        **totals,
        "sessions": len(sessions),
        "steps": len(steps),
        "per_tool_kind": per_tool_kind(tools, totals["total_s"]),
        "per_workload": {
            workload: {
                k: totals[k]
                for k in (
                    "llm_s",
                    "tool_s",
                    "tool_cpu_s",
                    "orchestration_s",
                    "total_s",
                    "cpu_share",
                    "gpu_share",
                )
            }
        },
    }


def session_figures(steps: pd.DataFrame, requests: pd.DataFrame) -> dict[str, Any]:
    """Session latency, steps and tokens per session, and completed sessions per hour."""
    sessions = session_split(steps)
    ok = requests[requests["ok"].astype(bool)]
    tokens = (
        (ok["prompt_tokens"].astype(float) + ok["output_tokens"].astype(float))
        .groupby(ok["session_id"])
        .sum()
    )
    failed = set(requests.loc[~requests["ok"].astype(bool), "session_id"].astype(str))
    completed = sessions[~sessions["session_id"].astype(str).isin(failed)]
    span_s = _s(pd.Series([steps["end_ns"].max() - steps["ready_ns"].min()])).iloc[0]
    return {
        "sessions": len(sessions),
        "sessions_completed": len(completed),
        "session_latency_s": percentile_stats(sessions["wall_s"].tolist()),
        "steps_per_session": percentile_stats(sessions["steps"].astype(float).tolist()),
        "tokens_per_session": percentile_stats(tokens.tolist()),
        "sessions_per_hour": len(completed) / span_s * 3600 if span_s > 0 else None,
    }
