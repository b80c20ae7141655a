"""Mooncake (Kimi) JSON-lines traces: one request per line with its 512-token prefix blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from harness.errors import TraceFormatError
from harness.workload.formats._batches import ColumnarTrace, numbers
from harness.workload.formats._common import (
    brief,
    check_readable,
    json_count,
    json_lines,
    json_number,
    json_object,
    out_of_order,
    require,
)
from harness.workload.formats._typed import TypedChunk, TypedJsonLines
from harness.workload.limits import MAX_HASH_ID, MAX_TOKENS, MAX_TRACE_TIME_MS
from harness.workload.model import DEFAULT_BLOCK_TOKENS, Session, Step
from harness.workload.stats import RequestBatch, session_batches

BLOCK_TOKENS = DEFAULT_BLOCK_TOKENS
"""Tokens per `hash_ids` block in Mooncake traces (and the native sessions format's default)."""

_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),
        ("input_length", pa.int64()),
        ("output_length", pa.int64()),
        ("hash_ids", pa.list_(pa.int64())),
    ]
)


def blocks_for(tokens: int, block_tokens: int = BLOCK_TOKENS) -> int:
    """Number of `block_tokens`-token blocks (512 by default) that cover `tokens` tokens."""
    return -(-tokens // block_tokens)


def iter_mooncake(path: Path) -> ColumnarTrace:
    """Stream a Mooncake trace: each line becomes a one-step Session `mc-<line>`.

    Fields: `timestamp` (ms from the trace's start), `input_length`, `output_length`,
    `hash_ids` (one id per 512-token block, so exactly ceil(input_length / 512) of them,
    each a non-negative integer). Numbers must be JSON numbers (a string is an error) within
    the bounds of `harness.workload.limits`; timestamps must not go backwards (the published
    traces are sorted by time). Unknown keys are ignored. `workload_stats` takes its sums
    from pyarrow's typed reading of the file, without a Session per line.
    """
    check_readable(path)
    return ColumnarTrace(lambda: _sessions(path), lambda: _typed_requests(path))


def _sessions(
    path: Path, first_line: int = 1, previous: tuple[int, float] | None = None
) -> Iterator[Session]:
    """The Sessions from `first_line` on (`previous`: the line and time of the record before)."""
    for line, value in json_lines(path, first_line):
        session = _session(path, line, json_object(path, line, value))
        if previous is not None and session.start_ms < previous[1]:
            raise out_of_order(path, line, "timestamp", session.start_ms, previous, "Mooncake")
        previous = (line, session.start_ms)
        yield session


def _typed_requests(path: Path) -> Iterator[RequestBatch]:
    """The requests in columns from pyarrow's typed reading; from the first chunk it does
    not vouch for, or that breaks a rule, the Sessions are read on (and the line at fault
    named)."""
    reader = TypedJsonLines(path, _SCHEMA)
    last: float | None = None
    chunks = reader.chunks()
    for chunk in chunks:
        checked = _typed_rows(chunk, last) if isinstance(chunk, TypedChunk) else None
        if checked is None:
            chunks.close()
            line = reader.line_at(chunk.offset)  # the chunks before hold no blank line
            previous = None if last is None else (line - 1, last)
            yield from session_batches(_sessions(path, line, previous))
            return
        times, inputs, outputs = checked
        last = float(times[-1])
        yield RequestBatch(len(times), inputs, outputs, times + 0.0)  # -0.0 starts at 0.0


def _typed_rows(
    chunk: TypedChunk, last: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A chunk's times and token counts, or None where a record may break a rule."""
    times = numbers(chunk.columns["timestamp"])
    inputs = numbers(chunk.columns["input_length"])
    outputs = numbers(chunk.columns["output_length"])
    if not np.isfinite(times).all() or float(times.min()) < 0:
        return None
    if float(times.max()) > MAX_TRACE_TIME_MS:
        return None
    if (last is not None and float(times[0]) < last) or (times[1:] < times[:-1]).any():
        return None
    for counts in (inputs, outputs):
        if int(counts.min()) < 0 or int(counts.max()) > MAX_TOKENS:
            return None
    hash_ids = chunk.columns["hash_ids"]
    assert isinstance(hash_ids, pa.ListArray)
    if (np.diff(numbers(hash_ids.offsets)) != -(-inputs // BLOCK_TOKENS)).any():
        return None
    ids = numbers(hash_ids.flatten())
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) > MAX_HASH_ID):
        return None
    return times, inputs, outputs


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
