"""The harness's native trace format: JSON lines, one whole Session (steps and tools) per line.

Example line::

    {"session_id": "a1", "start_ms": 0, "steps": [{"new_input_tokens": 1500,
     "output_tokens": 120, "tools": [{"kind": "retrieval", "duration_ms": 900}]}]}

Optional keys: step `think_ms`, `offset_ms`, `hash_ids` (blocks of `hash_block_tokens`,
default 512, of the step's whole prompt, so ceil(prompt / block) of them),
`kept_prefix_tokens` (the prefix of the previous context the prompt keeps; 0 starts a new
prefix), `recorded_llm_ms`, `recorded_tools_ms`; tool `size`, `parallel_group`,
`timeout_ms`, `name` (the recorded tool name); session `metadata` (string to string),
`parent_id`, `parent_offset_ms`, `parent_step` (a sub-agent's parent session). Unknown
keys, wrong types (a string or boolean where a number belongs), negative or non-finite
numbers, numbers beyond the bounds of `harness.workload.limits` and repeated session ids
are errors naming the line and the dotted field (e.g. `steps.1.output_tokens`). Sessions
may come in any order of `start_ms`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import TraceFormatError
from harness.workload.formats._common import brief, check_prompts, check_readable, json_lines
from harness.workload.formats.mooncake import BLOCK_TOKENS, blocks_for
from harness.workload.limits import (
    MAX_HASH_ID,
    MAX_PARALLEL_GROUP,
    MAX_TOKENS,
    MAX_TOOL_SIZE,
    MAX_TRACE_TIME_MS,
)
from harness.workload.model import Session, Step, ToolCall


class _Strict(BaseModel):
    """Strict types (no string-to-number coercion) and no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


TimeMs = Annotated[float, Field(ge=0, le=MAX_TRACE_TIME_MS, allow_inf_nan=False)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


class ToolRecord(_Strict):
    """A tool call as written in the file."""

    kind: str = Field(min_length=1)
    duration_ms: TimeMs
    size: float | None = Field(default=None, ge=0, le=MAX_TOOL_SIZE, allow_inf_nan=False)
    parallel_group: int | None = Field(default=None, ge=0, le=MAX_PARALLEL_GROUP)
    timeout_ms: float | None = Field(default=None, gt=0, le=MAX_TRACE_TIME_MS, allow_inf_nan=False)
    name: str | None = Field(default=None, min_length=1)


class StepRecord(_Strict):
    """A step as written in the file."""

    new_input_tokens: Tokens
    output_tokens: Tokens
    tools: list[ToolRecord] = Field(default_factory=list)
    think_ms: TimeMs = 0.0
    offset_ms: TimeMs | None = None
    hash_ids: list[Annotated[int, Field(ge=0, le=MAX_HASH_ID)]] | None = None
    kept_prefix_tokens: Tokens | None = None
    hash_block_tokens: int = Field(default=BLOCK_TOKENS, ge=1, le=MAX_TOKENS)
    recorded_llm_ms: TimeMs | None = None
    recorded_tools_ms: TimeMs | None = None


class SessionRecord(_Strict):
    """A session line as written in the file."""

    session_id: str = Field(min_length=1)
    start_ms: TimeMs
    steps: list[StepRecord] = Field(min_length=1)
    metadata: dict[str, str] = Field(default_factory=dict)
    parent_id: str | None = Field(default=None, min_length=1)
    parent_offset_ms: TimeMs | None = None
    parent_step: int | None = Field(default=None, ge=0, le=MAX_TOKENS)


def iter_sessions(path: Path) -> Iterator[Session]:
    """Stream a native sessions JSON-lines file, validating each line."""
    check_readable(path)
    return _sessions(path)


def _sessions(path: Path) -> Iterator[Session]:
    """Validate each line and reject a session id seen on an earlier line."""
    first_line: dict[str, int] = {}
    for line, value in json_lines(path):
        try:
            record = SessionRecord.model_validate(value)
        except ValidationError as err:
            raise _format_error(path, line, err) from None
        earlier = first_line.setdefault(record.session_id, line)
        if earlier != line:
            raise TraceFormatError(
                path,
                line,
                "session_id",
                f"duplicate session id {record.session_id!r} (first on line {earlier})",
            )
        session = _to_session(record, line)
        check_prompts(path, line, session)
        _check_hash_ids(path, line, session)
        yield session


def _format_error(path: Path, line: int, err: ValidationError) -> TraceFormatError:
    """Map pydantic's first error to a TraceFormatError with the dotted field."""
    first = err.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "missing"
    elif first["type"] == "model_type":
        message = "expected a JSON object"
    else:
        message = f"{first['msg']}, got {brief(first['input'])}"
    return TraceFormatError(path, line, field, message)


def _to_session(record: SessionRecord, line: int) -> Session:
    """Convert a validated record to the trace model."""
    steps = tuple(
        Step(
            new_input_tokens=step.new_input_tokens,
            output_tokens=step.output_tokens,
            tools=tuple(
                ToolCall(
                    kind=tool.kind,
                    duration_ms=tool.duration_ms,
                    size=tool.size,
                    parallel_group=tool.parallel_group,
                    timeout_ms=tool.timeout_ms,
                    name=tool.name,
                )
                for tool in step.tools
            ),
            hash_ids=tuple(step.hash_ids) if step.hash_ids is not None else None,
            think_ms=step.think_ms,
            offset_ms=step.offset_ms,
            kept_prefix_tokens=step.kept_prefix_tokens,
            hash_block_tokens=step.hash_block_tokens,
            recorded_llm_ms=step.recorded_llm_ms,
            recorded_tools_ms=step.recorded_tools_ms,
        )
        for step in record.steps
    )
    return Session(
        session_id=record.session_id,
        start_ms=record.start_ms,
        steps=steps,
        source_line=line,
        metadata=dict(record.metadata),
        parent_id=record.parent_id,
        parent_offset_ms=record.parent_offset_ms,
        parent_step=record.parent_step,
    )


def _check_hash_ids(path: Path, line: int, session: Session) -> None:
    """Each step's `hash_ids` must cover its whole prompt in `hash_block_tokens` blocks."""
    for i, (step, prompt) in enumerate(zip(session.steps, session.input_lengths(), strict=True)):
        size = step.hash_block_tokens
        if step.hash_ids is not None and len(step.hash_ids) != blocks_for(prompt, size):
            raise TraceFormatError(
                path,
                line,
                f"steps.{i}.hash_ids",
                f"has {len(step.hash_ids)} block ids but the step's prompt of {prompt} tokens "
                f"needs ceil({prompt}/{size}) = {blocks_for(prompt, size)}",
            )


def session_to_json(session: Session) -> dict[str, Any]:
    """The JSON object for one line of a sessions file (defaults omitted), for writing traces."""
    steps: list[dict[str, Any]] = []
    for step in session.steps:
        item: dict[str, Any] = {
            "new_input_tokens": step.new_input_tokens,
            "output_tokens": step.output_tokens,
        }
        if step.tools:
            item["tools"] = [_tool_to_json(tool) for tool in step.tools]
        if step.think_ms:
            item["think_ms"] = step.think_ms
        if step.offset_ms is not None:
            item["offset_ms"] = step.offset_ms
        if step.hash_ids is not None:
            item["hash_ids"] = list(step.hash_ids)
        if step.kept_prefix_tokens is not None:
            item["kept_prefix_tokens"] = step.kept_prefix_tokens
        if step.hash_block_tokens != BLOCK_TOKENS:
            item["hash_block_tokens"] = step.hash_block_tokens
        for key in ("recorded_llm_ms", "recorded_tools_ms"):
            if getattr(step, key) is not None:
                item[key] = getattr(step, key)
        steps.append(item)
    out: dict[str, Any] = {
        "session_id": session.session_id,
        "start_ms": session.start_ms,
        "steps": steps,
    }
    if session.metadata:
        out["metadata"] = dict(session.metadata)
    for key in ("parent_id", "parent_offset_ms", "parent_step"):
        if getattr(session, key) is not None:
            out[key] = getattr(session, key)
    return out


def _tool_to_json(tool: ToolCall) -> dict[str, Any]:
    """The JSON object of one tool call (defaults omitted)."""
    item: dict[str, Any] = {"kind": tool.kind, "duration_ms": tool.duration_ms}
    if tool.size is not None:
        item["size"] = tool.size
    if tool.parallel_group is not None:
        item["parallel_group"] = tool.parallel_group
    if tool.timeout_ms is not None:
        item["timeout_ms"] = tool.timeout_ms
    if tool.name is not None:
        item["name"] = tool.name
    return item
