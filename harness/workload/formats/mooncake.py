"""Mooncake (Kimi) JSON-lines traces: one request per line with its 512-token prefix blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import TraceFormatError
from harness.workload.formats._common import (
    brief,
    check_readable,
    json_count,
    json_lines,
    json_number,
    json_object,
    require,
)
from harness.workload.limits import MAX_HASH_ID, MAX_TRACE_TIME_MS
from harness.workload.model import DEFAULT_BLOCK_TOKENS, Session, Step

BLOCK_TOKENS = DEFAULT_BLOCK_TOKENS
"""Tokens per `hash_ids` block in Mooncake traces (and the native sessions format's default)."""


def blocks_for(tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Number of `block_tokens`-token blocks (512 by default) that cover `tokens` tokens."""
    return -(-tokens // block_tokens)


def iter_mooncake(path: Path) -> Iterator[Session]:
    """Stream a Mooncake trace: each line becomes a one-step Session `mc-<line>`.

    Fields: `timestamp` (ms from the trace's start), `input_length`, `output_length`,
    `hash_ids` (one id per 512-token block, so exactly ceil(input_length / 512) of them,
    each a non-negative integer). Numbers must be JSON numbers (a string is an error) within
    the bounds of `harness.workload.limits`; timestamps must not go backwards (the published
    traces are sorted by time). Unknown keys are ignored.
    """
    check_readable(path)
    return _sessions(path)


def _sessions(path: Path) -> Iterator[Session]:
    """The generator behind `iter_mooncake`, run once the file is known to exist."""
    previous: Session | None = None
    for line, value in json_lines(path):
        session = _session(path, line, json_object(path, line, value))
        if previous is not None and session.start_ms < previous.start_ms:
            raise TraceFormatError(
                path,
                line,
                "timestamp",
                f"{session.start_ms:g} is earlier than line {previous.source_line}'s "
                f"{previous.start_ms:g}: Mooncake traces are sorted by time",
            )
        previous = session
        yield session


def _session(path: Path, line: int, record: dict[str, Any]) -> Session:
    """Check one record's fields and build its one-step Session."""
    timestamp = json_number(
        path, line, "timestamp", require(path, line, record, "timestamp"), MAX_TRACE_TIME_MS
    )
    input_length = json_count(
        path, line, "input_length", require(path, line, record, "input_length")
    )
    output_length = json_count(
        path, line, "output_length", require(path, line, record, "output_length")
    )
    hash_ids = _hash_ids(path, line, require(path, line, record, "hash_ids"))
    if len(hash_ids) != blocks_for(input_length):
        raise TraceFormatError(
            path,
            line,
            "hash_ids",
            f"has {len(hash_ids)} block ids but input_length {input_length} needs "
            f"ceil({input_length}/{BLOCK_TOKENS}) = {blocks_for(input_length)}",
        )
    step = Step(new_input_tokens=input_length, output_tokens=output_length, hash_ids=hash_ids)
    return Session(session_id=f"mc-{line}", start_ms=timestamp, steps=(step,), source_line=line)


def _hash_ids(path: Path, line: int, raw: Any) -> tuple[int, ...]:
    """Check that `hash_ids` is a list of integers from 0 to MAX_HASH_ID."""
    if not isinstance(raw, list):
        raise TraceFormatError(
            path, line, "hash_ids", f"expected a list of integers, got {brief(raw)}"
        )
    for i, item in enumerate(raw):
        json_count(path, line, f"hash_ids.{i}", item, MAX_HASH_ID)
    return tuple(raw)
