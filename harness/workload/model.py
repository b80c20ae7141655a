"""The trace model: a Session is an ordered list of Steps; a Step is one LLM request plus the
tool calls that follow it. Every loader and generator produces these.

Beyond the agent loop the model expresses what recordings of real agents hold: a tool's
recorded name beside the kernel it runs as, a prompt that keeps only part of the previous
context (dropped reasoning, a compaction), prefix blocks of any size, what the recording
timed (LLM and tool phases), and sub-agent sessions started by a parent session."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BLOCK_TOKENS = 512
"""Tokens per `hash_ids` block unless a format says otherwise (Mooncake's and the native
sessions format's; Weka's are 64, Bailian's 16)."""


UNMAPPED = "unmapped"
"""The kind of a recorded tool with no mapping: a wait of its recorded duration."""

TOOL_KINDS: tuple[str, ...] = (
    "retrieval",
    "summarize",
    "code_exec",
    "file_search",
    "parse",
    "file_write",
)
"""The tool kinds with a real kernel (CPU work; file_write's is disk work)."""

WAIT_KINDS: tuple[str, ...] = ("web_search", "api_call", UNMAPPED)
"""Remote calls (a search engine, an external API): wall time on the agent's clock but no
work on this host, so they are waits of their recorded duration in both modes; and
`unmapped`, a recorded tool the mapping does not know, a wait of its recorded duration."""

KNOWN_TOOL_KINDS: tuple[str, ...] = TOOL_KINDS + WAIT_KINDS
"""Every tool kind a workload may name."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call after a step's LLM request: `kind` is what it runs as (a kernel, a
    remote wait, or `unmapped`: a recorded tool with no mapping, a wait of its recorded
    duration), `duration_ms` how long it took as recorded (or generated). Calls sharing a
    `parallel_group` run together."""

    kind: str
    duration_ms: float
    size: float | None = None
    parallel_group: int | None = None
    timeout_ms: float | None = None
    """The agent's limit on the call: a sandboxed `code_exec` is killed when its CPU time
    passes it (a runaway program); None leaves the kernel's own size-based limit."""
    name: str | None = None
    """The tool's name in the recording (`Bash`, `exec_command`, `Read`...), from which
    `kind` was mapped; None for generated calls and formats that name only kinds."""


@dataclass(frozen=True, slots=True)
class Step:
    """One LLM request of a session and the tool calls that follow it.

    The step's prompt is the previous step's context (its prompt plus its output), or the
    first `kept_prefix_tokens` of it, plus `new_input_tokens` fresh tokens. With
    `kept_prefix_tokens` None the whole context is kept (the agent loop); a number keeps
    that prefix only (a recording whose round is shorter than the context plus output:
    Codex drops reasoning items), 0 starts a new prefix (a compaction). For the first step
    the prompt is just `new_input_tokens` tokens. `hash_ids` (Mooncake, Weka, Bailian) name
    the `hash_block_tokens`-token prefix blocks of the whole prompt; equal ids mean
    identical blocks. `think_ms` is the pause before the step's request (a user reading
    and typing; kept out of the latency split); `offset_ms`, where a trace records it, is
    when the request was sent relative to the session's start. `recorded_llm_ms` and
    `recorded_tools_ms` are how long the recording's LLM call and the tool phase after it
    took (None where it does not say; the tool phase is then its calls' durations).
    """

    new_input_tokens: int
    output_tokens: int
    tools: tuple[ToolCall, ...] = ()
    hash_ids: tuple[int, ...] | None = None
    think_ms: float = 0.0
    offset_ms: float | None = None
    kept_prefix_tokens: int | None = None
    hash_block_tokens: int = DEFAULT_BLOCK_TOKENS
    recorded_llm_ms: float | None = None
    recorded_tools_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A sequence of steps run in order, starting `start_ms` after the trace's start.

    `source_line` is the line (or record number) the session came from, for error messages.
    A sub-agent's session names its `parent_id` and starts `parent_offset_ms` after its
    parent's start (after the request of the parent's step `parent_step`, where known);
    `start_ms` stays the absolute start, so a replay that ignores parents still runs it.
    """

    session_id: str
    start_ms: float
    steps: tuple[Step, ...]
    source_line: int | None = None
    metadata: dict[str, str] = field(default_factory=dict, compare=False)
    parent_id: str | None = None
    parent_offset_ms: float | None = None
    parent_step: int | None = None

    @property
    def requests(self) -> int:
        """Number of LLM requests in this session."""
        return len(self.steps)

    def input_lengths(self) -> list[int]:
        """Prompt length of each step: the context it keeps (all of it by the agent-loop
        rule, else `kept_prefix_tokens` of it) plus its new input."""
        lengths: list[int] = []
        context = 0
        for step in self.steps:
            kept = context if step.kept_prefix_tokens is None else kept_tokens(step, context)
            prompt = kept + step.new_input_tokens
            lengths.append(prompt)
            context = prompt + step.output_tokens
        return lengths


def kept_tokens(step: Step, context: int) -> int:
    """How many tokens of a `context`-token context `step`'s prompt keeps: all by the
    agent-loop rule, else `kept_prefix_tokens`, at most the whole context."""
    if step.kept_prefix_tokens is None:
        return context
    return max(0, min(step.kept_prefix_tokens, context))


def tool_phase_ms(tools: tuple[ToolCall, ...], waits_only: bool = False) -> float:
    """How long a step's calls take one after another, a parallel group as its longest call;
    with `waits_only`, of its remote-call and unmapped waits (WAIT_KINDS) only."""
    groups: dict[int, float] = {}
    total = 0.0
    for call in tools:
        if waits_only and call.kind not in WAIT_KINDS:
            continue
        if call.parallel_group is None:
            total += call.duration_ms
        else:
            groups[call.parallel_group] = max(
                groups.get(call.parallel_group, 0.0), call.duration_ms
            )
    return total + sum(groups.values())


def step_tools_ms(step: Step) -> float:
    """A step's recorded tool phase: as timed where the trace says, else from its calls."""
    return (
        step.recorded_tools_ms if step.recorded_tools_ms is not None else tool_phase_ms(step.tools)
    )
