"""Synthetic generators: reproducible, calibrated, capped, with parameters checked by key."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.workload.limits import MAX_TOKENS
from harness.workload.synthetic import TOOL_KINDS, generate


@pytest.mark.parametrize("kind", ["chatbot", "agent", "random"])
def test_same_seed_same_sessions_other_seed_differs(kind: str) -> None:
    params = {"requests": 50, "range_ratio": 0.5} if kind == "random" else {"sessions": 30}
    first = list(generate(kind, params, seed=7))
    assert first == list(generate(kind, params, seed=7))
    assert first != list(generate(kind, params, seed=8))


def _interactions(kind: str, params: dict[str, object]) -> list[int]:
    """Prompt plus output of every request."""
    return [
        prompt + step.output_tokens
        for s in generate(kind, params, seed=1)
        for prompt, step in zip(s.input_lengths(), s.steps, strict=True)
    ]


def test_chatbot_is_about_2000_tokens_per_interaction() -> None:
    sizes = _interactions("chatbot", {"sessions": 5000})
    assert 1800 <= np.mean(sizes) <= 2200
    half = _interactions("chatbot", {"sessions": 5000, "scale": 0.5})
    assert 0.45 <= np.mean(half) / np.mean(sizes) <= 0.55


def test_chatbot_shape() -> None:
    sessions = list(generate("chatbot", {"sessions": 200, "session_rate_per_s": 2.0}, seed=3))
    starts = [s.start_ms for s in sessions]
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert 60_000 < starts[-1] < 140_000  # 199 gaps of 500 ms on average
    assert all(s.steps[0].think_ms == 0.0 for s in sessions)
    assert any(step.think_ms > 0 for s in sessions for step in s.steps[1:])
    assert max(s.requests for s in sessions) <= 16


def test_agent_context_grows_to_agent_sizes() -> None:
    sessions = list(generate("agent", {"sessions": 300}, seed=2))
    prompts = [p for s in sessions for p in s.input_lengths()]
    assert all(np.all(np.diff(s.input_lengths()) > 0) for s in sessions)
    assert 50_000 < np.mean(prompts) < 90_000  # Copilot: 67.8k prompt tokens per call
    assert max(prompts) > 150_000
    assert all(3 <= s.requests <= 13 for s in sessions)
    for s in sessions:
        assert s.steps[-1].tools == ()
        assert all(step.tools for step in s.steps[:-1])
        for step in s.steps:
            assert {t.kind for t in step.tools} <= set(TOOL_KINDS)
            assert all(t.duration_ms > 0 for t in step.tools)


@pytest.mark.parametrize("cap", [8192, 30_000, 5])
def test_agent_context_stays_under_cap(cap: int) -> None:
    params = {"sessions": 50, "max_context_tokens": cap}
    for s in generate("agent", params, seed=4):
        assert s.requests >= 1
        for prompt, step in zip(s.input_lengths(), s.steps, strict=True):
            assert prompt + step.output_tokens <= cap
        assert s.steps[-1].tools == ()


def test_cap_only_truncates() -> None:
    full = list(generate("agent", {"sessions": 20, "scale": 0.05}, seed=5))
    capped = list(generate("agent", {"sessions": 20, "scale": 0.05, "max_context_tokens": 8192}, 5))
    for a, b in zip(full, capped, strict=True):
        assert a.start_ms == b.start_ms
        assert [(s.new_input_tokens, s.output_tokens) for s in b.steps] == [
            (s.new_input_tokens, s.output_tokens) for s in a.steps[: b.requests]
        ]


def test_chatbot_cap() -> None:
    for s in generate("chatbot", {"sessions": 200, "max_context_tokens": 1000}, seed=1):
        assert all(
            p + step.output_tokens <= 1000
            for p, step in zip(s.input_lengths(), s.steps, strict=True)
        )


def test_random_like_vllm_bench() -> None:
    fixed = list(generate("random", {"requests": 10, "input_tokens": 100, "output_tokens": 7}, 0))
    assert [(s.session_id, s.start_ms, s.requests) for s in fixed[:2]] == [
        ("rand-0", 0.0, 1),
        ("rand-1", 0.0, 1),
    ]
    assert {(s.steps[0].new_input_tokens, s.steps[0].output_tokens) for s in fixed} == {(100, 7)}
    ranged = list(
        generate("random", {"requests": 2000, "input_tokens": 100, "range_ratio": 0.5}, 0)
    )
    lengths = [s.steps[0].new_input_tokens for s in ranged]
    assert min(lengths) == 50 and max(lengths) == 150


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (
            "chatbot",
            {"sesions": 3},
            "synthetic 'chatbot': unknown key 'sesions' (did you mean 'sessions'?)",
        ),
        ("chatbot", {"sessions": 0}, "synthetic 'chatbot': key 'sessions':"),
        ("agent", {"scale": "big"}, "synthetic 'agent': key 'scale':"),
        ("agent", {"steps_min": 5, "steps_max": 4}, "key 'steps_min': 5 exceeds steps_max 4"),
        ("random", {"range_ratio": 1.0}, "synthetic 'random': key 'range_ratio':"),
        ("poem", {}, "unknown synthetic generator 'poem'"),
        ("chatbot", {"sessions": 10**12}, "key 'sessions': Input should be less than or equal"),
        ("chatbot", {"scale": float("inf")}, "key 'scale': expected a finite number"),
        (
            "chatbot",
            {"think_ms_mean": float("nan")},
            "key 'think_ms_mean': expected a finite number",
        ),
        ("chatbot", {"turns_max": 10**9}, "key 'turns_max': Input should be less than or equal"),
        ("agent", {"tools_per_step_max": 10**6}, "key 'tools_per_step_max': Input should be"),
        ("agent", {"steps_max": 10**7}, "key 'steps_max': Input should be less than or equal"),
        ("agent", {"initial_tokens_mean": 1e308}, "key 'initial_tokens_mean': Input should be"),
        (
            "agent",
            {"tool_mix": {"parse": {"share": float("inf"), "duration_ms": 1}}},
            "key 'tool_mix.parse.share': expected a finite number",
        ),
        ("agent", {"sessions": True}, "key 'sessions': expected a number, got bool"),
        ("random", {"requests": 10**12}, "key 'requests': Input should be less than or equal"),
        ("random", {"input_tokens": "9"}, "key 'input_tokens': expected a number, got str"),
    ],
)
def test_bad_params(kind: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        generate(kind, params, seed=0)
    assert message in str(info.value)


def test_the_largest_parameters_stay_within_token_bounds() -> None:
    # 10^9-token means at scale 1000 once overflowed the stats' 32-bit arrays
    params = {"sessions": 2, "turns_max": 50, "turns_mean": 50, "scale": 1000.0}
    params |= {"input_tokens_mean": 1e9, "output_tokens_mean": 1e9}
    sessions = list(generate("chatbot", params, seed=0))
    prompts = [n for s in sessions for n in s.input_lengths()]
    outputs = [step.output_tokens for s in sessions for step in s.steps]
    assert max(prompts) <= MAX_TOKENS and max(outputs) <= MAX_TOKENS
    big = {"requests": 3, "input_tokens": MAX_TOKENS, "output_tokens": 5, "range_ratio": 0.9}
    assert max(s.steps[0].new_input_tokens for s in generate("random", big, seed=0)) <= MAX_TOKENS
