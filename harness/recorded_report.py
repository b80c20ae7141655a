"""The recorded split beside the replayed one: a report section that sets what a recorded
agent trace timed itself (LLM, tool and human seconds, from the manifest's counted plan)
beside what the run measured on this hardware (the summary's latency split), with the token
scale the run applied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.figures import Section, format_share, format_value, lookup
from harness.summary import Summary


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def recorded_sections(summary: Summary, manifest: Mapping[str, Any]) -> list[Section]:
    """The section where the run replayed a trace that times itself; none otherwise."""
    recorded = lookup(manifest, "plan.recorded_split")
    if not isinstance(recorded, Mapping):
        return []
    scale = _number(lookup(manifest, "workload.source.token_scale"))
    title = "Recorded split beside the replayed one"
    if scale is not None and scale != 1.0:
        title += f" (token scale {scale:g})"
    sec = Section(title, ("part", "recorded s", "recorded share", "replayed s", "replayed share"))
    totals = recorded.get("totals")
    split = summary.latency_split
    if not isinstance(totals, Mapping):
        why = recorded.get("why_not") or "the trace does not time itself"
        sec.rows.append(("Recorded split", f"not available: {why}", "", "", ""))
        return [sec]
    llm, tool, human = (_number(totals.get(k)) for k in ("llm_s", "tool_s", "human_s"))
    work = (llm or 0.0) + (tool or 0.0)
    if split is not None:
        tools_s = split.tool_s + split.tool_queue_s
        measured = split.llm_s + tools_s + split.orchestration_s + split.slot_queue_s
        replay: tuple[float | None, float | None, float | None] = (
            split.llm_s,
            tools_s,
            split.think_s,
        )
    else:
        measured, replay = 0.0, (None, None, None)
    labels = (
        "LLM (recorded: last input → last output; replayed: request sent → done)",
        "Tools (replayed: working and queued for a worker)",
        "Human (think time, not in either split)",
    )
    for i, (label, rec, rep) in enumerate(zip(labels, (llm, tool, human), replay, strict=True)):
        rec_share = rec / work if i < 2 and rec is not None and work > 0 else None
        rep_share = rep / measured if i < 2 and rep is not None and measured > 0 else None
        sec.rows.append(
            (
                label,
                format_value(rec, 3),
                format_share(rec_share) if i < 2 else "",
                format_value(rep, 3),
                format_share(rep_share) if i < 2 else "",
            )
        )
    if split is not None:
        rest = split.orchestration_s + split.slot_queue_s
        sec.rows.append(
            (
                "Harness (orchestration and slot queue; replayed only)",
                "",
                "",
                format_value(rest, 3),
                format_share(rest / measured if measured > 0 else None),
            )
        )
    unmapped = recorded.get("unmapped_tool_calls")
    if isinstance(unmapped, Mapping) and unmapped:
        names = ", ".join(f"{name} ×{calls}" for name, calls in unmapped.items())
        sec.rows.append(("Unmapped tool calls (waits of their recorded time)", names, "", "", ""))
    return [sec]
