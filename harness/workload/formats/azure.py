"""Azure LLM inference traces (2023 and 2024): CSV `TIMESTAMP,ContextTokens,GeneratedTokens`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

from harness.errors import TraceFormatError
from harness.workload.formats._common import CsvRows, check_readable, csv_count
from harness.workload.limits import MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step

TIMESTAMP = "TIMESTAMP"
CONTEXT = "ContextTokens"
GENERATED = "GeneratedTokens"

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000
_SECONDS_PER_DAY = 86_400
_MS_PER_DAY = _SECONDS_PER_DAY * 1000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp_ns(text: str) -> int:
    """Parse `2023-11-16 18:15:46.6805900` or `2024-05-10 00:00:00.009930+00:00` to integer
    nanoseconds since the epoch, exactly (up to 9 fractional digits; naive times are UTC).

    Raises ValueError for anything else.
    """
    match = _TIMESTAMP_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a timestamp like 2023-11-16 18:15:46.6805900")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    date = dt.date(year, month, day)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time of day out of range")
    seconds = (date.toordinal() - _EPOCH_ORDINAL) * _SECONDS_PER_DAY
    seconds += hour * 3600 + minute * 60 + second - _offset_s(match.group(8))
    fraction = (match.group(7) or "").ljust(9, "0")
    return seconds * _NS_PER_S + int(fraction)


def _offset_s(text: str | None) -> int:
    """Seconds east of UTC for `Z`, `+00:00` or `-0530`; none means UTC. Hours above 23 or
    minutes above 59 (`+99:99`) raise ValueError."""
    if text is None or text == "Z":
        return 0
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(f"UTC offset {text} out of range")
    offset = hours * 3600 + minutes * 60
    return offset if text[0] == "+" else -offset


def iter_azure(path: Path) -> Iterator[Session]:
    """Stream an Azure trace: each row is a one-step Session `az-<line>`.

    `start_ms` counts from the first row's timestamp, computed from integer nanoseconds so
    the 7-digit fractions of the 2023 traces carry no float drift. A row earlier than the
    row before it is an error (the published traces are sorted), and so is one more than
    MAX_TRACE_TIME_MS after the first.
    """
    check_readable(path)
    return _sessions(path)


def _sessions(path: Path) -> Iterator[Session]:
    """The generator behind `iter_azure`, run once the file is known to exist."""
    csv_rows = CsvRows(path, (TIMESTAMP, CONTEXT, GENERATED))
    first_ns: int | None = None
    last_ns = 0
    last_line = 0
    for line, row in csv_rows.rows():
        cols = csv_rows.columns
        raw_time = row[cols[TIMESTAMP]]
        try:
            time_ns = parse_timestamp_ns(raw_time)
        except ValueError as err:
            raise TraceFormatError(path, line, TIMESTAMP, f"{err}, got {raw_time!r}") from None
        if first_ns is None:
            first_ns = time_ns
        elif time_ns < last_ns:
            raise TraceFormatError(
                path,
                line,
                TIMESTAMP,
                f"{raw_time!r} is earlier than line {last_line}'s timestamp "
                "(Azure traces are sorted by time)",
            )
        start_ms = (time_ns - first_ns) / _NS_PER_MS
        if start_ms > MAX_TRACE_TIME_MS:
            raise TraceFormatError(
                path,
                line,
                TIMESTAMP,
                f"{raw_time!r} is more than {MAX_TRACE_TIME_MS / _MS_PER_DAY:,.0f} days after "
                "the first row",
            )
        last_ns, last_line = time_ns, line
        step = Step(
            new_input_tokens=csv_count(path, line, CONTEXT, row[cols[CONTEXT]]),
            output_tokens=csv_count(path, line, GENERATED, row[cols[GENERATED]]),
        )
        yield Session(
            session_id=f"az-{line}",
            start_ms=start_ms,
            steps=(step,),
            source_line=line,
        )
