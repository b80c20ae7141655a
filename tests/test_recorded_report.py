"""The report's recorded split beside the replayed one: each side's rows and shares of its own
total, the waits that take their recorded time in both, the parents' wait on sub-agents
kept out of both totals, and a note saying what the seconds are."""

from __future__ import annotations

from typing import Any

import pytest
from summary_builders import split_block, summary, tool_kind

from harness.recorded_report import recorded_sections


def _manifest(**totals: Any) -> dict[str, Any]:
    base = {"llm_s": 6.0, "tool_s": 4.0, "human_s": 7.0, "wait_s": 1.0, "subagent_wait_s": 0.0}
    return {
        "workload": {"source": {"token_scale": 0.1}, "tools": {"mode": "execute"}},
        "plan": {
            "recorded_split": {
                "totals": {**base, **totals},
                "why_not": None,
                "unmapped_tool_calls": {"TodoWrite": 2},
            }
        },
    }


def _rows(recorded: dict[str, Any] | None = None, **split: Any) -> dict[str, tuple[str, ...]]:
    """The section's rows by label (up to its first bracket)."""
    per_kind = {"web_search": tool_kind(tool_s=1.5), "code_exec": tool_kind(tool_s=3.5)}
    block = split_block(per_tool_kind=per_kind, think_s=7.5, **split)
    (section,) = recorded_sections(summary(latency_split=block), _manifest(**(recorded or {})))
    return {row[0].split(" (")[0]: row[1:] for row in section.rows}


def test_each_side_has_its_shares_of_its_own_total() -> None:
    rows = _rows()
    # Recorded: 6 s LLM + 4 s tools = 10 s; replayed: 4 LLM + 5 tools + 1 harness = 10 s.
    assert rows["LLM"] == ("6.000", "60.0 %", "4.000", "40.0 %")
    assert rows["Tools"] == ("4.000", "40.0 %", "5.000", "50.0 %")
    assert rows["… of which remote-call and unmapped waits"] == (
        "1.000",
        "10.0 %",
        "1.500",
        "15.0 %",
    )
    assert rows["Harness"] == ("", "", "1.000", "10.0 %")
    assert rows["Total, the shares' whole"] == ("10.000", "100.0 %", "10.000", "100.0 %")
    assert rows["Human"] == ("7.000", "", "7.500", "")
    assert rows["Unmapped tool calls"][0] == "TodoWrite ×2"
    assert not any(label.startswith("Parents waiting") for label in rows)


def test_the_parents_wait_on_sub_agents_is_a_row_of_its_own() -> None:
    rows = _rows({"subagent_wait_s": 3.0}, subagent_wait_s=2.5)
    assert rows["Parents waiting on their sub-agents"] == ("3.000", "", "2.500", "")
    assert rows["Total, the shares' whole"][0] == "10.000"  # not in the total


def test_the_note_says_what_the_seconds_are() -> None:
    (section,) = recorded_sections(summary(latency_split=split_block()), _manifest())
    assert section.title == "Recorded split beside the replayed one (token scale 0.1)"
    assert section.note is not None
    assert "scaled by 0.1" in section.note and "tool kernels" in section.note


def test_a_trace_that_times_nothing_says_so() -> None:
    manifest = {"plan": {"recorded_split": {"totals": None, "why_not": "no LLM times"}}}
    (section,) = recorded_sections(summary(latency_split=split_block()), manifest)
    assert section.rows == [("Recorded split", "not available: no LLM times", "", "", "")]
    assert recorded_sections(summary(), {}) == []


@pytest.mark.parametrize("mode", ["replay", "execute"])
def test_the_note_names_the_tool_mode(mode: str) -> None:
    manifest = _manifest()
    manifest["workload"]["tools"]["mode"] = mode
    (section,) = recorded_sections(summary(latency_split=split_block()), manifest)
    expected = "waits of the recorded durations" if mode == "replay" else "tool kernels"
    assert section.note is not None and expected in section.note
