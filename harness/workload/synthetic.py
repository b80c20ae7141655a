"""Seeded synthetic workloads: multi-turn chatbot conversations, agent sessions whose context
grows step by step with tool calls between steps, and `vllm bench serve`-style random requests.

The same kind, parameters and seed always give the same Sessions. Each session's random
draws are made up front, so a `max_context_tokens` cap only truncates sessions and leaves
every other draw unchanged; session start times come from a separate random stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.config_files import Count, FiniteFloat, printable_key
from harness.errors import ConfigError
from harness.suggest import suggest
from harness.units import MS_PER_S
from harness.workload.limits import (
    MAX_RATE_PER_S,
    MAX_SCALE,
    MAX_SYNTHETIC_SESSIONS,
    MAX_SYNTHETIC_STEPS,
    MAX_TOKENS,
    MAX_TOOLS_PER_STEP,
    MAX_TRACE_TIME_MS,
)
from harness.workload.model import Session, Step, ToolCall

SYNTHETIC_KINDS: tuple[str, ...] = ("chatbot", "agent", "random")

# Lognormal shape (sigma of the log) of token lengths and tool durations: heavy enough to
# give the long tails seen in the Azure and Mooncake traces, not calibrated to either.
_TOKEN_SIGMA = 0.8
_DURATION_SIGMA = 0.6

# Tool kinds, their share of calls and mean duration in ms, read loosely from the latency
# breakdown of "A CPU-Centric Perspective on Agentic AI" (Figure 2, reference.md):
# retrieval: web search 0.7 s (FreshQA) to 3.5 s (QASC), exact retrieval over 10M docs 9.3 s;
# summarize: LexRank 1.4 s (FreshQA) to 3.5 s (QASC); code_exec: mini-SWE-agent bash/python,
# 11 s (APPS) to 48 s (BigCodeBench) per task over several calls. file_search and parse
# have no row there: assumed local, sub-second work.
TOOL_KINDS: dict[str, tuple[float, float]] = {
    "retrieval": (0.30, 3_000.0),
    "code_exec": (0.25, 6_000.0),
    "file_search": (0.20, 700.0),
    "summarize": (0.15, 2_000.0),
    "parse": (0.10, 300.0),
}


class _Params(BaseModel):
    """Base for generator parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=_Params)


class ChatbotParams(_Params):
    """Multi-turn chat conversations.

    Defaults give ≈2,000 tokens (prompt + output) per interaction at scale 1, the chatbot
    figure of the Feb 2026 industry call (reference.md): output 211 tokens per turn as in
    the Azure 2023 conversation trace, ~305 new user tokens per turn and a mean of 4 turns
    (geometric), so the average prompt, which carries the history, is ≈1,800 tokens.
    """

    sessions: Count = Field(default=100, gt=0, le=MAX_SYNTHETIC_SESSIONS)
    scale: FiniteFloat = Field(default=1.0, gt=0, le=MAX_SCALE)
    session_rate_per_s: FiniteFloat = Field(default=1.0, gt=0, le=MAX_RATE_PER_S)
    turns_mean: FiniteFloat = Field(default=4.0, ge=1, le=MAX_SYNTHETIC_STEPS)
    turns_max: Count = Field(default=16, ge=1, le=MAX_SYNTHETIC_STEPS)
    input_tokens_mean: FiniteFloat = Field(default=305.0, gt=0, le=MAX_TOKENS)
    output_tokens_mean: FiniteFloat = Field(default=211.0, gt=0, le=MAX_TOKENS)
    # A user's pause between answer and next question (assumed; no reference figure).
    think_ms_mean: FiniteFloat = Field(default=10_000.0, ge=0, le=MAX_TRACE_TIME_MS)
    max_context_tokens: Count | None = Field(default=None, ge=2, le=MAX_TOKENS)


class ToolShare(_Params):
    """One tool kind of an agent's mix: its share of calls and mean duration."""

    share: FiniteFloat = Field(gt=0)
    duration_ms: FiniteFloat = Field(ge=0, le=MAX_TRACE_TIME_MS)


class AgentParams(_Params):
    """Agent sessions: each step's prompt is the previous one plus its output and new tool
    results, reaching 10k–200k tokens at scale 1 (reference.md, agent token shapes).

    Defaults follow the GitHub Copilot coding-agent traces (reference.md): 7.83 LLM calls per
    user turn (steps 3..13, mean 8), 527 output tokens per call and 67.8k prompt tokens per
    call on average (a 12k first prompt plus ~13k tokens of tool results per step).
    """

    sessions: Count = Field(default=20, gt=0, le=MAX_SYNTHETIC_SESSIONS)
    steps_min: Count = Field(default=3, ge=1, le=MAX_SYNTHETIC_STEPS)
    steps_max: Count = Field(default=13, ge=1, le=MAX_SYNTHETIC_STEPS)
    scale: FiniteFloat = Field(default=1.0, gt=0, le=MAX_SCALE)
    session_rate_per_s: FiniteFloat = Field(default=0.5, gt=0, le=MAX_RATE_PER_S)
    initial_tokens_mean: FiniteFloat = Field(default=12_000.0, gt=0, le=MAX_TOKENS)
    tool_result_tokens_mean: FiniteFloat = Field(default=13_000.0, gt=0, le=MAX_TOKENS)
    output_tokens_mean: FiniteFloat = Field(default=527.0, gt=0, le=MAX_TOKENS)
    tools_per_step_max: Count = Field(default=2, ge=1, le=MAX_TOOLS_PER_STEP)
    tool_duration_scale: FiniteFloat = Field(default=1.0, ge=0, le=MAX_SCALE)
    max_context_tokens: Count | None = Field(default=None, ge=2, le=MAX_TOKENS)
    tool_mix: dict[str, ToolShare] | None = None
    """Tool kinds with their share of calls and mean duration; default: TOOL_KINDS."""


class RandomParams(_Params):
    """`vllm bench serve --dataset-name random`: lengths uniform in L·(1 ± range_ratio)."""

    requests: Count = Field(default=1000, gt=0, le=MAX_SYNTHETIC_SESSIONS)
    input_tokens: Count = Field(default=1024, gt=0, le=MAX_TOKENS)
    output_tokens: Count = Field(default=128, gt=0, le=MAX_TOKENS)
    range_ratio: FiniteFloat = Field(default=0.0, ge=0, lt=1)


def generate(kind: str, params: dict[str, Any], seed: int) -> Iterator[Session]:
    """Validate `params` for generator `kind` now, and return its Sessions as an iterator."""
    valid = validate_params(kind, params)
    if isinstance(valid, ChatbotParams):
        return _chatbot(valid, seed)
    if isinstance(valid, AgentParams):
        return _agent(valid, seed)
    assert isinstance(valid, RandomParams)
    return _random(valid, seed)


def validate_params(kind: str, params: dict[str, Any], key_prefix: str = "") -> _Params:
    """Generator `kind`'s parameters, validated; the ConfigError names the key (after
    `key_prefix`, e.g. `source.params.` for a workload file)."""
    if kind == "chatbot":
        return _validate(kind, ChatbotParams, params, key_prefix)
    if kind == "agent":
        agent = _validate(kind, AgentParams, params, key_prefix)
        if agent.steps_min > agent.steps_max:
            raise ConfigError(
                f"synthetic 'agent': key '{key_prefix}steps_min': {agent.steps_min} exceeds "
                f"steps_max {agent.steps_max}"
            )
        return agent
    if kind == "random":
        return _validate(kind, RandomParams, params, key_prefix)
    raise ConfigError(f"unknown synthetic generator {kind!r}; known: {', '.join(SYNTHETIC_KINDS)}")


def _validate(kind: str, model: type[P], params: dict[str, Any], key_prefix: str) -> P:
    """Validate parameters, turning the first error into a ConfigError naming the key."""
    try:
        return model.model_validate(params)
    except ValidationError as err:
        first = err.errors()[0]
        key = printable_key(key_prefix + ".".join(str(part) for part in first["loc"])) or "(params)"
        if first["type"] == "extra_forbidden":
            hint = suggest(str(first["loc"][-1]), model.model_fields)
            raise ConfigError(f"synthetic '{kind}': unknown key '{key}'{hint}") from None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"synthetic '{kind}': key '{key}': {message}") from None


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for session start times and for session contents."""
    arrivals, contents = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(arrivals), np.random.default_rng(contents)


def _start_times_ms(rng: np.random.Generator, count: int, rate_per_s: float) -> Iterator[float]:
    """Poisson session starts: the first at 0, then exponential gaps at `rate_per_s`."""
    start = 0.0
    for _ in range(count):
        yield start
        start += float(rng.exponential(MS_PER_S / rate_per_s))


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, size: int) -> np.ndarray:
    """Lognormal draws with the given mean (not median)."""
    mu = np.log(mean) - sigma**2 / 2
    return rng.lognormal(mu, sigma, size)


def _tokens(values: np.ndarray, scale: float) -> list[int]:
    """Scale token lengths and round them to at least one token and at most MAX_TOKENS."""
    return [min(MAX_TOKENS, max(1, round(float(v) * scale))) for v in values]


def _chatbot(p: ChatbotParams, seed: int) -> Iterator[Session]:
    """Conversations `chat-<i>`: geometric turn counts, think time before each later turn."""
    arrivals, rng = _streams(seed)
    starts = _start_times_ms(arrivals, p.sessions, p.session_rate_per_s)
    for i, start in enumerate(starts):
        turns = min(int(rng.geometric(1.0 / p.turns_mean)), p.turns_max)
        inputs = _tokens(_lognormal(rng, p.input_tokens_mean, _TOKEN_SIGMA, turns), p.scale)
        outputs = _tokens(_lognormal(rng, p.output_tokens_mean, _TOKEN_SIGMA, turns), p.scale)
        thinks = rng.exponential(p.think_ms_mean, turns)
        steps = [
            Step(
                new_input_tokens=new,
                output_tokens=out,
                think_ms=float(thinks[k]) if k > 0 else 0.0,
            )
            for k, (new, out) in enumerate(zip(inputs, outputs, strict=True))
        ]
        yield Session(f"chat-{i}", start, _capped(steps, p.max_context_tokens or MAX_TOKENS))


def _agent(p: AgentParams, seed: int) -> Iterator[Session]:
    """Agent sessions `agent-<i>`: tool calls after every step but the last (several after
    one step share parallel group 0, run together); tool results are the next new input."""
    arrivals, rng = _streams(seed)
    starts = _start_times_ms(arrivals, p.sessions, p.session_rate_per_s)
    mix = {k: (t.share, t.duration_ms) for k, t in p.tool_mix.items()} if p.tool_mix else TOOL_KINDS
    kinds = list(mix)
    weights = np.array([share for share, _ in mix.values()])
    for i, start in enumerate(starts):
        n = int(rng.integers(p.steps_min, p.steps_max + 1))
        first = _lognormal(rng, p.initial_tokens_mean, _TOKEN_SIGMA, 1)
        results = _lognormal(rng, p.tool_result_tokens_mean, _TOKEN_SIGMA, n - 1)
        inputs = _tokens(np.concatenate([first, results]), p.scale)
        outputs = _tokens(_lognormal(rng, p.output_tokens_mean, _TOKEN_SIGMA, n), p.scale)
        counts = rng.integers(1, p.tools_per_step_max + 1, n)
        picks = rng.choice(len(kinds), size=(n, p.tools_per_step_max), p=weights / weights.sum())
        noise = rng.lognormal(-(_DURATION_SIGMA**2) / 2, _DURATION_SIGMA, picks.shape)
        steps: list[Step] = []
        for k in range(n):
            tools: tuple[ToolCall, ...] = ()
            if k < n - 1:
                group = 0 if counts[k] > 1 else None
                tools = tuple(
                    ToolCall(
                        kind=kinds[picks[k, j]],
                        duration_ms=mix[kinds[picks[k, j]]][1]
                        * float(noise[k, j])
                        * p.tool_duration_scale,
                        parallel_group=group,
                    )
                    for j in range(int(counts[k]))
                )
            steps.append(Step(new_input_tokens=inputs[k], output_tokens=outputs[k], tools=tools))
        yield Session(f"agent-{i}", start, _capped(steps, p.max_context_tokens or MAX_TOKENS))


def _random(p: RandomParams, seed: int) -> Iterator[Session]:
    """One-step sessions `rand-<i>`, all starting at 0 (arrivals come from the workload)."""
    rng = np.random.default_rng(seed)

    def lengths(mean: int) -> np.ndarray:
        """Uniform integers in [mean·(1 − r), mean·(1 + r)], at least 1, as vLLM does (and
        at most MAX_TOKENS)."""
        low = max(int(mean * (1 - p.range_ratio)), 1)
        high = min(max(int(mean * (1 + p.range_ratio)), low), MAX_TOKENS)
        return rng.integers(low, high + 1, p.requests)

    inputs, outputs = lengths(p.input_tokens), lengths(p.output_tokens)
    for i in range(p.requests):
        step = Step(new_input_tokens=int(inputs[i]), output_tokens=int(outputs[i]))
        yield Session(f"rand-{i}", 0.0, (step,))


def _capped(steps: list[Step], cap: int) -> tuple[Step, ...]:
    """Keep the steps whose prompt plus output fits in `cap` tokens, stopping at the first
    that does not; a first step too big on its own is shrunk to fit. The last kept step
    loses its tool calls (a session ends with an answer, not a tool call). Without a
    `max_context_tokens` the cap is MAX_TOKENS, which no default-sized session comes near."""
    first = steps[0]
    if first.new_input_tokens + first.output_tokens > cap:
        out = max(1, min(first.output_tokens, cap // 2))
        first = replace(first, new_input_tokens=cap - out, output_tokens=out)
    kept = [first]
    context = first.new_input_tokens + first.output_tokens
    for step in steps[1:]:
        context += step.new_input_tokens + step.output_tokens
        if context > cap:
            break
        kept.append(step)
    if len(kept) < len(steps) and kept[-1].tools:
        kept[-1] = replace(kept[-1], tools=())
    return tuple(kept)
