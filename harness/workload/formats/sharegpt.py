"""ShareGPT JSON: a list of conversations, each a multi-turn Session counted with a tokenizer.

The file is one JSON list, so it is read into memory as text (ShareGPT dumps are at most
a few hundred MB) and then decoded one conversation at a time, which keeps line numbers
for error messages and yields Sessions lazily.

Turn rules: each user message (`human`, `user`) answered by an assistant message (`gpt`,
`assistant`, `chatgpt`, `bing`, `bard`) is a step, with `new_input_tokens` = the tokens of
the user message and `output_tokens` = the tokens of the answer. Messages that are not
part of such a pair (a `system` message, a leading assistant greeting, a second user or
assistant message in a row) are context: their tokens join the next step's new input.
A trailing unanswered user message is dropped; a conversation with no answered message
yields no Session. Token counts are of the message text only, without a chat template.
Session ids are the records' `id` (`sg-<n>` where absent; `<id>#<k>` for repeats).
ShareGPT has no timestamps: every session has `start_ms` 0, so give it an arrival pattern.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from harness.config_files import lone_surrogate
from harness.errors import ConfigError, TraceFormatError
from harness.workload.formats._common import (
    TOO_LONG,
    brief,
    check_prompts,
    check_readable,
    may_hold_surrogates,
    surrogate_error,
)
from harness.workload.model import Session, Step

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bing", "bard"})
CONTEXT_ROLES = frozenset({"system"})

_WS = re.compile(r"[ \t\n\r]*")


class TokenCounter(Protocol):
    """Counts the tokens of a text with the served model's tokenizer."""

    def count(self, text: str) -> int:
        """Number of tokens in `text`."""
        ...


def iter_sharegpt(path: Path, token_counter: TokenCounter | None) -> Iterator[Session]:
    """Load a ShareGPT JSON file and yield one multi-turn Session per conversation."""
    if token_counter is None:
        raise ConfigError(
            f"{path}: ShareGPT traces hold text, not token counts: pass --tokenizer "
            "so that the harness can count tokens"
        )
    check_readable(path)
    return _sessions(path, token_counter)


def _sessions(path: Path, counter: TokenCounter) -> Iterator[Session]:
    """Read the file, decode conversations lazily and make repeated ids unique."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise TraceFormatError(path, 1, None, f"not UTF-8 text: {err}") from None
    seen: dict[str, int] = {}
    surrogates = may_hold_surrogates(text)
    for index, (line, record) in enumerate(_records(path, text)):
        if surrogates:
            where = lone_surrogate(record)
            if where is not None:
                raise surrogate_error(path, line, where)
        session = _session(path, line, index, record, counter)
        if session is None:
            continue
        repeats = seen.get(session.session_id, 0)
        seen[session.session_id] = repeats + 1
        if repeats:
            session = Session(
                session_id=f"{session.session_id}#{repeats}",
                start_ms=session.start_ms,
                steps=session.steps,
                source_line=session.source_line,
            )
        yield session


def _records(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Decode the list's elements one by one, yielding each with its 1-based start line."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    line = 1

    def where(at: int) -> int:
        """1-based line of a position, for error messages."""
        return text.count("\n", 0, at) + 1

    if pos >= len(text) or text[pos] != "[":
        raise TraceFormatError(path, where(pos), None, "expected a JSON list of conversations")
    pos = _skip(text, pos + 1)
    last = 0
    if pos < len(text) and text[pos] == "]":
        pos = _skip(text, pos + 1)
    else:
        while True:
            line += text.count("\n", last, pos)
            last = pos
            try:
                record, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as err:
                raise TraceFormatError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
            except RecursionError:
                raise TraceFormatError(
                    path, line, None, "invalid JSON: nested too deeply"
                ) from None
            except ValueError:  # int() refuses integers of more than 4,300 digits
                raise TraceFormatError(path, line, None, f"invalid JSON: {TOO_LONG}") from None
            yield line, record
            pos = _skip(text, end)
            if pos < len(text) and text[pos] == ",":
                pos = _skip(text, pos + 1)
                continue
            if pos < len(text) and text[pos] == "]":
                pos = _skip(text, pos + 1)
                break
            raise TraceFormatError(path, where(pos), None, "invalid JSON: expected ',' or ']'")
    if pos < len(text):
        raise TraceFormatError(path, where(pos), None, "invalid JSON: extra data after the list")


def _skip(text: str, pos: int) -> int:
    """Position of the next non-whitespace character."""
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _session(
    path: Path, line: int, index: int, record: Any, counter: TokenCounter
) -> Session | None:
    """Turn one conversation record into a Session (None when it has no answered turn)."""
    if not isinstance(record, dict):
        raise TraceFormatError(path, line, None, "expected a conversation object")
    messages = record.get("conversations")
    if not isinstance(messages, list):
        raise TraceFormatError(path, line, "conversations", "expected a list of messages")
    steps: list[Step] = []
    pending = 0
    awaiting = False
    for i, message in enumerate(messages):
        role, value = _message(path, line, i, message)
        tokens = counter.count(value)
        if role in ASSISTANT_ROLES and awaiting:
            steps.append(Step(new_input_tokens=pending, output_tokens=tokens))
            pending = 0
            awaiting = False
        else:
            pending += tokens
            awaiting = awaiting or role in USER_ROLES
    if not steps:
        return None
    raw_id = record.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, str | int)):
        raise TraceFormatError(
            path, line, "id", f"expected a string or integer, got {brief(raw_id)}"
        )
    session_id = str(raw_id) if raw_id is not None and raw_id != "" else f"sg-{index}"
    session = Session(session_id=session_id, start_ms=0.0, steps=tuple(steps), source_line=line)
    check_prompts(path, line, session, "conversations")
    return session


def _message(path: Path, line: int, i: int, message: Any) -> tuple[str, str]:
    """Check one message's `from` role and `value` text."""
    if not isinstance(message, dict):
        raise TraceFormatError(path, line, f"conversations.{i}", "expected a message object")
    role = message.get("from")
    known = USER_ROLES | ASSISTANT_ROLES | CONTEXT_ROLES
    if not isinstance(role, str) or role not in known:
        raise TraceFormatError(
            path, line, f"conversations.{i}.from", f"expected one of {sorted(known)}, got {role!r}"
        )
    value = message.get("value")
    if not isinstance(value, str):
        raise TraceFormatError(
            path, line, f"conversations.{i}.value", f"expected a string, got {brief(value)}"
        )
    return role, value
