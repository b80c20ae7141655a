"""Weka's Claude Code traces (kv-cache-tester agentic traces): one conversation a JSON object
with its API requests and its sub-agents, each request's whole prompt named by 64-token
`hash_ids` blocks.

A file holds one conversation object a line (JSON lines), or is one JSON document holding a
single conversation (as the traces are published, one file each; its errors name line 1 and
the field's path). Per conversation: `id`, `block_size` (tokens per hash block, 64 if
absent) and `requests[]`, in order. A request (`type` `n`, or `s` for a streamed one) has
`t` (s from the conversation's start), `in` (its whole prompt), `out`, `hash_ids`,
`api_time` (s, how long the API took) and `stop` (`tool_use`, `end_turn` or ``). A
`type: "subagent"` entry has `t` (its spawn), `agent_id`, `subagent_type`, `status` and its
own `requests[]`. Other keys are ignored. The session semantics, from the recording:

- Sessions: a conversation is a session `id` starting at 0 ms; each sub-agent is its own
  session `<id>/<agent_id>` naming its parent, starting at its spawn (`t`) and after the
  parent's last request before it. Inner `t` values before the spawn are taken as relative
  to it (older captures), as AIPerf reads them.
- Context: a request whose prompt holds the previous context (prompt plus output) keeps all
  of it and appends the rest; a shorter one keeps the prefix its `hash_ids` share with the
  previous prompt (whole blocks), appends the rest; one under COMPACTION_SHARE of the
  previous context is a compaction: a new prefix.
- Time: `api_time` is the recorded LLM time; the gap from a request's end (`t` + `api_time`)
  to the next request's `t` is a human's think time after an `end_turn` stop and otherwise
  the tool phase, replayed as one unmapped wait of that length (the traces name no tools).

A request whose tokens contradict its session is an error naming session and request unless
`repair_tokens` is set: after a `tool_use` stop, a prompt grown by less than the previous
request's output (repaired: the request keeps the prefix its `hash_ids` share); a
compaction is never a contradiction.
"""

from __future__ import annotations

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
    json_list,
    json_mapping,
    json_number,
    json_object,
    json_records,
    json_text,
    require,
)
from harness.workload.formats.options import TraceOptions
from harness.workload.limits import MAX_HASH_ID, MAX_TOKENS, MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step, ToolCall
from harness.workload.tool_names import UNMAPPED

BLOCK_TOKENS = 64
"""Tokens per `hash_ids` block in Weka's traces where a conversation does not say."""

COMPACTION_SHARE = 0.5
"""A request whose prompt is under this share of the previous context starts a new prefix."""

_MAX_T_S = MAX_TRACE_TIME_MS / 1000.0
_REQUEST_TYPES = frozenset({"n", "s"})


@dataclass(frozen=True, slots=True)
class _Request:
    """One API request, checked."""

    where: str
    """Its field path in the conversation (`requests.3`, `requests.5.requests.0`)."""
    index: int
    """Its position among its session's requests."""
    t_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] | None
    api_time_s: float | None
    stop: str


def iter_weka(path: Path, options: TraceOptions | None = None) -> Iterator[Session]:
    """Stream a Weka trace as Sessions: each conversation, then its sub-agents."""
    check_readable(path)
    return _sessions(path, options or TraceOptions())


def _sessions(path: Path, options: TraceOptions) -> Iterator[Session]:
    """Each conversation's session, then its sub-agents'; an id seen twice is an error."""
    seen: dict[str, int] = {}
    for line, value in json_records(path):
        record = json_object(path, line, value)
        conv_id = _text(path, line, "id", require(path, line, record, "id"))
        if conv_id in seen:
            raise TraceFormatError(
                path,
                line,
                "id",
                f"conversation {conv_id!r} was already read on line {seen[conv_id]}",
            )
        seen[conv_id] = line
        yield from _conversation(path, line, conv_id, record, options)


def _conversation(
    path: Path, line: int, conv_id: str, record: dict[str, Any], options: TraceOptions
) -> Iterator[Session]:
    """The conversation's own session and one per sub-agent entry."""
    raw_block = record.get("block_size")
    block = BLOCK_TOKENS if raw_block is None else json_count(path, line, "block_size", raw_block)
    if block < 1:
        raise TraceFormatError(path, line, "block_size", "must be at least 1")
    entries = json_list(path, line, "requests", require(path, line, record, "requests"))
    requests: list[_Request] = []
    subagents: list[tuple[str, dict[str, Any], int]] = []
    for i, raw in enumerate(entries):
        where = f"requests.{i}"
        entry = json_mapping(path, line, where, raw)
        kind = entry.get("type")
        if kind == "subagent":
            subagents.append((where, entry, len(requests)))
        elif kind in _REQUEST_TYPES:
            requests.append(_request(path, line, where, len(requests), entry, block, None))
        else:
            raise TraceFormatError(
                path, line, f"{where}.type", f"expected 'n', 's' or 'subagent', got {brief(kind)}"
            )
    if not requests:
        raise TraceFormatError(path, line, "requests", "holds no API request (type 'n' or 's')")
    start_s = requests[0].t_s
    metadata = {"format": "weka"}
    yield _session(path, line, conv_id, requests, block, options, metadata)
    for where, entry, before in subagents:
        yield _subagent(path, line, conv_id, where, entry, before, start_s, block, options)


def _subagent(
    path: Path,
    line: int,
    conv_id: str,
    where: str,
    entry: dict[str, Any],
    before: int,
    start_s: float,
    block: int,
    options: TraceOptions,
) -> Session:
    """A sub-agent entry as its own session, started at its spawn after the parent's last
    request before it."""
    spawn_s = json_number(
        path, line, f"{where}.t", require(path, line, entry, "t", f"{where}.t"), _MAX_T_S
    )
    agent = _text(
        path, line, f"{where}.agent_id", require(path, line, entry, "agent_id", f"{where}.agent_id")
    )
    inner = json_list(
        path, line, f"{where}.requests", require(path, line, entry, "requests", f"{where}.requests")
    )
    requests: list[_Request] = []
    for i, raw in enumerate(inner):
        inner_where = f"{where}.requests.{i}"
        item = json_mapping(path, line, inner_where, raw)
        kind = item.get("type")
        if kind not in _REQUEST_TYPES:
            raise TraceFormatError(
                path, line, f"{inner_where}.type", f"expected 'n' or 's', got {brief(kind)}"
            )
        requests.append(_request(path, line, inner_where, i, item, block, spawn_s))
    if not requests:
        raise TraceFormatError(path, line, f"{where}.requests", "holds no API request")
    metadata = {"format": "weka"}
    for key in ("subagent_type", "status"):
        if isinstance(entry.get(key), str):
            metadata[key] = entry[key]
    offset_ms = max(0.0, (spawn_s - start_s) * 1000.0)
    session = _session(path, line, f"{conv_id}/{agent}", requests, block, options, metadata)
    return Session(
        session_id=session.session_id,
        start_ms=offset_ms,
        steps=session.steps,
        source_line=line,
        metadata=metadata,
        parent_id=conv_id,
        parent_offset_ms=offset_ms,
        parent_step=before - 1 if before > 0 else None,
    )


def _request(
    path: Path,
    line: int,
    where: str,
    index: int,
    entry: dict[str, Any],
    block: int,
    spawn_s: float | None,
) -> _Request:
    """Check one request's fields; inside a sub-agent a `t` before the spawn is relative to it."""
    t_s = json_number(
        path, line, f"{where}.t", require(path, line, entry, "t", f"{where}.t"), _MAX_T_S
    )
    if spawn_s is not None and t_s + 1e-6 < spawn_s:
        t_s += spawn_s
    tokens = json_count(path, line, f"{where}.in", require(path, line, entry, "in", f"{where}.in"))
    output = json_count(
        path, line, f"{where}.out", require(path, line, entry, "out", f"{where}.out")
    )
    raw_api = entry.get("api_time")
    api = (
        None if raw_api is None else json_number(path, line, f"{where}.api_time", raw_api, _MAX_T_S)
    )
    stop = entry.get("stop") or ""
    if not isinstance(stop, str):
        raise TraceFormatError(path, line, f"{where}.stop", f"expected a string, got {brief(stop)}")
    return _Request(
        where=where,
        index=index,
        t_s=t_s,
        input_tokens=tokens,
        output_tokens=output,
        hash_ids=_hash_ids(path, line, f"{where}.hash_ids", entry.get("hash_ids"), tokens, block),
        api_time_s=api,
        stop=stop,
    )


def _hash_ids(
    path: Path, line: int, where: str, raw: Any, tokens: int, block: int
) -> tuple[int, ...] | None:
    """The prompt's block ids (None where absent or empty): ceil(in / block_size) of them."""
    if raw is None or raw == []:
        return None
    items = json_list(path, line, where, raw)
    for i, item in enumerate(items):
        json_count(path, line, f"{where}.{i}", item, MAX_HASH_ID)
    needed = -(-tokens // block)
    if len(items) != needed:
        raise TraceFormatError(
            path,
            line,
            where,
            f"has {len(items)} block ids but `in` {tokens} needs ceil({tokens}/{block}) = {needed}",
        )
    return tuple(items)


def _session(
    path: Path,
    line: int,
    session_id: str,
    requests: list[_Request],
    block: int,
    options: TraceOptions,
    metadata: dict[str, str],
) -> Session:
    """One session's steps: context from the recorded prompts, time from `t` and `api_time`."""
    steps: list[Step] = []
    previous: _Request | None = None
    for k, req in enumerate(requests):
        if previous is not None and req.t_s < previous.t_s:
            raise TraceFormatError(
                path,
                line,
                f"{req.where}.t",
                f"session {session_id!r} request {req.index}: {req.t_s:g} s is earlier than "
                f"request {previous.index}'s {previous.t_s:g} s",
            )
        new, kept = (
            (req.input_tokens, None)
            if previous is None
            else _context(path, line, session_id, previous, req, block, options)
        )
        following = requests[k + 1] if k + 1 < len(requests) else None
        gap_ms = _gap_ms(req, following)
        tools: tuple[ToolCall, ...] = ()
        tools_ms: float | None = None
        if gap_ms is not None and req.stop != "end_turn":
            tools = (ToolCall(kind=UNMAPPED, duration_ms=gap_ms),)
            tools_ms = gap_ms
        think = 0.0
        if previous is not None and previous.stop == "end_turn":
            think = _gap_ms(previous, req) or 0.0
        steps.append(
            Step(
                new_input_tokens=new,
                output_tokens=req.output_tokens,
                tools=tools,
                hash_ids=req.hash_ids,
                think_ms=think,
                kept_prefix_tokens=kept,
                hash_block_tokens=block,
                recorded_llm_ms=None if req.api_time_s is None else req.api_time_s * 1000.0,
                recorded_tools_ms=tools_ms,
            )
        )
        previous = req
    session = Session(
        session_id=session_id,
        start_ms=0.0,
        steps=tuple(steps),
        source_line=line,
        metadata=metadata,
    )
    check_prompts(path, line, session, f"{requests[0].where}.in")
    return session


def _gap_ms(req: _Request, following: _Request | None) -> float | None:
    """From a request's end (`t` + `api_time`) to the next one's `t`; None for the last."""
    if following is None:
        return None
    end_s = req.t_s + (req.api_time_s or 0.0)
    return max(0.0, (following.t_s - end_s) * 1000.0)


def _context(
    path: Path,
    line: int,
    session_id: str,
    previous: _Request,
    req: _Request,
    block: int,
    options: TraceOptions,
) -> tuple[int, int | None]:
    """(new input tokens, kept prefix) of a later request: the agent loop where the prompt
    holds the whole previous context, a new prefix after a compaction, else the prefix its
    hash blocks share with the previous prompt."""
    context = previous.input_tokens + previous.output_tokens
    if req.input_tokens >= context:
        return req.input_tokens - context, None
    if req.input_tokens < COMPACTION_SHARE * context:
        return req.input_tokens, 0
    growth = req.input_tokens - previous.input_tokens
    if previous.stop == "tool_use" and not options.repair_tokens:
        raise TraceFormatError(
            path,
            line,
            f"{req.where}.in",
            f"session {session_id!r} request {req.index}: grew by {growth:,} tokens from "
            f"request {previous.index}, less than its output of {previous.output_tokens:,} "
            "tokens after a tool_use stop (set source.repair_tokens, or --repair-tokens, to "
            "repair it)",
        )
    kept = _shared_blocks(previous.hash_ids, req.hash_ids) * block
    kept = max(0, min(kept, previous.input_tokens, req.input_tokens, MAX_TOKENS))
    return req.input_tokens - kept, kept


def _shared_blocks(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> int:
    """How many leading block ids two prompts share (0 where either has none)."""
    if a is None or b is None:
        return 0
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _text(path: Path, line: int, field: str, raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return json_text(path, line, field, raw)
