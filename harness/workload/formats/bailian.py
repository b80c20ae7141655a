"""Alibaba Bailian (Qwen) usage traces, `qwen-bailian-usagetraces-anon`: one request a JSON
line, sorted by time, the turns of a conversation linked by `parent_chat_id`.

Per line: `chat_id`, `parent_chat_id` (-1: a conversation's first turn), `timestamp` (s
from the trace's start), `input_length` (the whole request, history included),
`output_length`, `type` (the request's kind: text, image...; kept as metadata), `turn` and
`hash_ids` (16-token blocks of the prompt). Other keys are ignored. The session
semantics, from the recording:

- Sessions: a conversation is the chain of turns reached through `parent_chat_id`, in time
  order, named `bl-<root chat_id>`; it starts at its first turn's `timestamp` and each
  later turn is due at its own (`Step.offset_ms`). A turn whose parent is not in the file
  (the trace window cut it off) or was already emitted starts a new session of its own.
- Context: a turn at least the previous turn's prompt plus output keeps all of it and
  appends the rest; one under COMPACTION_SHARE of it starts a new prefix; one between (a
  branch: a second answer to the same parent) keeps the whole blocks its `hash_ids` share
  with the previous prompt.
- Streaming: a conversation idle for more than SESSION_GAP_S of trace time is emitted, so
  only recently active ones are held; sessions come out in the order of their first turn.

A turn shorter than its parent's prompt plus output (and no compaction) contradicts its
conversation, an error naming session and turn unless `repair_tokens` is set (it then
keeps the prefix its `hash_ids` share). Timestamps going backwards, a `chat_id` seen twice
and more `hash_ids` than ceil(input_length / 16) are errors; fewer are allowed (the rest of
the prompt is fresh tokens).
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
    json_lines,
    json_number,
    json_object,
    out_of_order,
    require,
)
from harness.workload.formats.options import TraceOptions
from harness.workload.limits import MAX_HASH_ID, MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step

BLOCK_TOKENS = 16
"""Tokens per `hash_ids` block in the Bailian traces (`..._blksz_16.jsonl`)."""

COMPACTION_SHARE = 0.5
"""A turn whose prompt is under this share of the previous context starts a new prefix."""

SESSION_GAP_S = 3600.0
"""A conversation idle this long (trace time) is complete and emitted."""

_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Turn:
    line: int
    chat_id: int
    parent: int
    time_s: float
    input_tokens: int
    output_tokens: int
    kind: str | None
    turn: int
    hash_ids: tuple[int, ...] | None


@dataclass
class _Open:
    """A conversation still taking turns."""

    root: int
    turns: list[_Turn] = field(default_factory=list)


def iter_bailian(path: Path, options: TraceOptions | None = None) -> Iterator[Session]:
    """Stream a Bailian usage trace as Sessions, one per conversation."""
    check_readable(path)
    return _sessions(path, options or TraceOptions())


def _sessions(path: Path, options: TraceOptions) -> Iterator[Session]:
    """Chain turns to their conversations; emit those idle past SESSION_GAP_S."""
    open_: dict[int, _Open] = {}  # by root chat_id, in order of first turn
    owner: dict[int, int] = {}  # chat_id -> root of its open conversation
    seen: dict[int, int] = {}  # chat_id -> line
    last: _Turn | None = None
    for line, value in json_lines(path):
        turn = _turn(path, line, json_object(path, line, value))
        if last is not None and turn.time_s < last.time_s:
            raise out_of_order(
                path, line, "timestamp", turn.time_s, (last.line, last.time_s), "Bailian"
            )
        if turn.chat_id in seen:
            raise TraceFormatError(
                path,
                line,
                "chat_id",
                f"{turn.chat_id} was already read on line {seen[turn.chat_id]}",
            )
        seen[turn.chat_id] = line
        last = turn
        while open_:
            first = next(iter(open_.values()))
            if turn.time_s - first.turns[-1].time_s <= SESSION_GAP_S:
                break
            del open_[first.root]
            for t in first.turns:
                owner.pop(t.chat_id, None)
            yield _session(path, first, options)
        root = owner.get(turn.parent) if turn.parent >= 0 else None
        if root is None:
            root = turn.chat_id
            open_[root] = _Open(root)
        open_[root].turns.append(turn)
        owner[turn.chat_id] = root
    for conversation in open_.values():
        yield _session(path, conversation, options)


def _id(path: Path, line: int, key: str, raw: Any, least: int) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool) and least <= raw <= _MAX_ID:
        return raw
    raise TraceFormatError(path, line, key, f"expected an integer from {least}, got {brief(raw)}")


def _turn(path: Path, line: int, record: dict[str, Any]) -> _Turn:
    """Check one line's fields."""
    chat_id = _id(path, line, "chat_id", require(path, line, record, "chat_id"), 0)
    parent = _id(path, line, "parent_chat_id", require(path, line, record, "parent_chat_id"), -1)
    if parent == chat_id:
        raise TraceFormatError(path, line, "parent_chat_id", f"{parent} is the chat's own id")
    time_s = json_number(
        path, line, "timestamp", require(path, line, record, "timestamp"), MAX_TRACE_TIME_MS / 1e3
    )
    tokens = json_count(path, line, "input_length", require(path, line, record, "input_length"))
    output = json_count(path, line, "output_length", require(path, line, record, "output_length"))
    turn = json_count(path, line, "turn", require(path, line, record, "turn"))
    kind = record.get("type")
    if kind is not None and not isinstance(kind, str):
        raise TraceFormatError(path, line, "type", f"expected a string, got {brief(kind)}")
    return _Turn(
        line=line,
        chat_id=chat_id,
        parent=parent,
        time_s=time_s,
        input_tokens=tokens,
        output_tokens=output,
        kind=kind,
        turn=turn,
        hash_ids=_hash_ids(path, line, require(path, line, record, "hash_ids"), tokens),
    )


def _hash_ids(path: Path, line: int, raw: Any, tokens: int) -> tuple[int, ...] | None:
    """At most ceil(input_length / 16) block ids; None where the list is empty."""
    if not isinstance(raw, list):
        raise TraceFormatError(
            path, line, "hash_ids", f"expected a list of integers, got {brief(raw)}"
        )
    for i, item in enumerate(raw):
        json_count(path, line, f"hash_ids.{i}", item, MAX_HASH_ID)
    most = -(-tokens // BLOCK_TOKENS)
    if len(raw) > most:
        raise TraceFormatError(
            path,
            line,
            "hash_ids",
            f"has {len(raw)} block ids but input_length {tokens} has only "
            f"ceil({tokens}/{BLOCK_TOKENS}) = {most} blocks",
        )
    return tuple(raw) or None


def _session(path: Path, conversation: _Open, options: TraceOptions) -> Session:
    """One conversation's steps, each due at its recorded time."""
    turns = conversation.turns
    by_id = {t.chat_id: t for t in turns}
    first = turns[0]
    session_id = f"bl-{conversation.root}"
    steps: list[Step] = []
    previous: _Turn | None = None
    for k, turn in enumerate(turns):
        if previous is None:
            new, kept = turn.input_tokens, None
        else:
            parent = by_id[turn.parent]
            _check(path, session_id, k, parent, turn, options)
            new, kept = _context(previous, turn)
        steps.append(
            Step(
                new_input_tokens=new,
                output_tokens=turn.output_tokens,
                hash_ids=turn.hash_ids,
                offset_ms=(turn.time_s - first.time_s) * 1000.0,
                kept_prefix_tokens=kept,
                hash_block_tokens=BLOCK_TOKENS,
            )
        )
        previous = turn
    metadata = {"format": "bailian"}
    if first.kind is not None:
        metadata["type"] = first.kind
    if first.parent >= 0:
        metadata["parent_chat_id"] = str(first.parent)  # a parent outside the file
    session = Session(
        session_id=session_id,
        start_ms=first.time_s * 1000.0,
        steps=tuple(steps),
        source_line=first.line,
        metadata=metadata,
    )
    check_prompts(path, first.line, session, "input_length")
    return session


def _check(
    path: Path, session_id: str, k: int, parent: _Turn, turn: _Turn, options: TraceOptions
) -> None:
    """A turn must hold its parent's prompt and output, or be a compaction."""
    context = parent.input_tokens + parent.output_tokens
    if options.repair_tokens or turn.input_tokens >= context:
        return
    if turn.input_tokens < COMPACTION_SHARE * context:
        return
    raise TraceFormatError(
        path,
        turn.line,
        "input_length",
        f"session {session_id!r} turn {k} (chat {turn.chat_id}): {turn.input_tokens:,} tokens, "
        f"less than its parent chat {parent.chat_id}'s prompt and output of {context:,} "
        "(set source.repair_tokens, or --repair-tokens, to repair it)",
    )


def _context(previous: _Turn, turn: _Turn) -> tuple[int, int | None]:
    """(new input tokens, kept prefix) of a later turn after `previous`."""
    context = previous.input_tokens + previous.output_tokens
    if turn.input_tokens >= context:
        return turn.input_tokens - context, None
    if turn.input_tokens < COMPACTION_SHARE * context:
        return turn.input_tokens, 0
    shared = 0
    for a, b in zip(previous.hash_ids or (), turn.hash_ids or (), strict=False):
        if a != b:
            break
        shared += 1
    kept = max(0, min(shared * BLOCK_TOKENS, previous.input_tokens, turn.input_tokens))
    return turn.input_tokens - kept, kept
