"""Azure LLM inference traces (2023 and 2024): CSV `TIMESTAMP,ContextTokens,GeneratedTokens`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import TraceFormatError
from harness.workload.formats._batches import (
    ColumnarTrace,
    CsvBatch,
    booleans,
    cell_offsets,
    count_cells,
    csv_batches,
    first_bad,
    flags,
    numbers,
    strings,
)
from harness.workload.formats._common import check_readable, csv_count
from harness.workload.formats._typed import TypedChunk, TypedCsv
from harness.workload.limits import MAX_TOKENS, MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step
from harness.workload.stats import RequestBatch

TIMESTAMP = "TIMESTAMP"
CONTEXT = "ContextTokens"
GENERATED = "GeneratedTokens"

_NS_PER_S = 1_000_000_000
_NS_PER_MS = 1_000_000
_NS_PER_MINUTE = 60 * _NS_PER_S
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


def iter_azure(path: Path) -> ColumnarTrace:
    """Stream an Azure trace: each row is a one-step Session `az-<line>`.

    `start_ms` counts from the first row's timestamp, computed from integer nanoseconds so
    the 7-digit fractions of the 2023 traces carry no float drift. A row earlier than the
    row before it is an error (the published traces are sorted), and so is one more than
    MAX_TRACE_TIME_MS after the first. The file is parsed in batches through pyarrow, and
    `workload_stats` takes its sums from typed columns without a Session per row.
    """
    check_readable(path)
    return ColumnarTrace(lambda: _sessions(_rows(path)), lambda: _typed_requests(path))


@dataclass(frozen=True, slots=True)
class _Rows:
    """A batch of checked rows: line, start (ms from the first row) and both counts."""

    lines: np.ndarray
    start_ms: np.ndarray
    context: np.ndarray
    generated: np.ndarray


def _sessions(batches: Iterator[_Rows]) -> Iterator[Session]:
    """One one-step Session per row."""
    for rows in batches:
        for line, start_ms, context, generated in zip(
            rows.lines.tolist(),
            rows.start_ms.tolist(),
            rows.context.tolist(),
            rows.generated.tolist(),
            strict=True,
        ):
            yield Session(
                session_id=f"az-{line}",
                start_ms=start_ms,
                steps=(Step(new_input_tokens=context, output_tokens=generated),),
                source_line=line,
            )


def _requests(batches: Iterator[_Rows]) -> Iterator[RequestBatch]:
    """The rows as requests in columns: one session and one request each."""
    for rows in batches:
        yield RequestBatch(len(rows.lines), rows.context, rows.generated, rows.start_ms)


@dataclass(slots=True)
class _Clock:
    """The first row's time and the last row's, as (seconds, nanoseconds) since the epoch."""

    first: tuple[int, int] | None = None
    last: tuple[int, int] = (0, 0)
    last_line: int = 0


_MAX_AFTER_S = int(MAX_TRACE_TIME_MS // 1000) + 1


def _typed_requests(path: Path) -> Iterator[RequestBatch]:
    """The requests in columns from pyarrow's typed reading (timestamps, counts); from the
    first chunk it does not vouch for, or that breaks a rule, the exact reader reads on (and
    names the line and field of the row at fault)."""
    reader = TypedCsv(
        path,
        (TIMESTAMP, CONTEXT, GENERATED),
        {TIMESTAMP: pa.timestamp("ns"), CONTEXT: pa.uint32(), GENERATED: pa.uint32()},
    )
    first: int | None = None
    last = 0
    chunks = reader.chunks()
    for chunk in chunks:
        checked = _typed_rows(reader, chunk, first, last) if isinstance(chunk, TypedChunk) else None
        if checked is None:
            chunks.close()
            yield from _requests(_rows_from(path, reader, chunk.offset, first, last))
            return
        times, context, generated = checked
        if not len(times):
            continue
        if first is None:
            first = int(times[0])
        last = int(times[-1])
        yield RequestBatch(len(times), context, generated, (times - first) / _NS_PER_MS)


def _typed_rows(
    reader: TypedCsv, chunk: TypedChunk, first: int | None, last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A typed chunk's times (int64 ns) and counts, or None where a row may break a rule or
    pyarrow may have read a cell the row checks refuse: a time on a whole minute may lack its
    seconds (pyarrow reads `18:15` as `18:15:00`), so its chunk's cells are measured."""
    times = numbers(chunk.columns[TIMESTAMP])
    context = numbers(chunk.columns[CONTEXT])
    generated = numbers(chunk.columns[GENERATED])
    if not len(times):
        return times, context, generated
    base = int(times[0]) if first is None else first
    if (first is not None and int(times[0]) < last) or (times[1:] < times[:-1]).any():
        return None
    if _on_a_minute(times):
        cells = reader.column_as_bytes(chunk, TIMESTAMP)
        if int(np.diff(cell_offsets(cells)).min()) < _BASE:
            return None
    if float(int(times[-1]) - base) / _NS_PER_MS > MAX_TRACE_TIME_MS:
        return None  # the times are in order: the last is the latest
    if int(context.max()) > MAX_TOKENS or int(generated.max()) > MAX_TOKENS:
        return None
    return times, context, generated


def _on_a_minute(times: np.ndarray) -> bool:
    """Whether any of these times (sorted int64 ns) falls on a whole minute: each minute
    they span is looked up, unless they span more minutes than there are times."""
    low, high = int(times[0]), int(times[-1])
    minutes = np.arange(-(-low // _NS_PER_MINUTE), high // _NS_PER_MINUTE + 1, dtype=np.int64)
    if len(minutes) > len(times):
        return bool((times % _NS_PER_MINUTE == 0).any())
    minutes *= _NS_PER_MINUTE
    at = np.minimum(np.searchsorted(times, minutes), len(times) - 1)
    return bool((times[at] == minutes).any())


def _rows_from(
    path: Path, reader: TypedCsv, offset: int, first: int | None, last: int
) -> Iterator[_Rows]:
    """The exact reader from byte `offset` on, where the typed read left off (its first and
    last time so far, if it read any rows)."""
    clock = _Clock()
    if first is not None:
        clock = _Clock(divmod(first, _NS_PER_S), divmod(last, _NS_PER_S))
        clock.last_line = reader.last_row_line(offset)
    if not reader.readable:
        return _rows(path)
    return _rows(path, (offset, reader.line_at(offset)), clock)


def _rows(
    path: Path, start: tuple[int, int] | None = None, clock: _Clock | None = None
) -> Iterator[_Rows]:
    """Parse and check the trace batch by batch (from `start`, a byte offset and its line,
    with the `clock` of the rows before it); the first bad row is checked again on its own
    (`_check_row`), which raises the error naming its line and field."""
    clock = clock or _Clock()
    for batch in csv_batches(path, (TIMESTAMP, CONTEXT, GENERATED), start=start):
        sec, nsec, bad_time = _timestamps(batch.columns[TIMESTAMP])
        if clock.first is None:
            if bad_time[0]:
                _fail(path, batch, 0, clock)
            clock.first = (int(sec[0]), int(nsec[0]))
        first_s, first_ns = clock.first
        prev_s = np.concatenate(([clock.last[0]], sec[:-1]))
        prev_ns = np.concatenate(([clock.last[1]], nsec[:-1]))
        earlier = (sec < prev_s) | ((sec == prev_s) & (nsec < prev_ns))
        if clock.last_line == 0:
            earlier[0] = False
        after_s = np.clip(sec - first_s, -_MAX_AFTER_S, _MAX_AFTER_S)
        start_ms = (after_s * _NS_PER_S + (nsec - first_ns)) / _NS_PER_MS
        late = start_ms > MAX_TRACE_TIME_MS
        context, bad_context = count_cells(path, batch, CONTEXT)
        generated, bad_generated = count_cells(path, batch, GENERATED)
        bad = first_bad(bad_time, earlier, late, bad_context, bad_generated)
        if bad is not None:
            _fail(path, batch, bad, _Clock(clock.first, *_before(batch, bad, sec, nsec, clock)))
        clock.last = (int(sec[-1]), int(nsec[-1]))
        clock.last_line = int(batch.lines[-1])
        yield _Rows(batch.lines, start_ms, context, generated)


def _before(
    batch: CsvBatch, row: int, sec: np.ndarray, nsec: np.ndarray, clock: _Clock
) -> tuple[tuple[int, int], int]:
    """The time and line of the row before `row` of a batch."""
    if row == 0:
        return clock.last, clock.last_line
    return (int(sec[row - 1]), int(nsec[row - 1])), int(batch.lines[row - 1])


def _fail(path: Path, batch: CsvBatch, row: int, clock: _Clock) -> NoReturn:
    """Raise the error of a row the batch checks refused, by checking it on its own."""
    line = int(batch.lines[row])
    first_ns = None  # the file's first row: nothing to be earlier than
    if clock.first is not None and clock.last_line:
        first_ns = clock.first[0] * _NS_PER_S + clock.first[1]
    last_ns = clock.last[0] * _NS_PER_S + clock.last[1]
    _check_row(
        path,
        line,
        [batch.cell(c, row) for c in (TIMESTAMP, CONTEXT, GENERATED)],
        first_ns,
        (last_ns, clock.last_line),
    )
    raise TraceFormatError(path, line, None, "refused by the batch checks")  # not reached


def _check_row(
    path: Path, line: int, cells: list[str], first_ns: int | None, last: tuple[int, int]
) -> None:
    """The checks of one row, in order, raising the first that fails: its timestamp, its
    order against the row before (`last`: time and line), its distance from the first row,
    then both counts."""
    raw_time, raw_context, raw_generated = cells
    try:
        time_ns = parse_timestamp_ns(raw_time)
    except ValueError as err:
        raise TraceFormatError(path, line, TIMESTAMP, f"{err}, got {raw_time!r}") from None
    last_ns, last_line = last
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
    if (time_ns - first_ns) / _NS_PER_MS > MAX_TRACE_TIME_MS:
        raise TraceFormatError(
            path,
            line,
            TIMESTAMP,
            f"{raw_time!r} is more than {MAX_TRACE_TIME_MS / _MS_PER_DAY:,.0f} days after "
            "the first row",
        )
    csv_count(path, line, CONTEXT, raw_context)
    csv_count(path, line, GENERATED, raw_generated)


# --- timestamps in columns ---------------------------------------------------------------

_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_BASE = 19
"""Characters of `YYYY-MM-DD HH:MM:SS`."""
_LONGEST = _BASE + 10 + 6
"""Characters of the longest plain form, `YYYY-MM-DD HH:MM:SS.fffffffff+HH:MM`."""
_ZONES = (0, 1, 5, 6)
"""Lengths of the UTC offset forms: none, `Z`, `+HHMM`, `+HH:MM`."""


def _timestamps(cells: pa.StringArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each cell as `parse_timestamp_ns` reads it, split into int64 seconds and nanoseconds
    since the epoch, and a mask of the cells it refuses. Cells in the plain ASCII forms are
    read at once from a matrix of their bytes; any other goes through `parse_timestamp_ns`."""
    n = len(cells)
    sec = np.zeros(n, dtype=np.int64)
    nsec = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    if n:
        lengths = np.diff(cell_offsets(cells))
        chars = _char_matrix(cells, lengths)
        fast = _arrow_timestamps(cells, chars, lengths)
        if fast is not None:
            return fast
        if chars is not None:
            sec, nsec, done = _fixed_width(chars, lengths)
    bad = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(~done).tolist():
        try:
            s_i, ns_i = divmod(parse_timestamp_ns(str(cells[i].as_py())), _NS_PER_S)
        except ValueError:
            bad[i] = True
            continue
        sec[i], nsec[i] = s_i, ns_i
    return sec, nsec, bad


def _arrow_timestamps(
    cells: pa.StringArray, chars: np.ndarray | None, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The usual batch at C speed: every cell one width, laid out `YYYY-MM-DD HH:MM:SS` with
    a `.fraction` or nothing after it and no UTC offset, is read by Arrow's ISO 8601 cast,
    which refuses the same dates and times as parse_timestamp_ns (February 30th, 24:00,
    second 60) and reads the rest to the same nanosecond. None (a cell of another form, or
    one Arrow refuses) leaves the batch to the general path."""
    if chars is None or cells.null_count or int(lengths.min()) != int(lengths.max()):
        return None
    width = int(lengths[0])
    if width != _BASE and not _BASE + 2 <= width <= _BASE + 10:
        return None
    layout = (chars[:, 4] == 45) & (chars[:, 7] == 45) & (chars[:, 13] == 58)
    layout &= (chars[:, 16] == 58) & ((chars[:, 10] == 32) | (chars[:, 10] == 84))
    if width > _BASE:
        layout &= chars[:, _BASE] == 46
    if not layout.all():
        return None
    try:
        ns = numbers(pc.cast(cells, pa.timestamp("ns")))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    sec, nsec = np.divmod(ns, _NS_PER_S)
    return sec, nsec, np.zeros(len(cells), dtype=bool)


def _char_matrix(cells: pa.StringArray, lengths: np.ndarray) -> np.ndarray | None:
    """The cells' bytes as an (n, width) uint8 matrix: a view when every cell has the same
    length, else the cells padded with spaces to the longest that could be a plain form
    (longer ones and those not ASCII blanked); None when no cell could be."""
    low, high = int(lengths.min()), int(lengths.max())
    if low == high:
        if not _BASE <= low <= _LONGEST:
            return None
        offsets = cell_offsets(cells)
        data = np.frombuffer(cells.buffers()[2], dtype=np.uint8)
        return data[offsets[0] : offsets[-1]].reshape(len(cells), low)
    fits = (lengths <= _LONGEST) & flags(pc.string_is_ascii(cells))
    width = int(lengths[fits].max()) if fits.any() else 0
    if width < _BASE:
        return None
    short = pc.if_else(booleans(fits), cells, strings([""] * len(cells)))
    padded = pc.utf8_rpad(short, width=width, padding=" ")
    offsets = cell_offsets(padded)
    data = np.frombuffer(padded.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[-1]].reshape(len(cells), width)


def _digit_tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables from one byte, and from two bytes read as a little-endian uint16, to the
    value of their ASCII digits; -1 where a byte is not a digit."""
    one = np.full(256, -1, dtype=np.int16)
    one[48:58] = np.arange(10)
    low, high = np.meshgrid(np.arange(256), np.arange(256), indexing="xy")
    both = (one[low] >= 0) & (one[high] >= 0)
    two = np.where(both, one[low] * 10 + one[high], -1).astype(np.int16).reshape(-1)
    return one, two


_ONE_DIGIT, _TWO_DIGITS = _digit_tables()


class _Digits:
    """Digit fields of a C-contiguous character matrix, read two bytes at a time through a
    lookup table; a row whose field holds a byte that is not an ASCII digit is marked in
    `bad`."""

    def __init__(self, chars: np.ndarray) -> None:
        self.chars = np.ascontiguousarray(chars)
        self.flat = self.chars.reshape(-1)
        self.bad = np.zeros(len(chars), dtype=bool)

    def number(self, start: int, width: int, rows: np.ndarray | None = None) -> np.ndarray:
        """The decimal number at columns `start` to `start + width` (int64); with `rows`, a
        non-digit is marked only there."""
        rows_n, row_bytes = self.chars.shape
        value = np.zeros(rows_n, dtype=np.int64)
        k = start
        while k < start + width:
            if start + width - k >= 2:
                pair = np.ndarray(
                    (rows_n,), dtype="<u2", buffer=self.flat, offset=k, strides=(row_bytes,)
                )
                part, scale = _TWO_DIGITS[pair], 100
            else:
                part, scale = _ONE_DIGIT[self.chars[:, k]], 10
            wrong = part < 0
            self.bad |= wrong if rows is None else wrong & rows
            value *= scale
            value += part
            k += 2 if scale == 100 else 1
        return value


def _fixed_width(
    chars: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps as a matrix of their bytes (each row's own length in `lengths`): int64
    seconds and nanoseconds since the epoch, and which rows are a valid plain form (ASCII
    digits, a real date and time, a UTC offset within a day)."""
    rows, width = chars.shape
    digits = _Digits(chars)
    year, month, day = digits.number(0, 4), digits.number(5, 2), digits.number(8, 2)
    hour, minute, second = digits.number(11, 2), digits.number(14, 2), digits.number(17, 2)
    ok = (chars[:, 4] == 45) & (chars[:, 7] == 45) & (chars[:, 13] == 58) & (chars[:, 16] == 58)
    ok &= (chars[:, 10] == 32) | (chars[:, 10] == 84)
    nsec = np.zeros(rows, dtype=np.int64)
    zone_s = np.zeros(rows, dtype=np.int64)
    shaped = np.zeros(rows, dtype=bool)
    for length in np.unique(lengths[(lengths >= _BASE) & (lengths <= width)]).tolist():
        of_length = lengths == length
        for zone in _ZONES:
            fraction_digits = length - _BASE - zone - 1
            if fraction_digits == -1:
                fits = of_length.copy()
            elif 1 <= fraction_digits <= 9:
                fits = of_length & (chars[:, _BASE] == 46)
            else:
                continue
            at = length - zone
            if not fits.any():
                continue
            if zone == 1:
                fits &= chars[:, at] == 90
            elif zone:
                fits &= (chars[:, at] == 43) | (chars[:, at] == 45)
                if zone == 6:
                    fits &= chars[:, at + 3] == 58
                zone_h = digits.number(at + 1, 2, fits)
                zone_m = digits.number(at + zone - 2, 2, fits)
                fits &= (zone_h <= 23) & (zone_m <= 59)
                east = np.where(chars[:, at] == 43, 1, -1)
                zone_s = np.where(fits, east * (zone_h * 3600 + zone_m * 60), zone_s)
            if fraction_digits >= 1:
                fraction = digits.number(_BASE + 1, fraction_digits, fits)
                nsec = np.where(fits, fraction * 10 ** (9 - fraction_digits), nsec)
            shaped |= fits
    ok &= shaped & ~digits.bad
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    days, real = _dates(year * 10_000 + month * 100 + day)
    ok &= real
    sec = days * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second - zone_s
    return np.where(ok, sec, 0), np.where(ok, nsec, 0), ok


def _dates(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of dates keyed YYYYMMDD, and whether each is a real date; worked
    out once per run of equal dates (a sorted trace has few in a batch)."""
    if not len(keys):
        return keys, keys.astype(bool)
    starts = np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1))
    runs = np.diff(np.append(starts, len(keys)))
    key = keys[starts]
    year, month, day = key // 10_000, key // 100 % 100, key % 100
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_days = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + ((month == 2) & leap)
    real = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    days = _days_from_civil(year, month, day)
    return np.repeat(days, runs), np.repeat(real, runs)


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    year_of_era = y - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days: np.ndarray = era * 146_097 + day_of_era - 719_468
    return days
