"""TraceLab round JSON lines (coding-agent sessions of Claude Code and Codex, SyFI TraceLab):
one LLM round a line, the rounds of a session on consecutive lines in `round_index` order.

Per round: `session_id`, `round_index`, `input_tokens_total` (= `prefix_tokens` +
`newly_append_tokens`), `output_tokens` (with `reasoning_output_tokens` of them, Codex),
`timing_events[]` (`event_type`, ISO `timestamp`) and `tools[]` (`tool_name`, `emitted_at`,
`result_at`, `tool_wall_latency_ms`, `tool_internal_latency_ms`, `is_error`). Other keys are
ignored. The session semantics, from the recording:

- Context: a round whose input is at least the previous context (its input plus output)
  keeps all of it and appends the rest (the agent loop). A shorter one (Codex drops
  reasoning items, agents trim) keeps the round's recorded `prefix_tokens` of it and
  appends the rest; one under COMPACTION_SHARE of the previous context is a compaction:
  a new prefix.
- Time: a round's LLM time runs from its last input event (user message, tool result) to
  its last output event; its tool phase from there to its last tool result; the wait before
  a later round's `user_message` is think time (a human's, kept out of the split). Each
  session starts at 0 ms (recordings weeks apart say nothing about load); its recorded
  start is in its metadata.
- Tools: a call's duration is `tool_internal_latency_ms`, else `tool_wall_latency_ms`,
  else `result_at − emitted_at`; calls whose [emitted, result] spans overlap run in one
  parallel group; names map to kinds through `harness.workload.tool_names`.

A round whose tokens contradict its session is an error naming session and round unless
`repair_tokens` is set: `input_tokens_total` unequal to `prefix_tokens` +
`newly_append_tokens` (repaired: the total is kept), or, within a turn (a round not started
by a user message), a growth from the previous round's input smaller than that round's
visible output (`output_tokens` − `reasoning_output_tokens`; repaired: the round keeps its
recorded prefix, as a shorter round does).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import TraceFormatError
from harness.workload.formats._common import (
    brief,
    check_prompts,
    check_readable,
    json_count,
    json_lines,
    json_list,
    json_number,
    json_object,
    json_text,
    require,
)
from harness.workload.formats.options import TraceOptions
from harness.workload.limits import MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step, ToolCall
from harness.workload.tool_names import tool_kind

COMPACTION_SHARE = 0.5
"""A round whose input is under this share of the previous context starts a new prefix."""

_INPUT_EVENTS = frozenset({"user_message", "tool_result"})


@dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    duration_ms: float
    emitted: dt.datetime | None
    result: dt.datetime | None


@dataclass(frozen=True, slots=True)
class _Round:
    """One line, checked: its tokens, times and tools."""

    line: int
    session_id: str
    index: int
    input_tokens: int
    prefix_tokens: int | None
    append_tokens: int | None
    output_tokens: int
    reasoning_tokens: int
    ready: dt.datetime | None
    """Its last input event (user message or tool result)."""
    end: dt.datetime | None
    """Its last output event."""
    user_message: dt.datetime | None
    """Its first user message, where it has one."""
    tools: tuple[_Tool, ...]
    metadata: dict[str, str]


def iter_tracelab(path: Path, options: TraceOptions | None = None) -> Iterator[Session]:
    """Stream a TraceLab round trace as Sessions, one per `session_id`."""
    check_readable(path)
    return _sessions(path, options or TraceOptions())


def _sessions(path: Path, options: TraceOptions) -> Iterator[Session]:
    """Group consecutive rounds by session; a session id that comes back later is an error."""
    done: dict[str, int] = {}
    rounds: list[_Round] = []
    for line, value in json_lines(path):
        rnd = _round(path, line, json_object(path, line, value))
        if rounds and rnd.session_id != rounds[0].session_id:
            yield _session(path, rounds, options)
            done[rounds[0].session_id] = rounds[0].line
            rounds = []
        if not rounds and rnd.session_id in done:
            raise TraceFormatError(
                path,
                line,
                "session_id",
                f"session {rnd.session_id!r} began on line {done[rnd.session_id]} and another "
                "came between: a session's rounds must be on consecutive lines",
            )
        if rounds and rnd.index != rounds[-1].index + 1:
            raise TraceFormatError(
                path,
                line,
                "round_index",
                f"{rnd.index} follows round {rounds[-1].index} of session "
                f"{rnd.session_id!r}: rounds must count up by one",
            )
        rounds.append(rnd)
    if rounds:
        yield _session(path, rounds, options)


def _time(path: Path, line: int, field: str, raw: Any) -> dt.datetime:
    """An ISO 8601 timestamp with its zone (`2026-06-01T05:40:20.151Z`)."""
    if isinstance(raw, str):
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value
    raise TraceFormatError(path, line, field, f"expected an ISO 8601 timestamp, got {brief(raw)}")


def _optional_count(path: Path, line: int, record: dict[str, Any], key: str) -> int | None:
    raw = record.get(key)
    return None if raw is None else json_count(path, line, key, raw)


def _round(path: Path, line: int, record: dict[str, Any]) -> _Round:
    """Check one line's fields."""
    session_id = json_text(path, line, "session_id", require(path, line, record, "session_id"))
    index = json_count(path, line, "round_index", require(path, line, record, "round_index"))
    input_tokens = json_count(
        path, line, "input_tokens_total", require(path, line, record, "input_tokens_total")
    )
    output_tokens = json_count(
        path, line, "output_tokens", require(path, line, record, "output_tokens")
    )
    reasoning = _optional_count(path, line, record, "reasoning_output_tokens") or 0
    ready = end = user = None
    events = json_list(path, line, "timing_events", require(path, line, record, "timing_events"))
    for i, raw in enumerate(events):
        event = _event(path, line, i, raw)
        kind, at = event
        if kind in _INPUT_EVENTS:
            ready = at if ready is None else max(ready, at)
            if kind == "user_message" and user is None:
                user = at
        else:
            end = at if end is None else max(end, at)
    raw_tools = json_list(path, line, "tools", record.get("tools") or [])
    tools = tuple(_tool(path, line, i, raw) for i, raw in enumerate(raw_tools))
    metadata = {
        key: record[key]
        for key in ("provider", "model", "project")
        if isinstance(record.get(key), str)
    }
    return _Round(
        line=line,
        session_id=session_id,
        index=index,
        input_tokens=input_tokens,
        prefix_tokens=_optional_count(path, line, record, "prefix_tokens"),
        append_tokens=_optional_count(path, line, record, "newly_append_tokens"),
        output_tokens=output_tokens,
        reasoning_tokens=min(reasoning, output_tokens),
        ready=ready,
        end=end,
        user_message=user,
        tools=tools,
        metadata=metadata,
    )


def _event(path: Path, line: int, i: int, raw: Any) -> tuple[str, dt.datetime]:
    where = f"timing_events.{i}"
    if not isinstance(raw, dict):
        raise TraceFormatError(path, line, where, f"expected a JSON object, got {brief(raw)}")
    kind = json_text(path, line, f"{where}.event_type", require(path, line, raw, "event_type"))
    try:
        stamp = raw["timestamp"]
    except KeyError:
        raise TraceFormatError(path, line, f"{where}.timestamp", "missing") from None
    return kind, _time(path, line, f"{where}.timestamp", stamp)


def _tool(path: Path, line: int, i: int, raw: Any) -> _Tool:
    where = f"tools.{i}"
    if not isinstance(raw, dict):
        raise TraceFormatError(path, line, where, f"expected a JSON object, got {brief(raw)}")
    name = json_text(path, line, f"{where}.tool_name", raw.get("tool_name"))
    emitted = raw.get("emitted_at")
    result = raw.get("result_at")
    emitted_at = None if emitted is None else _time(path, line, f"{where}.emitted_at", emitted)
    result_at = None if result is None else _time(path, line, f"{where}.result_at", result)
    duration: float | None = None
    for key in ("tool_internal_latency_ms", "tool_wall_latency_ms"):
        value = raw.get(key)
        if value is not None:
            duration = json_number(path, line, f"{where}.{key}", value, MAX_TRACE_TIME_MS)
            break
    if duration is None and emitted_at is not None and result_at is not None:
        duration = max(0.0, _ms(result_at - emitted_at))
    is_error = raw.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise TraceFormatError(
            path, line, f"{where}.is_error", f"expected true, false or null, got {brief(is_error)}"
        )
    return _Tool(name, duration or 0.0, emitted_at, result_at)


def _ms(delta: dt.timedelta) -> float:
    return delta.total_seconds() * 1000.0


def _contradiction(path: Path, rnd: _Round, field: str, message: str) -> TraceFormatError:
    return TraceFormatError(
        path,
        rnd.line,
        field,
        f"session {rnd.session_id!r} round {rnd.index}: {message} "
        "(set source.repair_tokens, or --repair-tokens, to repair it)",
    )


def _session(path: Path, rounds: list[_Round], options: TraceOptions) -> Session:
    """Build one session's steps from its rounds (tokens, times, tools)."""
    steps: list[Step] = []
    previous: _Round | None = None
    for rnd in rounds:
        _check_sum(path, rnd, options)
        if previous is None:
            new, kept = rnd.input_tokens, None
        else:
            new, kept = _context(path, previous, rnd, options)
        steps.append(
            Step(
                new_input_tokens=new,
                output_tokens=rnd.output_tokens,
                tools=_calls(rnd, options),
                think_ms=_think_ms(previous, rnd),
                kept_prefix_tokens=kept,
                recorded_llm_ms=_span_ms(rnd.ready, rnd.end),
                recorded_tools_ms=_tools_ms(rnd),
            )
        )
        previous = rnd
    first = rounds[0]
    metadata = dict(first.metadata)
    metadata["format"] = "tracelab"
    start = first.user_message or first.ready or first.end
    if start is not None:
        metadata["recorded_start"] = start.isoformat()
    session = Session(
        session_id=first.session_id,
        start_ms=0.0,
        steps=tuple(steps),
        source_line=first.line,
        metadata=metadata,
    )
    check_prompts(path, first.line, session, "input_tokens_total")
    return session


def _check_sum(path: Path, rnd: _Round, options: TraceOptions) -> None:
    """`input_tokens_total` must be `prefix_tokens` + `newly_append_tokens` where both are given."""
    if rnd.prefix_tokens is None or rnd.append_tokens is None or options.repair_tokens:
        return
    if rnd.prefix_tokens + rnd.append_tokens != rnd.input_tokens:
        raise _contradiction(
            path,
            rnd,
            "input_tokens_total",
            f"input_tokens_total {rnd.input_tokens:,} is not prefix_tokens "
            f"{rnd.prefix_tokens:,} + newly_append_tokens {rnd.append_tokens:,}",
        )


def _context(
    path: Path, previous: _Round, rnd: _Round, options: TraceOptions
) -> tuple[int, int | None]:
    """(new input tokens, kept prefix) of a later round: the agent loop where the input
    holds the whole previous context, else the recorded prefix, else a new one."""
    context = previous.input_tokens + previous.output_tokens
    growth = rnd.input_tokens - previous.input_tokens
    visible = previous.output_tokens - previous.reasoning_tokens
    if rnd.user_message is None and growth < visible and not options.repair_tokens:
        raise _contradiction(
            path,
            rnd,
            "input_tokens_total",
            f"grew by {growth:,} tokens from round {previous.index}, less than that round's "
            f"visible output of {visible:,} tokens, within one turn",
        )
    if rnd.input_tokens >= context:
        return rnd.input_tokens - context, None
    if rnd.input_tokens < COMPACTION_SHARE * context:
        return rnd.input_tokens, 0
    if rnd.prefix_tokens is not None:
        kept = rnd.prefix_tokens
    elif rnd.append_tokens is not None:
        kept = rnd.input_tokens - rnd.append_tokens
    else:
        kept = rnd.input_tokens
    kept = max(0, min(kept, rnd.input_tokens))
    return rnd.input_tokens - kept, kept


def _span_ms(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, _ms(end - start))


def _think_ms(previous: _Round | None, rnd: _Round) -> float:
    """The human's wait before a later round's user message: from the end of the previous
    round (its last output or tool result) to the message."""
    if previous is None or rnd.user_message is None:
        return 0.0
    ends = [t for t in (previous.end, *(tool.result for tool in previous.tools)) if t is not None]
    if not ends:
        return 0.0
    return max(0.0, _ms(rnd.user_message - max(ends)))


def _tools_ms(rnd: _Round) -> float | None:
    """The recorded tool phase: from the round's last output event to its last tool result."""
    results = [tool.result for tool in rnd.tools if tool.result is not None]
    if not rnd.tools or not results or rnd.end is None:
        return None
    return max(0.0, _ms(max(results) - rnd.end))


def _calls(rnd: _Round, options: TraceOptions) -> tuple[ToolCall, ...]:
    """The round's tools as calls: those whose recorded spans overlap share a parallel group."""
    groups = _groups(rnd.tools)
    sizes: dict[int, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    return tuple(
        ToolCall(
            kind=tool_kind(tool.name, options.tool_map),
            duration_ms=tool.duration_ms,
            parallel_group=group if sizes[group] > 1 else None,
            name=tool.name,
        )
        for tool, group in zip(rnd.tools, groups, strict=True)
    )


def _groups(tools: tuple[_Tool, ...]) -> list[int]:
    """A group number per call in order: a call emitted before every earlier call of the
    current group has returned joins it; a call without recorded times runs alone."""
    groups: list[int] = []
    group = -1
    latest: dt.datetime | None = None
    for tool in tools:
        if tool.emitted is None or tool.result is None:
            group += 1
            latest = None
        elif latest is not None and tool.emitted < latest:
            latest = max(latest, tool.result)
        else:
            group += 1
            latest = tool.result
        groups.append(group)
    return groups
