"""The recorded split: LLM, tool and human time per session as the trace timed it, tool
phases from the calls where the trace does not time them, and unmapped calls counted."""

from __future__ import annotations

import pytest

from harness.workload.model import Session, Step, ToolCall, tool_phase_ms
from harness.workload.recorded import RecordedSplit


def test_tool_phase_runs_a_parallel_group_as_its_longest_call() -> None:
    calls = (
        ToolCall("parse", 100.0, parallel_group=0),
        ToolCall("parse", 300.0, parallel_group=0),
        ToolCall("code_exec", 50.0),
    )
    assert tool_phase_ms(calls) == 350.0


def test_split_per_session_and_in_total() -> None:
    timed = Session(
        "a",
        0.0,
        (
            Step(
                10, 1, tools=(ToolCall("unmapped", 400.0, name="TodoWrite"),), recorded_llm_ms=1_000
            ),
            Step(
                10,
                1,
                think_ms=5_000,
                recorded_llm_ms=2_000,
                recorded_tools_ms=250,
                tools=(ToolCall("code_exec", 300.0, name="Bash"),),
            ),
        ),
    )
    untimed = Session("b", 0.0, (Step(10, 1),))
    split = RecordedSplit()
    assert [s.session_id for s in split.tap([timed, untimed])] == ["a", "b"]
    totals = split.totals()
    assert totals is not None and totals["sessions"] == 1
    assert (totals["llm_s"], totals["tool_s"], totals["human_s"]) == pytest.approx((3.0, 0.65, 5.0))
    assert totals["llm_share"] == pytest.approx(3.0 / 3.65)
    data = split.to_json_dict()
    assert data["sessions"][1] == {
        "session_id": "b",
        "requests": 1,
        "llm_s": None,
        "tool_s": 0.0,
        "human_s": 0.0,
        "subagent_wait_s": 0.0,
    }
    assert data["unmapped_tool_calls"] == {"TodoWrite": 1}
    assert data["tool_calls_by_name"] == {
        "Bash": {"calls": 1, "kind": "code_exec"},
        "TodoWrite": {"calls": 1, "kind": "unmapped"},
    }


def test_no_timing_is_unavailable_not_zero() -> None:
    split = RecordedSplit()
    split.add(Session("b", 0.0, (Step(10, 1),)))
    assert split.totals() is None
    assert split.to_json_dict()["why_not"] == "the trace does not time its LLM calls"


def test_a_parents_wait_on_its_sub_agent_is_not_its_tool_time() -> None:
    """The parent's step 0 waits 3 s on the sub-agent it started (an unmapped wait beside a
    0.5 s Bash call): that wait leaves its tool time, once however many sub-agents the step
    started, and the sub-agents' own time is counted in their sessions."""
    parent = Session(
        "p",
        0.0,
        (
            Step(
                10,
                1,
                tools=(
                    ToolCall("unmapped", 3_000.0, parallel_group=0, name="Task"),
                    ToolCall("code_exec", 500.0, parallel_group=0, name="Bash"),
                ),
                recorded_llm_ms=1_000,
            ),
            Step(10, 1, recorded_llm_ms=1_000),
        ),
    )
    children = [
        Session(
            f"p/{k}",
            1_000.0,
            (Step(5, 1, recorded_llm_ms=800, tools=(ToolCall("code_exec", 200.0),)),),
            parent_id="p",
            parent_offset_ms=1_000.0,
            parent_step=0,
        )
        for k in range(2)
    ]
    split = RecordedSplit()
    list(split.tap([parent, *children]))
    totals = split.totals()
    assert totals is not None
    # Tools: the parent's 3 s phase less its 2.5 s wait past the Bash call; the children's.
    assert totals["tool_s"] == pytest.approx(0.5 + 0.2 + 0.2)
    assert totals["subagent_wait_s"] == pytest.approx(2.5)
    assert totals["llm_s"] == pytest.approx(2.0 + 0.8 + 0.8)
    listed = {s.session_id: s for s in split.sessions}
    assert (listed["p"].tool_s, listed["p"].subagent_wait_s) == pytest.approx((0.5, 2.5))
    assert listed["p/0"].subagent_wait_s == 0.0
