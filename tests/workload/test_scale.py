"""Token scale: every token length of a session scaled, times untouched, 1 the identity."""

from __future__ import annotations

from harness.workload.model import Session, Step, ToolCall
from harness.workload.scale import scale_session, scale_sessions, scaled_tokens


def test_every_token_length_is_scaled() -> None:
    step = Step(
        1_000,
        250,
        tools=(ToolCall("code_exec", 800.0, name="Bash"),),
        hash_ids=(1, 2),
        hash_block_tokens=512,
        kept_prefix_tokens=600,
        think_ms=2_000.0,
        recorded_llm_ms=900.0,
    )
    (scaled,) = scale_session(Session("s", 5.0, (step,)), 0.1).steps
    assert (scaled.new_input_tokens, scaled.output_tokens) == (100, 25)
    assert (scaled.kept_prefix_tokens, scaled.hash_block_tokens) == (60, 51)
    assert scaled.hash_ids == (1, 2) and scaled.tools == step.tools
    assert (scaled.think_ms, scaled.recorded_llm_ms) == (2_000.0, 900.0)


def test_small_lengths_stay_possible() -> None:
    assert scaled_tokens(3, 0.01, least=1) == 1  # an output never becomes 0 tokens
    assert scaled_tokens(0, 0.5, least=1) == 0
    assert scaled_tokens(3, 0.01) == 0
    (step,) = scale_session(Session("s", 0.0, (Step(10, 2, hash_block_tokens=16),)), 0.01).steps
    assert step.hash_block_tokens == 1 and step.output_tokens == 1


def test_scale_one_is_the_identity() -> None:
    session = Session("s", 0.0, (Step(7, 3),))
    assert scale_session(session, 1.0) is session
    assert next(iter(scale_sessions([session], 1.0))) is session
    assert next(iter(scale_sessions([session], 2.0))).input_lengths() == [14]
