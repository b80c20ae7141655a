"""The CPU/GPU latency split of agent sessions: pure functions from the steps and tools tables.

Per step: `llm_s` is request sent → done (the inference server's part); `tool_s` the time
the step's tools took doing work on the host CPU, as it would have been with a free worker
for every call (parallel calls overlap, sequential ones add up; with `tool_cpu_s`, the CPU
seconds they used); `tool_queue_s` the rest of the time its calls were open: what the step
lost waiting for a free tool worker; `slot_queue_s` the time
its request waited for a `max_concurrency` slot; and `orchestration_s` the rest of the
step's wall time (prompt building, parsing, the event loop). The two queues are the
harness's own, so they are rows of their own: neither tool work nor in the CPU share. A
user's think time (or a recorded gap until the step's timestamp) is neither the system's
CPU nor its GPU: it is `think_s`, left out of the split. So is `subagent_wait_s`, a
parent's wait on the sub-agents a step of it started (that step's remote-call and unmapped
waits, less any kernel work beside them, `harness.workload.subagents`): the sub-agents'
work is in their own sessions' rows, and counting the wait as the parent's tool time would
count it twice. Steps of a session are contiguous, so the five parts sum to the session's
wall time less its think time and sub-agent wait, and their shares of that total add up to
1. `cpu_share` = (tool + orchestration) / total; `gpu_share` = llm / total.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.analysis import percentile_stats
from harness.units import NS_PER_S
from harness.workload.model import WAIT_KINDS


def _s(ns: pd.Series) -> pd.Series:
    """Nanosecond column to float seconds, missing as NaN."""
    return ns.astype("Float64").astype(float) / NS_PER_S


QUEUE_DOMINATES_SHARE = 0.25
"""Queue share of session time from which the summary says the harness's queues, not the
system under test, set the run's figures."""

PARTS: tuple[str, ...] = ("llm_s", "tool_s", "tool_queue_s", "slot_queue_s", "orchestration_s")
"""The rows of the split, which sum to the session time less think time."""


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    """Total length of the union of [start, end) intervals."""
    total = 0
    cur_start = cur_end = None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += cur_end - cur_start
    return total


def _work_start(tools: pd.DataFrame) -> pd.Series:
    """When each call's work began: `work_start_ns` where measured, else its start."""
    start = tools["start_ns"].astype("Int64")
    if "work_start_ns" not in tools.columns:
        return start
    return tools["work_start_ns"].astype("Int64").fillna(start)


def _tool_time_per_step(tools: pd.DataFrame) -> pd.DataFrame:
    """Per (session, step): the seconds its tool phase would have taken with a free worker
    for every call (`work_s`: each call's work moved to its own start, then the union, so
    parallel calls overlap and sequential ones add up), the seconds any call was open
    (`span_s`: union of call spans; the difference is time lost to the worker limit) and the
    seconds its waits (WAIT_KINDS) were open beyond the kernel calls' work (`wait_s`: a
    parent's wait on its sub-agents, in a step that started them)."""
    if tools.empty:
        return pd.DataFrame(columns=["work_s", "span_s", "wait_s"], dtype=float)
    starts = tools["start_ns"].astype(int).tolist()
    works = _work_start(tools).astype(int).tolist()
    ends = tools["end_ns"].astype(int).tolist()
    waits = tools["kind"].astype(str).isin(WAIT_KINDS).tolist()
    keys = zip(tools["session_id"].astype(str), tools["step_index"].astype(int), strict=True)
    spans: dict[tuple[str, int], list[tuple[int, int]]] = {}
    work: dict[tuple[str, int], list[tuple[int, int]]] = {}
    wait: dict[tuple[str, int], list[tuple[int, int]]] = {}
    kernel: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for key, start, work_start, end, is_wait in zip(keys, starts, works, ends, waits, strict=True):
        spans.setdefault(key, []).append((start, max(start, end)))
        interval = (start, start + max(0, end - max(start, work_start)))
        work.setdefault(key, []).append(interval)
        (wait if is_wait else kernel).setdefault(key, []).append(interval)
    return pd.DataFrame(
        {
            "work_s": {k: _union_ns(v) / NS_PER_S for k, v in work.items()},
            "span_s": {k: _union_ns(v) / NS_PER_S for k, v in spans.items()},
            "wait_s": {k: _minus_ns(wait.get(k, []), kernel.get(k, [])) / NS_PER_S for k in work},
        }
    )


def _minus_ns(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Length of the union of intervals `a` outside the union of intervals `b`."""
    return _union_ns(a + b) - _union_ns(b) if a else 0


def step_split(steps: pd.DataFrame, tools: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per step: wall_s, llm_s, tool_s, tool_queue_s, slot_queue_s, think_s,
    subagent_wait_s and orchestration_s (seconds), and with the tools table, tool_cpu_s (NaN
    where the step's tools measured no CPU). Without the tools table the whole tool phase
    counts as work (and no wait as a sub-agent wait)."""
    out = steps[["session_id", "step_index"]].copy()
    out["wall_s"] = _s(steps["end_ns"] - steps["ready_ns"])
    out["llm_s"] = _s(steps["done_ns"] - steps["sent_ns"]).fillna(0.0)
    phase_s = _s(steps["tools_end_ns"] - steps["tools_start_ns"]).fillna(0.0)
    out["think_s"] = _s(steps["think_ns"]).fillna(0.0)
    slot = steps["slot_wait_ns"] if "slot_wait_ns" in steps.columns else None
    out["slot_queue_s"] = _s(slot).fillna(0.0) if slot is not None else 0.0
    keys = pd.MultiIndex.from_arrays([out["session_id"].astype(str), out["step_index"].astype(int)])
    out["subagent_wait_s"] = 0.0
    if tools is not None and not tools.empty:
        per = _tool_time_per_step(tools).reindex(keys).fillna(0.0)
        work = per["work_s"].to_numpy()
        span = per["span_s"].to_numpy()
        out["tool_s"] = [min(w, p) for w, p in zip(work, phase_s, strict=True)]
        # Queued: time the calls were open beyond their unqueued work; gaps between calls
        # are the harness's own orchestration, not a queue.
        out["tool_queue_s"] = [
            max(0.0, min(sp, p) - t) for sp, p, t in zip(span, phase_s, out["tool_s"], strict=True)
        ]
        spawned = _subagents_started(steps).to_numpy() > 0
        waits = per["wait_s"].to_numpy()
        out["subagent_wait_s"] = [
            min(w, t) if s else 0.0 for w, t, s in zip(waits, out["tool_s"], spawned, strict=True)
        ]
        out["tool_s"] = out["tool_s"] - out["subagent_wait_s"]
    else:
        out["tool_s"] = phase_s
        out["tool_queue_s"] = 0.0
    out["orchestration_s"] = (
        out["wall_s"]
        - out["llm_s"]
        - out["tool_s"]
        - out["tool_queue_s"]
        - out["slot_queue_s"]
        - out["think_s"]
        - out["subagent_wait_s"]
    )
    if tools is not None:
        cpu = tools["cpu_user_s"].astype("Float64") + tools["cpu_system_s"].astype("Float64")
        per_step = (
            cpu.astype(float)
            .groupby([tools["session_id"].astype(str), tools["step_index"].astype(int)])
            .sum(min_count=1)
            .rename("tool_cpu_s")
        )
        out["tool_cpu_s"] = per_step.reindex(keys).to_numpy()
    return out


def _subagents_started(steps: pd.DataFrame) -> pd.Series:
    """How many sub-agents each step started (0 in a run recorded before the column)."""
    if "subagents_started" not in steps.columns:
        return pd.Series(0, index=steps.index)
    return steps["subagents_started"].astype("Int64").fillna(0).astype(int)


def _subagent_wait_calls(steps: pd.DataFrame, tools: pd.DataFrame) -> pd.Series:
    """Per tool call: whether it is a parent's wait on its sub-agents (a wait in a step
    that started one)."""
    if tools.empty:
        return pd.Series(False, index=tools.index, dtype=bool)
    started = steps.loc[_subagents_started(steps).to_numpy() > 0, ["session_id", "step_index"]]
    spawning = set(
        zip(started["session_id"].astype(str), started["step_index"].astype(int), strict=True)
    )
    keys = zip(tools["session_id"].astype(str), tools["step_index"].astype(int), strict=True)
    in_spawning = [key in spawning for key in keys]
    waits = tools["kind"].astype(str).isin(WAIT_KINDS).to_numpy()
    return pd.Series(waits & in_spawning, index=tools.index, dtype=bool)


def session_split(steps: pd.DataFrame, tools: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per session: the step sums, the session's wall time (first ready → last end) and steps."""
    per_step = step_split(steps, tools)
    grouped = per_step.groupby("session_id", sort=True)
    columns = [*PARTS, "think_s", "subagent_wait_s"]
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


def _shares(parts: dict[str, float]) -> dict[str, Any]:
    """Each part's share of the total (they add up to 1), CPU and GPU shares."""
    total = sum(parts.values())
    if total <= 0:
        return {
            "total_s": total,
            "cpu_share": None,
            "gpu_share": None,
            "queue_share": None,
            "shares": {k: None for k in parts},
        }
    shares = {k.removesuffix("_s"): v / total for k, v in parts.items()}
    return {
        "total_s": total,
        "cpu_share": (parts["tool_s"] + parts["orchestration_s"]) / total,
        "gpu_share": parts["llm_s"] / total,
        "queue_share": (parts["tool_queue_s"] + parts["slot_queue_s"]) / total,
        "shares": shares,
    }


def per_tool_kind(
    tools: pd.DataFrame,
    tool_s: float,
    tool_queue_s: float,
    total_s: float,
    subagent_waits: pd.Series | None = None,
) -> dict[str, dict[str, Any]]:
    """Per tool kind: calls, failures, the calls' summed wall, wait and work time
    (`calls_*_s`: parallel calls overlap, so these may exceed the rows), CPU seconds, and the
    kind's part of the tool row (`tool_s`) and of the tool-queue row (`queue_s`), split in
    proportion to the kinds' work and wait, so each adds up to its row; `share` is the
    kind's tool part of the total, and the kinds' shares add up to the tool row's share.
    `limits_clamped` counts the calls whose limits were clamped to the fixed maxima, and
    `sandbox` names how sandboxed calls were contained. Calls marked in `subagent_waits` (a
    parent's wait on its sub-agents) are counted, but their time is no part of the tool row."""
    result: dict[str, dict[str, Any]] = {}
    if tools.empty:
        return result
    wall = _s(tools["end_ns"] - tools["start_ns"])
    start = _work_start(tools)
    work = _s(tools["end_ns"].astype("Int64") - start).clip(lower=0.0)
    if subagent_waits is not None:
        work = work.where(~subagent_waits.to_numpy(), 0.0)
    wait = _s(start - tools["start_ns"].astype("Int64")).clip(lower=0.0)
    all_work, all_wait = float(work.sum()), float(wait.sum())
    for kind, idx in tools.groupby("kind", sort=True).groups.items():
        part = tools.loc[idx]
        kind_work, kind_wait = float(work.loc[idx].sum()), float(wait.loc[idx].sum())
        attributed = tool_s * kind_work / all_work if all_work > 0 else 0.0
        result[str(kind)] = {
            "calls": len(part),
            "failures": int((part["status"] != "ok").sum()),
            "calls_wall_s": float(wall.loc[idx].sum()),
            "calls_wait_s": kind_wait,
            "calls_work_s": kind_work,
            "tool_s": attributed,
            "queue_s": tool_queue_s * kind_wait / all_wait if all_wait > 0 else 0.0,
            "tool_cpu_s": _tool_cpu_s(part),
            "share": attributed / total_s if total_s > 0 else None,
            "call_s": percentile_stats(wall.loc[idx].tolist()),
            "limits_clamped": _clamped_calls(part),
            "sandbox": _sandboxes(part),
        }
    return result


def _clamped_calls(part: pd.DataFrame) -> int | None:
    """How many of the calls had a limit clamped to the fixed maxima (None where no call
    had limits: replay, or a run recorded before the column)."""
    if "limits_clamped" not in part or not part["limits_clamped"].notna().any():
        return None
    return int(part["limits_clamped"].fillna(False).astype(bool).sum())


def _sandboxes(part: pd.DataFrame) -> str | None:
    """How the calls were contained ("bwrap+cgroup-v2", "rlimits", …; several joined by
    ", "), None where none was sandboxed."""
    if "sandbox" not in part:
        return None
    names = sorted({str(v) for v in part["sandbox"].dropna()})
    return ", ".join(names) or None


def _queue_note(totals: dict[str, Any]) -> str | None:
    """A sentence for the summary when the harness's queues dominate the session time."""
    share = totals.get("queue_share")
    if share is None or share < QUEUE_DOMINATES_SHARE:
        return None
    tool_q, slot_q = totals["tool_queue_s"], totals["slot_queue_s"]
    which = "tool workers" if tool_q >= slot_q else "max_concurrency slots"
    fix = (
        "raise tools.workers where the host has idle CPUs, or lower the load"
        if tool_q >= slot_q
        else "raise limits.max_concurrency, or lower the load"
    )
    return (
        f"queueing dominates: {100 * share:.0f} % of session time was spent waiting for the "
        f"harness's {which}, not in the system under test; {fix}"
    )


def latency_split(steps: pd.DataFrame, tools: pd.DataFrame, workload: str) -> dict[str, Any]:
    """The run's `latency_split` block for summary.json."""
    sessions = session_split(steps, tools)
    parts = {k: float(sessions[k].sum()) for k in PARTS}
    subagent_wait_s = float(sessions["subagent_wait_s"].sum())
    totals: dict[str, Any] = {
        **parts,
        "tool_cpu_s": _tool_cpu_s(tools),
        "think_s": float(sessions["think_s"].sum()),
        "subagent_wait_s": subagent_wait_s,
        **_shares(parts),
    }
    totals["queue_note"] = _queue_note(totals)
    wall_total = float(sessions["wall_s"].sum() - sessions["think_s"].sum())
    accounted = totals["total_s"] + subagent_wait_s
    totals["sum_check"] = {
        "session_wall_less_think_s": wall_total,
        "relative_error": abs(accounted - wall_total) / wall_total if wall_total else None,
    }
    return {
        **totals,
        "sessions": len(sessions),
        "steps": len(steps),
        "per_tool_kind": per_tool_kind(
            tools,
            parts["tool_s"],
            parts["tool_queue_s"],
            totals["total_s"],
            _subagent_wait_calls(steps, tools),
        ),
        "per_workload": {
            workload: {
                k: totals[k]
                for k in (
                    *PARTS,
                    "tool_cpu_s",
                    "total_s",
                    "cpu_share",
                    "gpu_share",
                    "queue_share",
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
