"""Where a sub-agent sits in its parent's recorded timeline: the spawn's delay into the tool
phase of the parent's step (from the Weka and OpenTelemetry samples, as their loaders read
them), the parent's recorded wait on it, and the bounded map of recent sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.workload.formats.otel import iter_otel
from harness.workload.formats.weka import iter_weka
from harness.workload.model import Session, Step, ToolCall
from harness.workload.subagents import Recent, recorded_wait_ms, request_end_ms, spawn_delay_ms

DATA = Path(__file__).parent / "data"


def _by_id(sessions: list[Session]) -> dict[str, Session]:
    return {s.session_id: s for s in sessions}


def test_weka_sub_agent_starts_half_a_second_into_the_parents_tool_wait() -> None:
    """conv-a's request 1 is sent at 3.0 s and takes 2.0 s; its sub-agent is spawned at
    5.5 s, inside the 3 s gap to request 2 at 8.0 s (one unmapped wait)."""
    sessions = _by_id(list(iter_weka(DATA / "weka_small.jsonl")))
    parent, child = sessions["conv-a"], sessions["conv-a/agent_001"]
    assert child.parent_step == 1
    assert request_end_ms(parent, 1) == pytest.approx(5_000.0)
    assert spawn_delay_ms(parent, child) == pytest.approx(500.0)
    assert recorded_wait_ms(parent.steps[1]) == pytest.approx(3_000.0)


def test_otel_sub_agent_starts_in_its_ask_helper_tool_span() -> None:
    """The parent's second chat ends at 5.0 s; the helper's first chat starts at 5.6 s, in
    the `ask_helper` span (5.5 → 9.0 s) after `lookup_weather` (5.0 → 5.4 s)."""
    sessions = list(iter_otel(DATA / "otel_small.jsonl"))
    child = next(s for s in sessions if s.parent_id is not None)
    parent = _by_id(sessions)[child.parent_id or ""]
    assert request_end_ms(parent, 1) == pytest.approx(5_000.0)
    assert spawn_delay_ms(parent, child) == pytest.approx(600.0)
    # Both waits of the step: the unnamed one is counted as waiting on the sub-agent too.
    assert recorded_wait_ms(parent.steps[1]) == pytest.approx(3_900.0)


def test_untimed_or_offset_only_sub_agents_start_at_once() -> None:
    parent = Session("p", 0.0, (Step(10, 2, tools=(ToolCall("unmapped", 100.0),)),))
    child = Session("c", 0.0, (Step(5, 1),), parent_id="p", parent_offset_ms=50.0, parent_step=0)
    assert request_end_ms(parent, 0) is None  # no recorded LLM time
    assert spawn_delay_ms(parent, child) == 0.0
    offset_only = Session("c", 0.0, (Step(5, 1),), parent_id="p", parent_offset_ms=50.0)
    assert spawn_delay_ms(parent, offset_only) == 0.0


def test_spawn_delay_stays_within_the_parents_tool_phase() -> None:
    parent = Session(
        "p",
        0.0,
        (Step(10, 2, tools=(ToolCall("unmapped", 100.0),), recorded_llm_ms=200.0),),
    )
    late = Session("c", 0.0, (Step(5, 1),), parent_id="p", parent_offset_ms=900.0, parent_step=0)
    early = Session("c", 0.0, (Step(5, 1),), parent_id="p", parent_offset_ms=50.0, parent_step=0)
    assert spawn_delay_ms(parent, late) == pytest.approx(100.0)
    assert spawn_delay_ms(parent, early) == 0.0


def test_a_steps_kernel_calls_are_not_a_wait_on_sub_agents() -> None:
    step = Step(
        10,
        2,
        tools=(
            ToolCall("unmapped", 400.0, parallel_group=0, name="Task"),
            ToolCall("code_exec", 900.0, parallel_group=0, name="Bash"),
            ToolCall("web_search", 100.0),
        ),
    )
    # The Task's 400 ms run beside the Bash call's 900 ms: only the search is waiting.
    assert recorded_wait_ms(step) == pytest.approx(100.0)
    alone = Step(10, 2, tools=(ToolCall("unmapped", 400.0, parallel_group=0),))
    assert recorded_wait_ms(alone) == pytest.approx(400.0)


def test_recent_keeps_the_newest_keys_only() -> None:
    recent: Recent[str, int] = Recent(size=2)
    recent.add("a", 1)
    recent.add("b", 2)
    recent.add("a", 3)  # a is the newest again
    recent.add("c", 4)
    assert list(recent) == ["a", "c"]
    assert recent.get("a") == 3 and recent.get("b") is None and recent.get(None) is None
