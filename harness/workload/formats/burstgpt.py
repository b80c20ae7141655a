"""BurstGPT CSV traces (ChatGPT/GPT-4 on Azure), with conversation grouping by `Session ID`.

Rules, chosen so that every row's prompt length is reproduced exactly:

- `start_ms` counts from the first row's `Timestamp` (seconds from the trace's start, at
  most ten years; the third release's timestamps do not start at zero). A row earlier than
  the row before it is an error (the published traces are sorted by time).
- Without a `Session ID` column, or where it is blank (the API-log rows of the third
  release), each row is a one-step Session `bg-<line>`.
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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import TraceFormatError
from harness.workload.formats._common import CsvRows, check_readable, csv_count, csv_number
from harness.workload.limits import MAX_TRACE_TIME_MS
from harness.workload.model import Session, Step

TIMESTAMP = "Timestamp"
REQUEST = "Request tokens"
RESPONSE = "Response tokens"
SESSION_ID = "Session ID"
MODEL = "Model"
LOG_TYPE = "Log Type"
DEFAULT_SESSION_GAP_S = 3600.0

_MS_PER_S = 1000.0


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
) -> Iterator[Session]:
    """Stream a BurstGPT trace as Sessions (see the module docstring for the rules)."""
    check_readable(path)
    return _sessions(path, session_gap_s)


def _sessions(path: Path, gap_s: float | None) -> Iterator[Session]:
    """Group rows into sessions, emitting each in first-row order once it is finished."""
    csv_rows = CsvRows(path, (TIMESTAMP, REQUEST, RESPONSE))
    pending: deque[_Open] = deque()
    by_id: dict[str, _Open] = {}
    parts: dict[str, int] = {}
    first_s: float | None = None
    now_s = 0.0
    last_line = 0
    for line, row in csv_rows.rows():
        cols = csv_rows.columns
        raw_time = row[cols[TIMESTAMP]]
        time_s = csv_number(path, line, TIMESTAMP, raw_time, MAX_TRACE_TIME_MS / _MS_PER_S)
        if first_s is None:
            first_s = time_s
        time_s -= first_s
        if time_s < now_s:
            raise TraceFormatError(
                path,
                line,
                TIMESTAMP,
                f"{raw_time!r} is earlier than line {last_line}'s timestamp "
                "(BurstGPT traces are sorted by time)",
            )
        now_s, last_line = time_s, line
        request = csv_count(path, line, REQUEST, row[cols[REQUEST]])
        response = csv_count(path, line, RESPONSE, row[cols[RESPONSE]])
        sid = row[cols[SESSION_ID]].strip() if csv_rows.has(SESSION_ID) else ""
        metadata = {
            key: row[cols[column]].strip()
            for key, column in (("model", MODEL), ("log_type", LOG_TYPE))
            if csv_rows.has(column)
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
