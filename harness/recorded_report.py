"""The recorded split beside the replayed one: a report section that sets what a recorded
agent trace timed itself (LLM, tool and human seconds, from the manifest's counted plan)
beside what the run measured on this hardware (the summary's latency split), with the token
scale the run applied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.figures import Section, format_share, format_value, lookup
from harness.summary import LatencySplit, Summary
from harness.workload.model import WAIT_KINDS


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _replayed_waits_s(split: LatencySplit) -> float:
    """The tool row's part that is remote-call and unmapped waits (their recorded time)."""
    return sum(
        k.tool_s + k.queue_s for name, k in split.per_tool_kind.items() if name in WAIT_KINDS
    )


def _row(
    label: str, rec: float | None, rec_total: float, rep: float | None, rep_total: float
) -> tuple[str, str, str, str, str]:
    """One row of seconds with each side's share of its own total ('' where not a part)."""
    return (
        label,
        format_value(rec, 3) if rec is not None else "",
        format_share(rec / rec_total) if rec is not None and rec_total > 0 else "",
        format_value(rep, 3) if rep is not None else "",
        format_share(rep / rep_total) if rep is not None and rep_total > 0 else "",
    )


def recorded_sections(summary: Summary, manifest: Mapping[str, Any]) -> list[Section]:
    """The section where the run replayed a trace that times itself; none otherwise. Rows
    name what each side timed; each side's shares are of its own total (the recording's LLM
    + tools; the run's LLM + tools + harness), and the note says what the seconds are."""
    recorded = lookup(manifest, "plan.recorded_split")
    if not isinstance(recorded, Mapping):
        return []
    scale = _number(lookup(manifest, "workload.source.token_scale"))
    title = "Recorded split beside the replayed one"
    scaled = scale is not None and scale != 1.0
    if scaled:
        title += f" (token scale {scale:g})"
    sec = Section(
        title,
        (
            "part",
            "recorded s",
            "recorded share",
            "replayed s",
            "replayed share",
        ),
    )
    totals = recorded.get("totals")
    split = summary.latency_split
    if not isinstance(totals, Mapping):
        why = recorded.get("why_not") or "the trace does not time itself"
        sec.rows.append(("Recorded split", f"not available: {why}", "", "", ""))
        return [sec]
    llm, tool, human, waits, subagents = (
        _number(totals.get(k)) for k in ("llm_s", "tool_s", "human_s", "wait_s", "subagent_wait_s")
    )
    rec_total = (llm or 0.0) + (tool or 0.0)
    rep_llm = rep_tools = rep_waits = rep_harness = rep_human = rep_subagents = None
    rep_total = 0.0
    if split is not None:
        rep_llm, rep_human = split.llm_s, split.think_s
        rep_tools = split.tool_s + split.tool_queue_s
        rep_waits = _replayed_waits_s(split)
        rep_harness = split.orchestration_s + split.slot_queue_s
        rep_subagents = split.subagent_wait_s
        rep_total = rep_llm + rep_tools + rep_harness
    sec.rows.append(
        _row(
            "LLM (recorded: last input → last output; replayed: request sent → done)",
            llm,
            rec_total,
            rep_llm,
            rep_total,
        )
    )
    sec.rows.append(
        _row(
            "Tools (recorded: last output → last tool result; replayed: working and queued "
            "for a worker)",
            tool,
            rec_total,
            rep_tools,
            rep_total,
        )
    )
    sec.rows.append(
        _row(
            "… of which remote-call and unmapped waits (their recorded time in both)",
            waits,
            rec_total,
            rep_waits,
            rep_total,
        )
    )
    sec.rows.append(
        _row(
            "Harness (orchestration and slot queue; replayed only)",
            None,
            rec_total,
            rep_harness,
            rep_total,
        )
    )
    total_row = _row(
        "Total, the shares' whole (recorded: LLM + tools; replayed: + harness)",
        rec_total,
        rec_total,
        rep_total if split is not None else None,
        rep_total,
    )
    sec.rows.append(total_row)
    sec.rows.append(_row("Human (think time, not in either total)", human, 0.0, rep_human, 0.0))
    if subagents or rep_subagents:
        sec.rows.append(
            _row(
                "Parents waiting on their sub-agents (not in either total: the sub-agents' "
                "own rows hold their work)",
                subagents,
                0.0,
                rep_subagents,
                0.0,
            )
        )
    unmapped = recorded.get("unmapped_tool_calls")
    if isinstance(unmapped, Mapping) and unmapped:
        names = ", ".join(f"{name} ×{calls}" for name, calls in unmapped.items())
        sec.rows.append(("Unmapped tool calls (waits of their recorded time)", names, "", "", ""))
    scaled_by = f" on prompts and outputs scaled by {scale:g}" if scaled else ""
    mode = lookup(manifest, "workload.tools.mode")
    tools_are = {
        "execute": "this host's tool kernels, sized from the recorded durations",
        "replay": "waits of the recorded durations",
    }.get(str(mode), "the run's tools")
    sec.note = (
        f"Shares are of each side's own total. Replayed LLM seconds are this server's"
        f"{scaled_by}; replayed tool seconds are {tools_are}; remote-call and unmapped "
        "tools wait their recorded time in both. Compare the shares more than the seconds."
    )
    return [sec]
