"""BurstGPT CSV traces (ChatGPT/GPT-4 on Azure), with conversation grouping by `Session ID`.

Rules, chosen so that every row's prompt length is reproduced exactly:

- `start_ms` counts from the first row's `Timestamp` (seconds from the trace's start, at
  most ten years; the third release's timestamps do not start at zero). A row earlier than
  the row before it is an error (the published traces are sorted by time).
- The release with sessions (`BurstGPT_3.csv`, release v1.2) adds `Session ID` (the
  conversation; blank for API-log rows) and `Elapsed time` (the service's response time,
  not replayed); its announcement spelled the first `SessionID`, which is read too.
  Without either column, or where the id is blank, each row is a one-step Session
  `bg-<line>`.
- Rows sharing a `Session ID` form one multi-step Session (id = the Session ID) in file
  order; `Step.offset_ms` is the row's time minus the session's first row's time, and
  `new_input_tokens` = `Request tokens` − (previous prompt + previous output), so the
  agent-loop prompt equals `Request tokens`. When that difference is negative (the
  client truncated its history, or the id was reused) the prompt cannot be expressed as a
  continuation, so the row starts a new part `<Session ID>#<n>` whose prompt is the whole
  `Request tokens`. A difference of zero stays in the session (a step with no new input).
- A session idle for more than `session_gap_s` of trace time (default 3,600 s) is closed
  and emitted, and a later row with its id starts a new part: this keeps the loader
  streaming, holding only the sessions active within the last gap (and a part counter
  per Session ID seen). `None` holds every open session until the end of the file.
- Rows with `Response tokens` 0 (failed requests in the releases "with fails") are kept
  as steps with `output_tokens` 0, so that request counts match the published files;
  filter them downstream or use the `without_fails` files to drop them.
- Sessions come out in the order of their first row; `Model` and `Log Type`, where
  present, go into the session's metadata; `Total tokens` and `Elapsed time` are ignored.
- `workload_stats` takes its sums from the file read in batches of columns: the session
  rules above applied to a batch at once (a row starts a session unless the last row with
  its id, carried from batch to batch, lets it continue), without a Session per row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
    integers,
    number_cells,
    numbers,
    strings,
)
from harness.workload.formats._common import check_readable, csv_count, csv_number
from harness.workload.limits import MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step
from harness.workload.stats import RequestBatch

TIMESTAMP = "Timestamp"
REQUEST = "Request tokens"
RESPONSE = "Response tokens"
SESSION_ID = "Session ID"
SESSION_IDS = (SESSION_ID, "SessionID")
"""The session column's names, in order of preference (the release's, its announcement's)."""
MODEL = "Model"
LOG_TYPE = "Log Type"
DEFAULT_SESSION_GAP_S = 3600.0

_MS_PER_S = 1000.0
_MAX_TIME_S = MAX_TRACE_TIME_MS / _MS_PER_S


@dataclass(slots=True)
class _Open:
    """A session being assembled: its steps so far and the last prompt and output."""

    session_id: str
    key: str
    start_s: float
    last_s: float
    line: int
    metadata: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    prompt: int = 0
    output: int = 0
    closed: bool = False

    def session(self) -> Session:
        """The finished Session."""
        return Session(
            session_id=self.session_id,
            start_ms=self.start_s * _MS_PER_S,
            steps=tuple(self.steps),
            source_line=self.line,
            metadata=self.metadata,
        )


def iter_burstgpt(
    path: Path, *, session_gap_s: float | None = DEFAULT_SESSION_GAP_S
) -> ColumnarTrace:
    """Stream a BurstGPT trace as Sessions (see the module docstring for the rules)."""
    check_readable(path)
    return ColumnarTrace(
        lambda: _sessions(path, session_gap_s), lambda: _request_batches(path, session_gap_s)
    )


def _sessions(path: Path, gap_s: float | None) -> Iterator[Session]:
    """Group rows into sessions, emitting each in first-row order once it is finished."""
    pending: deque[_Open] = deque()
    by_id: dict[str, _Open] = {}
    parts: dict[str, int] = {}
    first_s: float | None = None
    now_s = 0.0
    last_line = 0
    for line, row in _rows(path):
        cells = (row[TIMESTAMP], row[REQUEST], row[RESPONSE])
        value, request, response = _check_row(path, line, cells, first_s, (now_s, last_line))
        if first_s is None:
            first_s = value
        time_s = value - first_s
        now_s, last_line = time_s, line
        sid = next((row[c] for c in SESSION_IDS if c in row), "").strip()
        metadata = {
            key: row[column].strip()
            for key, column in (("model", MODEL), ("log_type", LOG_TYPE))
            if column in row
        }
        if not sid:
            name = f"bg-{line}"
            single = _Open(name, name, time_s, time_s, line, metadata, closed=True)
            single.steps.append(Step(new_input_tokens=request, output_tokens=response))
            pending.append(single)
        else:
            current = by_id.get(sid)
            if current is not None and _continues(current, time_s, request, gap_s):
                _add_step(current, time_s, request, response)
            else:
                if current is not None:
                    current.closed = True
                part = parts.get(sid, 0)
                parts[sid] = part + 1
                name = sid if part == 0 else f"{sid}#{part}"
                opened = _Open(name, sid, time_s, time_s, line, metadata)
                _add_step(opened, time_s, request, response)
                by_id[sid] = opened
                pending.append(opened)
        while pending and _finished(pending[0], now_s, gap_s):
            yield _pop(pending, by_id)
    while pending:
        yield _pop(pending, by_id)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, cells by column) of each row, from the batches the sums read too (so both
    meet a bad line alike)."""
    columns = (*SESSION_IDS, MODEL, LOG_TYPE)
    for batch in csv_batches(path, (TIMESTAMP, REQUEST, RESPONSE), columns):
        cells = {name: values.to_pylist() for name, values in batch.columns.items()}
        for k, line in enumerate(batch.lines.tolist()):
            yield line, {name: values[k] for name, values in cells.items()}


def _check_row(
    path: Path,
    line: int,
    cells: tuple[str, str, str],
    first_s: float | None,
    before: tuple[float, int],
) -> tuple[float, int, int]:
    """A row's time (seconds, as written) and counts, checked in order: the time, its order
    against the row `before` it (its time from the first row, and its line), both counts."""
    raw_time, raw_request, raw_response = cells
    value = csv_number(path, line, TIMESTAMP, raw_time, _MAX_TIME_S)
    now_s, last_line = before
    if first_s is not None and value - first_s < now_s:
        raise TraceFormatError(
            path,
            line,
            TIMESTAMP,
            f"{raw_time!r} is earlier than line {last_line}'s timestamp "
            "(BurstGPT traces are sorted by time)",
        )
    return (
        value,
        csv_count(path, line, REQUEST, raw_request),
        csv_count(path, line, RESPONSE, raw_response),
    )


def _continues(current: _Open, time_s: float, request: int, gap_s: float | None) -> bool:
    """True when a row extends the open session rather than starting a new part."""
    if gap_s is not None and time_s - current.last_s > gap_s:
        return False
    return request >= current.prompt + current.output


def _add_step(current: _Open, time_s: float, request: int, response: int) -> None:
    """Append a row as the next step: its new input is the growth of the prompt."""
    new_input = request - (current.prompt + current.output) if current.steps else request
    offset_ms = (time_s - current.start_s) * _MS_PER_S
    current.steps.append(
        Step(new_input_tokens=new_input, output_tokens=response, offset_ms=offset_ms)
    )
    current.prompt = request
    current.output = response
    current.last_s = time_s


def _finished(item: _Open, now_s: float, gap_s: float | None) -> bool:
    """A session is complete once closed, or idle for longer than the gap."""
    return item.closed or (gap_s is not None and now_s - item.last_s > gap_s)


def _pop(pending: deque[_Open], by_id: dict[str, _Open]) -> Session:
    """Remove the oldest pending session, forgetting its id if it is still the open part."""
    item = pending.popleft()
    if by_id.get(item.key) is item:
        del by_id[item.key]
    return item.session()


# --- in batches ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Carry:
    """The last row of each session id that a later row may continue (ids idle for longer
    than the gap are dropped: no later row can continue them): its time, its prompt plus
    output, and the start of the session it is in."""

    keys: pa.StringArray = field(default_factory=lambda: strings([]))
    last_s: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    context: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    start_s: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))


def _request_batches(path: Path, gap_s: float | None) -> Iterator[RequestBatch]:
    """The requests in columns, batch by batch: every row's prompt is its `Request tokens`,
    and a row's start is its session's start plus its offset, as the Sessions give them."""
    carry = _Carry()
    first_s: float | None = None
    now_s, last_line = 0.0, 0
    for batch in csv_batches(path, (TIMESTAMP, REQUEST, RESPONSE), SESSION_IDS):
        values, bad_time = number_cells(path, batch, TIMESTAMP, _MAX_TIME_S)
        request, bad_request = count_cells(path, batch, REQUEST)
        response, bad_response = count_cells(path, batch, RESPONSE)
        if first_s is None and not bad_time[0]:
            first_s = float(values[0])
        times = values - (first_s or 0.0)
        before = np.concatenate(([now_s], times[:-1]))
        bad = first_bad(bad_time, times < before, bad_request, bad_response)
        if bad is not None:
            _fail(
                path,
                batch,
                bad,
                first_s,
                (now_s, last_line) if bad == 0 else (float(before[bad]), int(batch.lines[bad - 1])),
            )
        rows, keys = _keys(batch)
        starts, session_s = _group(carry, rows, keys, times, request, response, gap_s)
        now_s, last_line = float(times[-1]), int(batch.lines[-1])
        if gap_s is not None:
            _forget_idle(carry, now_s, gap_s)
        starts_ms = session_s * _MS_PER_S + (times - session_s) * _MS_PER_S
        yield RequestBatch(int(starts.sum()), request, response, starts_ms)


def _fail(
    path: Path, batch: CsvBatch, row: int, first_s: float | None, before: tuple[float, int]
) -> None:
    """Raise the error of a row the batch checks refused, by checking it on its own."""
    cells = (batch.cell(TIMESTAMP, row), batch.cell(REQUEST, row), batch.cell(RESPONSE, row))
    line = int(batch.lines[row])
    _check_row(path, line, cells, first_s if row or before[1] else None, before)
    raise TraceFormatError(path, line, None, "refused by the batch checks")  # not reached


def _keys(batch: CsvBatch) -> tuple[np.ndarray, pa.StringArray]:
    """The rows of a batch with a session id, and their ids stripped as `str.strip` strips
    them (a cell that starts and ends with a visible ASCII character is kept as it is; any
    other goes through Python)."""
    column = next((c for c in SESSION_IDS if c in batch.columns), None)
    if column is None:
        return np.zeros(0, dtype=np.int64), strings([])
    cells = batch.columns[column]
    offsets = cell_offsets(cells)
    lengths = np.diff(offsets)
    filled = lengths > 0
    plain = filled.copy()
    if filled.any():
        data = np.frombuffer(cells.buffers()[2], dtype=np.uint8)
        ends = np.minimum(offsets, len(data) - 1)
        first, last = data[ends[:-1]], data[np.maximum(offsets[1:] - 1, 0)]
        plain &= (first > 32) & (first < 127) & (last > 32) & (last < 127)
    odd = np.flatnonzero(filled & ~plain)
    if len(odd):
        stripped = [batch.cell(column, i).strip() for i in odd.tolist()]
        mask = np.zeros(len(cells), dtype=bool)
        mask[odd] = True
        cells = pc.replace_with_mask(cells, booleans(mask), strings(stripped))
        plain[odd[[bool(text) for text in stripped]]] = True
    rows = np.flatnonzero(plain)
    keyed: pa.StringArray = cells.filter(booleans(plain))
    return rows, keyed


def _group(
    carry: _Carry,
    rows: np.ndarray,
    keys: pa.StringArray,
    times: np.ndarray,
    request: np.ndarray,
    response: np.ndarray,
    gap_s: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of a batch start a session, and the start time of each row's session:
    a row with an id continues the session of the last row with that id (this batch's, or
    the carried one) unless it comes more than the gap later or its prompt is shorter than
    that row's prompt plus output; a row without an id is a session of its own."""
    starts = np.ones(len(times), dtype=bool)
    session_s = times.copy()
    if not len(rows):
        return starts, session_s
    encoded = pc.dictionary_encode(keys)
    codes = numbers(encoded.indices).astype(np.int64)
    found_at = pc.index_in(encoded.dictionary, value_set=carry.keys)
    found = flags(pc.is_valid(found_at))
    where = np.where(found, numbers(found_at, nulls=True), 0).astype(np.int64)
    order = np.argsort(codes, kind="stable")
    code = codes[order]
    row = rows[order]
    head = np.ones(len(code), dtype=bool)  # the batch's first row of each id
    head[1:] = code[1:] != code[:-1]
    previous = np.roll(row, 1)
    known = found[code]
    at = where[code]

    def carried(values: np.ndarray, fill: float) -> np.ndarray:
        return values[at] if len(values) else np.full(len(at), fill, dtype=values.dtype)

    last_s = np.where(head, carried(carry.last_s, 0.0), times[previous])
    context = np.where(head, carried(carry.context, 0), request[previous] + response[previous])
    goes_on = (~head | known) & (request[row] >= context)
    if gap_s is not None:
        goes_on &= ~(times[row] - last_s > gap_s)
    opens = ~goes_on
    start_s = np.where(opens, times[row], carried(carry.start_s, 0.0))
    defined = np.where(opens | head, np.arange(len(code)), 0)
    start_s = start_s[np.maximum.accumulate(defined)]
    starts[row] = opens
    session_s[row] = start_s
    tail = np.ones(len(code), dtype=bool)  # the batch's last row of each id
    tail[:-1] = code[1:] != code[:-1]
    _remember(
        carry,
        encoded.dictionary,
        code[tail],
        found,
        where,
        row[tail],
        start_s[tail],
        times,
        request,
        response,
    )
    return starts, session_s


def _remember(
    carry: _Carry,
    ids: pa.StringArray,
    codes: np.ndarray,
    found: np.ndarray,
    where: np.ndarray,
    rows: np.ndarray,
    start_s: np.ndarray,
    times: np.ndarray,
    request: np.ndarray,
    response: np.ndarray,
) -> None:
    """Carry each id's last row of the batch (`codes` index `ids`; `found`/`where` say
    which are carried already, and where)."""
    last_s, context = times[rows], request[rows] + response[rows]
    old = found[codes]
    carry.last_s = carry.last_s.copy()
    carry.context = carry.context.copy()
    carry.start_s = carry.start_s.copy()
    for target, value in (
        (carry.last_s, last_s),
        (carry.context, context),
        (carry.start_s, start_s),
    ):
        target[where[codes[old]]] = value[old]
    new = ~old
    carry.keys = pa.concat_arrays([carry.keys, ids.take(integers(codes[new]))])
    carry.last_s = np.concatenate((carry.last_s, last_s[new]))
    carry.context = np.concatenate((carry.context, context[new]))
    carry.start_s = np.concatenate((carry.start_s, start_s[new]))


def _forget_idle(carry: _Carry, now_s: float, gap_s: float) -> None:
    """Drop the ids idle for longer than the gap: no later row can continue them."""
    keep = ~(now_s - carry.last_s > gap_s)
    if keep.all():
        return
    carry.keys = carry.keys.filter(booleans(keep))
    carry.last_s, carry.context, carry.start_s = (
        carry.last_s[keep],
        carry.context[keep],
        carry.start_s[keep],
    )
