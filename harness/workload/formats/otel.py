"""OpenTelemetry GenAI spans (`--format otel`): an OTLP/JSON trace export, as the OTLP file
exporter writes it (one `{"resourceSpans": [...]}` request a line), or one such JSON
document, so users can record their own agents (OpenAI Agents SDK, LangGraph and others
emit these spans) and replay them.

Per span (`resourceSpans[].scopeSpans[].spans[]`): `traceId`, `spanId`, `parentSpanId`,
`name`, `startTimeUnixNano`, `endTimeUnixNano` (decimal strings or integers) and
`attributes` (`[{key, value: {stringValue | intValue | doubleValue | boolValue}}]`). The
GenAI semantic conventions name the spans by `gen_ai.operation.name`: `chat` (also
`text_completion`, `generate_content`) with `gen_ai.usage.input_tokens` and
`gen_ai.usage.output_tokens` (the older `prompt_tokens` / `completion_tokens` where those
are absent) and optionally `gen_ai.usage.cache_read.input_tokens`; `execute_tool` with
`gen_ai.tool.name`; `invoke_agent`. Other spans only link parents to children. The
session semantics, from the recording:

- Sessions: every span belongs to its nearest `invoke_agent` ancestor that has chat spans
  of its own (an agent span without any is transparent); a trace's spans under no such
  agent form session `<traceId>`. An agent under no other is a session `<traceId>/<spanId>`;
  a nested one is a sub-agent session naming its parent, started at its first chat span
  (after the parent's last chat before it). Sessions of one trace keep their recorded
  start from the trace's first chat span; each trace starts at 0 ms.
- Steps: a session's chat spans in start order (a chat span inside another is the same
  call seen twice, by two instrumentations: only the outer one counts; one inside a tool
  span is part of that tool's time). Context: a chat
  whose input is at least the previous context (input plus output) keeps all of it and
  appends the rest; one under COMPACTION_SHARE of it is a compaction (a new prefix).
- Tools: a session's `execute_tool` spans (outermost ones) run after the last chat span
  started before them, with their recorded durations and names (mapped to kinds through
  `harness.workload.tool_names`); those whose spans overlap run in one parallel group.
  Tool spans before a session's first chat have no request to follow: they are counted
  in its metadata (`tools_before_first_chat`), not replayed.
- Time: a chat span's duration is the recorded LLM time; the tool phase runs from its end
  to its tools' last end; the gap from there to the next chat span (the agent's own code,
  a framework, a human: the spans do not say) is the next step's think time, so a replay
  keeps the recording's pace and the split keeps it out of LLM and tool time.

A chat whose input is shorter than the previous context plus output and not a compaction
contradicts its session: an error naming session and span unless `repair_tokens` is set
(repaired: it keeps `gen_ai.usage.cache_read.input_tokens` of the context, else its whole
input, as a prefix). Errors name the file, the line and the span's field path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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
    json_object,
    json_records,
    require,
)
from harness.workload.formats.options import TraceOptions
from harness.workload.model import Session, Step, ToolCall
from harness.workload.tool_names import tool_kind

COMPACTION_SHARE = 0.5
"""A chat whose input is under this share of the previous context starts a new prefix."""

CHAT_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
"""`gen_ai.operation.name` values of an inference call (a step's LLM request)."""

TOOL_OPERATION = "execute_tool"
AGENT_OPERATION = "invoke_agent"

_INPUT_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHED_KEY = "gen_ai.usage.cache_read.input_tokens"
_KEPT_ATTRIBUTES = frozenset(
    {
        "gen_ai.operation.name",
        *_INPUT_KEYS,
        *_OUTPUT_KEYS,
        _CACHED_KEY,
        "gen_ai.tool.name",
        "gen_ai.agent.name",
        "gen_ai.request.model",
    }
)
_NS_PER_MS = 1_000_000
_MAX_NS = 2**63 - 1


@dataclass(slots=True)
class _Span:
    """One span, checked: where it came from, its links, times and GenAI attributes."""

    line: int
    where: str
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    op: str | None
    attrs: dict[str, Any]
    children: list[_Span] = field(default_factory=list)


@dataclass(slots=True)
class _Owner:
    """A session being built: an agent span with chats of its own, or a trace's loose spans."""

    session_id: str
    agent: _Span | None
    parent: _Owner | None
    chats: list[_Span] = field(default_factory=list)
    tools: list[_Span] = field(default_factory=list)


def iter_otel(path: Path, options: TraceOptions | None = None) -> Iterator[Session]:
    """Read an OTLP/JSON trace export as Sessions: per trace in the order of its first span,
    each session followed by its sub-agents. The whole file is read first (a trace's spans
    may come in any order, across export lines)."""
    check_readable(path)
    return _sessions(path, options or TraceOptions())


def _read_spans(path: Path) -> dict[str, list[_Span]]:
    """Every span of the file, grouped by trace in the order traces first appear."""
    traces: dict[str, list[_Span]] = {}
    for line, value in json_records(path):
        record = json_object(path, line, value)
        resources = json_list(
            path, line, "resourceSpans", require(path, line, record, "resourceSpans")
        )
        for r, raw_resource in enumerate(resources):
            rwhere = f"resourceSpans.{r}"
            resource = json_mapping(path, line, rwhere, raw_resource)
            scopes = json_list(
                path, line, f"{rwhere}.scopeSpans", _or_empty(resource.get("scopeSpans"))
            )
            for s, raw_scope in enumerate(scopes):
                swhere = f"{rwhere}.scopeSpans.{s}"
                scope = json_mapping(path, line, swhere, raw_scope)
                spans = json_list(path, line, f"{swhere}.spans", _or_empty(scope.get("spans")))
                for k, raw_span in enumerate(spans):
                    span = _span(path, line, f"{swhere}.spans.{k}", raw_span)
                    traces.setdefault(span.trace_id, []).append(span)
    return traces


def _span(path: Path, line: int, where: str, raw: Any) -> _Span:
    """Check one span's ids, times and the GenAI attributes the loader reads."""
    record = json_mapping(path, line, where, raw)
    trace_id = _id(path, line, f"{where}.traceId", record.get("traceId"))
    span_id = _id(path, line, f"{where}.spanId", record.get("spanId"))
    parent = record.get("parentSpanId")
    parent_id = None if parent in (None, "") else _id(path, line, f"{where}.parentSpanId", parent)
    name = record.get("name") or ""
    if not isinstance(name, str):
        raise TraceFormatError(path, line, f"{where}.name", f"expected a string, got {brief(name)}")
    start = _nanos(path, line, f"{where}.startTimeUnixNano", record.get("startTimeUnixNano"))
    end = _nanos(path, line, f"{where}.endTimeUnixNano", record.get("endTimeUnixNano"))
    if end < start:
        raise TraceFormatError(
            path, line, f"{where}.endTimeUnixNano", "is earlier than startTimeUnixNano"
        )
    attrs: dict[str, Any] = {}
    items = json_list(path, line, f"{where}.attributes", _or_empty(record.get("attributes")))
    for i, item in enumerate(items):
        awhere = f"{where}.attributes.{i}"
        entry = json_mapping(path, line, awhere, item)
        key = entry.get("key")
        if not isinstance(key, str):
            raise TraceFormatError(
                path, line, f"{awhere}.key", f"expected a string, got {brief(key)}"
            )
        if key in _KEPT_ATTRIBUTES:
            attrs[key] = _value(path, line, f"{where}.attributes[{key}]", entry.get("value"))
    op = attrs.get("gen_ai.operation.name")
    return _Span(
        line=line,
        where=where,
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=name,
        start_ns=start,
        end_ns=end,
        op=op if isinstance(op, str) else None,
        attrs=attrs,
    )


def _id(path: Path, line: int, where: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise TraceFormatError(path, line, where, f"expected a non-empty string, got {brief(raw)}")
    return raw


def _nanos(path: Path, line: int, where: str, raw: Any) -> int:
    """A Unix time in ns: an OTLP/JSON int64, a decimal string (or a JSON integer)."""
    value: int | None = None
    if isinstance(raw, str) and raw.isdigit() and len(raw) <= 19:
        value = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        value = raw
    if value is None or value > _MAX_NS:
        raise TraceFormatError(
            path, line, where, f"expected Unix nanoseconds (a decimal string), got {brief(raw)}"
        )
    return value


def _value(path: Path, line: int, where: str, raw: Any) -> Any:
    """An AnyValue: a string, an integer (`intValue` as a decimal string or an integer), a
    double or a boolean; other kinds (arrays, maps, bytes) are kept as None."""
    value = json_mapping(path, line, where, raw)
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        number = value["intValue"]
        if isinstance(number, str) and number.lstrip("-").isdigit() and len(number) <= 20:
            return int(number)
        if isinstance(number, int) and not isinstance(number, bool):
            return number
        raise TraceFormatError(
            path, line, f"{where}.intValue", f"expected an integer, got {brief(number)}"
        )
    if "doubleValue" in value:
        return value["doubleValue"]
    if "boolValue" in value:
        return value["boolValue"]
    return None


def _sessions(path: Path, options: TraceOptions) -> Iterator[Session]:
    traces = _read_spans(path)
    if not traces:
        raise TraceFormatError(path, 1, "resourceSpans", "holds no span")
    yielded = 0
    for spans in traces.values():
        for session in _trace_sessions(path, spans, options):
            yielded += 1
            yield session
    if yielded == 0:
        raise TraceFormatError(
            path, 1, "gen_ai.operation.name", "no span is a chat span (gen_ai.operation.name chat)"
        )


def _trace_sessions(path: Path, spans: list[_Span], options: TraceOptions) -> Iterator[Session]:
    """One trace's sessions: agents with chats, the trace's loose spans, sub-agents."""
    by_id: dict[str, _Span] = {}
    for span in spans:
        if span.span_id in by_id:
            other = by_id[span.span_id]
            raise TraceFormatError(
                path,
                span.line,
                f"{span.where}.spanId",
                f"span {span.span_id!r} of trace {span.trace_id!r} was already read "
                f"(line {other.line}, {other.where})",
            )
        by_id[span.span_id] = span
    roots: list[_Span] = []
    for span in spans:
        parent = by_id.get(span.parent_id) if span.parent_id is not None else None
        if parent is None:  # a root, or its parent is not in the export
            roots.append(span)
        else:
            parent.children.append(span)
    # Agents with chat spans of their own (outermost chats, nearest agent).
    agents_with_chats: set[str] = set()
    _mark(roots, None, agents_with_chats)
    trace_id = spans[0].trace_id
    loose = _Owner(session_id=trace_id, agent=None, parent=None)
    owners: list[_Owner] = [loose]
    seen: set[str] = set()
    stack: list[tuple[_Span, _Owner, bool]] = [
        (root, loose, False) for root in sorted(roots, key=_order, reverse=True)
    ]
    while stack:
        span, owner, in_call = stack.pop()
        if span.span_id in seen:
            continue  # a cycle of parent links
        seen.add(span.span_id)
        if span.op == AGENT_OPERATION and span.span_id in agents_with_chats:
            enclosing = owner if owner.agent is not None else None
            sid = f"{trace_id}/{span.span_id}"
            owner = _Owner(session_id=sid, agent=span, parent=enclosing)
            owners.append(owner)
            in_call = False
        elif not in_call and span.op in CHAT_OPERATIONS:
            owner.chats.append(span)
            in_call = True
        elif not in_call and span.op == TOOL_OPERATION:
            owner.tools.append(span)
            in_call = True
        for child in sorted(span.children, key=_order, reverse=True):
            stack.append((child, owner, in_call))
    built = [o for o in owners if o.chats]
    if not built:
        return
    origin_ns = min(o.chats[0].start_ns for o in built if o.chats)
    for o in built:
        o.chats.sort(key=_order)
    starts: dict[str, int] = {o.session_id: min(c.start_ns for c in o.chats) for o in built}
    sessions: dict[str, Session] = {}
    order: list[str] = []
    for o in sorted(built, key=lambda o: (starts[o.session_id], o.session_id)):
        session = _session(path, o, starts, origin_ns, options)
        sessions[o.session_id] = session
        order.append(o.session_id)
    # Each top-level session, then its sub-agents depth first, in start order.
    children: dict[str | None, list[str]] = {}
    for sid in order:
        children.setdefault(sessions[sid].parent_id, []).append(sid)
    pending = list(reversed(children.get(None, [])))
    while pending:
        sid = pending.pop()
        yield sessions[sid]
        pending.extend(reversed(children.get(sid, [])))


def _mark(roots: list[_Span], agent: str | None, marked: set[str]) -> None:
    """Add to `marked` each agent span that has a chat span of its own, one not inside
    another chat or tool span (as `_trace_sessions` assigns them)."""
    stack: list[tuple[_Span, str | None, bool]] = [(root, agent, False) for root in roots]
    seen: set[str] = set()
    while stack:
        span, nearest, in_call = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        if span.op == AGENT_OPERATION:
            nearest, in_call = span.span_id, False
        elif span.op in CHAT_OPERATIONS and not in_call:
            if nearest is not None:
                marked.add(nearest)
            in_call = True
        elif span.op == TOOL_OPERATION:
            in_call = True
        stack.extend((child, nearest, in_call) for child in span.children)


def _order(span: _Span) -> tuple[int, int, str]:
    return (span.start_ns, span.end_ns, span.span_id)


def _ms(ns: int) -> float:
    return ns / _NS_PER_MS


def _tokens(path: Path, span: _Span, keys: tuple[str, ...]) -> int:
    for key in keys:
        if key in span.attrs:
            return _count(path, span, key)
    raise TraceFormatError(
        path, span.line, f"{span.where}.attributes[{keys[0]}]", "missing on a chat span"
    )


def _count(path: Path, span: _Span, key: str) -> int:
    raw = span.attrs[key]
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    return json_count(path, span.line, f"{span.where}.attributes[{key}]", raw)


def _session(
    path: Path, owner: _Owner, starts: dict[str, int], origin_ns: int, options: TraceOptions
) -> Session:
    """Build one session's steps from its chat spans and the tool spans between them."""
    chats = owner.chats
    first = chats[0]
    tools_after: list[list[_Span]] = [[] for _ in chats]
    early = 0
    k = 0
    for tool in sorted(owner.tools, key=_order):
        while k + 1 < len(chats) and chats[k + 1].start_ns <= tool.start_ns:
            k += 1
        if tool.start_ns < chats[0].start_ns:
            early += 1
        else:
            tools_after[k].append(tool)
    steps: list[Step] = []
    previous: tuple[int, int] | None = None
    last_end_ns = first.start_ns
    for i, chat in enumerate(chats):
        input_tokens = _tokens(path, chat, _INPUT_KEYS)
        output_tokens = _tokens(path, chat, _OUTPUT_KEYS)
        if previous is None:
            new, kept = input_tokens, None
        else:
            new, kept = _context(path, owner, i, chat, previous, input_tokens, options)
        tools = tools_after[i]
        tool_end = max((t.end_ns for t in tools), default=None)
        steps.append(
            Step(
                new_input_tokens=new,
                output_tokens=output_tokens,
                tools=_calls(tools, options),
                think_ms=0.0 if i == 0 else max(0.0, _ms(chat.start_ns - last_end_ns)),
                kept_prefix_tokens=kept,
                recorded_llm_ms=_ms(chat.end_ns - chat.start_ns),
                recorded_tools_ms=(
                    None if tool_end is None else max(0.0, _ms(tool_end - chat.end_ns))
                ),
            )
        )
        last_end_ns = max(chat.end_ns, tool_end or 0)
        previous = (input_tokens, output_tokens)
    metadata = {"format": "otel", "trace_id": first.trace_id}
    model = first.attrs.get("gen_ai.request.model")
    if isinstance(model, str):
        metadata["model"] = model
    if owner.agent is not None:
        agent_name = owner.agent.attrs.get("gen_ai.agent.name")
        if isinstance(agent_name, str):
            metadata["agent_name"] = agent_name
    if early:
        metadata["tools_before_first_chat"] = str(early)
    start_ms = _ms(starts[owner.session_id] - origin_ns)
    parent_id = parent_offset = parent_step = None
    if owner.parent is not None:
        parent_start = starts[owner.parent.session_id]
        parent_id = owner.parent.session_id
        parent_offset = max(0.0, _ms(starts[owner.session_id] - parent_start))
        before = [j for j, c in enumerate(owner.parent.chats) if c.start_ns <= first.start_ns]
        parent_step = before[-1] if before else None
    session = Session(
        session_id=owner.session_id,
        start_ms=start_ms,
        steps=tuple(steps),
        source_line=first.line,
        metadata=metadata,
        parent_id=parent_id,
        parent_offset_ms=parent_offset,
        parent_step=parent_step,
    )
    check_prompts(path, first.line, session, f"{first.where}.attributes[{_INPUT_KEYS[0]}]")
    return session


def _context(
    path: Path,
    owner: _Owner,
    index: int,
    chat: _Span,
    previous: tuple[int, int],
    input_tokens: int,
    options: TraceOptions,
) -> tuple[int, int | None]:
    """(new input tokens, kept prefix) of a later chat: the agent loop where its input holds
    the whole previous context, a new prefix after a compaction, else a contradiction."""
    context = previous[0] + previous[1]
    if input_tokens >= context:
        return input_tokens - context, None
    if input_tokens < COMPACTION_SHARE * context:
        return input_tokens, 0
    if not options.repair_tokens:
        raise TraceFormatError(
            path,
            chat.line,
            f"{chat.where}.attributes[{_INPUT_KEYS[0]}]",
            f"session {owner.session_id!r} chat {index}: input of {input_tokens:,} tokens is "
            f"shorter than the previous chat's input plus output ({context:,}) and is no "
            "compaction (set source.repair_tokens, or --repair-tokens, to repair it)",
        )
    kept = _count(path, chat, _CACHED_KEY) if _CACHED_KEY in chat.attrs else input_tokens
    kept = max(0, min(kept, input_tokens))
    return input_tokens - kept, kept


def _calls(tools: list[_Span], options: TraceOptions) -> tuple[ToolCall, ...]:
    """A step's tool spans as calls: spans that overlap share a parallel group."""
    groups: list[int] = []
    group = -1
    latest = -1
    for tool in tools:
        if latest > tool.start_ns:
            latest = max(latest, tool.end_ns)
        else:
            group += 1
            latest = tool.end_ns
        groups.append(group)
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    calls: list[ToolCall] = []
    for tool, g in zip(tools, groups, strict=True):
        name = _tool_name(tool)
        calls.append(
            ToolCall(
                kind=tool_kind(name, options.tool_map),
                duration_ms=_ms(tool.end_ns - tool.start_ns),
                parallel_group=g if sizes[g] > 1 else None,
                name=name,
            )
        )
    return tuple(calls)


def _tool_name(tool: _Span) -> str:
    """`gen_ai.tool.name`, else the span name after `execute_tool `, else the span name."""
    name = tool.attrs.get("gen_ai.tool.name")
    if isinstance(name, str) and name:
        return name
    prefix = f"{TOOL_OPERATION} "
    if tool.name.startswith(prefix) and len(tool.name) > len(prefix):
        return tool.name[len(prefix) :]
    return tool.name or "(no name)"


def _or_empty(raw: Any) -> Any:
    """A list field that may be absent or null (protobuf's JSON leaves empty ones out)."""
    return [] if raw is None else raw
