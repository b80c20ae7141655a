"""The trace model: a Session is an ordered list of Steps; a Step is one LLM request plus the
tool calls that follow it. Every loader and generator produces these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call after a step's LLM request; replayed as a wait of `duration_ms`
    until real tools exist."""

    kind: str
    duration_ms: float
    size: float | None = None
    parallel_group: int | None = None
    timeout_ms: float | None = None
    """The agent's limit on the call: a sandboxed `code_exec` is killed when its CPU time
    passes it (a runaway program); None leaves the kernel's own size-based limit."""


@dataclass(frozen=True, slots=True)
class Step:
    """One LLM request of a session and the tool calls that follow it.

    The step's prompt is the previous step's prompt, plus the previous step's output,
    plus `new_input_tokens` fresh tokens (the agent loop). For the first step the
    prompt is just `new_input_tokens` tokens. `hash_ids` (Mooncake) name the 512-token
    prefix blocks of the whole prompt; equal ids mean identical blocks. `think_ms` is the
    pause before the step's request (a user reading and typing); `offset_ms`, where a trace
    records it, is when the request was sent relative to the session's start.
    """

    new_input_tokens: int
    output_tokens: int
    tools: tuple[ToolCall, ...] = ()
    hash_ids: tuple[int, ...] | None = None
    think_ms: float = 0.0
    offset_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A sequence of steps run in order, starting `start_ms` after the trace's start.

    `source_line` is the line (or record number) the session came from, for error messages.
    """

    session_id: str
    start_ms: float
    steps: tuple[Step, ...]
    source_line: int | None = None
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def requests(self) -> int:
        """Number of LLM requests in this session."""
        return len(self.steps)

    def input_lengths(self) -> list[int]:
        """Prompt length of each step, following the agent-loop rule."""
        lengths: list[int] = []
        prompt = 0
        prev_out = 0
        for step in self.steps:
            prompt = prompt + prev_out + step.new_input_tokens
            lengths.append(prompt)
            prev_out = step.output_tokens
        return lengths
