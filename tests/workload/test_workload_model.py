"""The trace model: prompt lengths with a kept prefix, and what each field defaults to."""

from __future__ import annotations

from harness.workload.model import DEFAULT_BLOCK_TOKENS, Session, Step, ToolCall, kept_tokens


def test_agent_loop_rule_by_default() -> None:
    steps = (Step(100, 10), Step(5, 20), Step(7, 1))
    assert Session("s", 0.0, steps).input_lengths() == [100, 115, 142]


def test_kept_prefix_keeps_part_of_the_context_and_zero_starts_anew() -> None:
    steps = (Step(100, 10), Step(30, 20, kept_prefix_tokens=80), Step(50, 1, kept_prefix_tokens=0))
    # step 1 keeps 80 of the 110-token context; step 2 keeps none of the 130.
    assert Session("s", 0.0, steps).input_lengths() == [100, 110, 50]


def test_kept_prefix_is_at_most_the_context() -> None:
    assert kept_tokens(Step(1, 1, kept_prefix_tokens=500), 120) == 120
    assert kept_tokens(Step(1, 1), 120) == 120


def test_defaults_reproduce_the_old_model() -> None:
    step = Step(1, 1)
    assert step.kept_prefix_tokens is None and step.hash_block_tokens == DEFAULT_BLOCK_TOKENS == 512
    assert step.recorded_llm_ms is None and step.recorded_tools_ms is None
    assert ToolCall("parse", 1.0).name is None
    session = Session("s", 0.0, (step,))
    assert (session.parent_id, session.parent_offset_ms, session.parent_step) == (None, None, None)
