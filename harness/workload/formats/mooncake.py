"""Mooncake (Kimi) JSON-lines traces: one request per line with its 512-token prefix blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import TraceFormatError
from harness.workload.formats._common import (
    check_readable,
    json_lines,
    json_object,
    nonneg_float,
    nonneg_int,
    require,
)
from harness.workload.model import Session, Step

BLOCK_TOKENS = 512
"""Tokens per `hash_ids` block in Mooncake traces (and the native sessions format)."""


def blocks_for(tokens: int) -> int:
    """Number of 512-token blocks that cover a prompt of `tokens` tokens."""
    return -(-tokens // BLOCK_TOKENS)


def iter_mooncake(path: Path) -> Iterator[Session]:
    """Stream a Mooncake trace: each line becomes a one-step Session `mc-<line>`.

    Fields: `timestamp` (ms from the trace's start), `input_length`, `output_length`,
    `hash_ids` (one id per 512-token block, so exactly ceil(input_length / 512) of them).
    Unknown keys are ignored.
    """
    check_readable(path)
    return _sessions(path)


def _sessions(path: Path) -> Iterator[Session]:
    """The generator behind `iter_mooncake`, run once the file is known to exist."""
    for line, value in json_lines(path):
        yield _session(path, line, json_object(path, line, value))


def _session(path: Path, line: int, record: dict[str, Any]) -> Session:
    """Check one record's fields and build its one-step Session."""
    timestamp = nonneg_float(path, line, "timestamp", require(path, line, record, "timestamp"))
    input_length = nonneg_int(
        path, line, "input_length", require(path, line, record, "input_length")
    )
    output_length = nonneg_int(
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
    """Check that `hash_ids` is a list of integers."""
    if isinstance(raw, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in raw
    ):
        return tuple(raw)
    raise TraceFormatError(path, line, "hash_ids", f"expected a list of integers, got {raw!r:.60}")
