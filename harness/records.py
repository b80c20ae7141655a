"""The per-request record: one row of `requests.parquet`, written by the client and replay.

All `*_ns` times are integer nanoseconds on the run's monotonic clock, counted from the
run's anchor (see `RunClock`); the manifest holds the wall-clock time of that anchor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal


@dataclass(slots=True)
class RunClock:
    """One anchor per run: a monotonic origin and the wall-clock time taken at the same moment."""

    anchor_perf_ns: int = field(default_factory=time.perf_counter_ns)
    anchor_unix_ns: int = field(default_factory=time.time_ns)

    def now_ns(self) -> int:
        """Nanoseconds since the anchor, monotonic."""
        return time.perf_counter_ns() - self.anchor_perf_ns


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request, from scheduling to the last byte."""

    request_id: str
    session_id: str
    step_index: int
    api: str
    prompt_tokens_expected: int
    output_tokens_expected: int
    scheduled_ns: int
    sent_ns: int | None = None
    first_token_ns: int | None = None
    last_token_ns: int | None = None
    done_ns: int | None = None
    chunk_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    cached_prompt_tokens: int | None = None
    http_status: int | None = None
    error: str | None = None
    warmup: bool = False

    @property
    def ok(self) -> bool:
        """True when the request completed with a 200 and no error."""
        return self.error is None and self.http_status == 200 and self.done_ns is not None


ColumnKind = Literal["int", "int_list", "str", "bool"]

REQUEST_COLUMN_KINDS: dict[str, ColumnKind] = {
    "request_id": "str",
    "session_id": "str",
    "step_index": "int",
    "api": "str",
    "prompt_tokens_expected": "int",
    "output_tokens_expected": "int",
    "scheduled_ns": "int",
    "sent_ns": "int",
    "first_token_ns": "int",
    "last_token_ns": "int",
    "done_ns": "int",
    "chunk_ns": "int_list",
    "chunk_tokens": "int_list",
    "prompt_tokens": "int",
    "output_tokens": "int",
    "cached_prompt_tokens": "int",
    "http_status": "int",
    "error": "str",
    "warmup": "bool",
    "ok": "bool",
}
"""The columns of `requests.parquet`, in order, with the kind of value each holds."""

REQUEST_COLUMNS: tuple[str, ...] = tuple(REQUEST_COLUMN_KINDS)


def record_to_row(record: RequestRecord) -> dict[str, object]:
    """A record as a plain dict with the columns of `requests.parquet`."""
    return {name: getattr(record, name) for name in REQUEST_COLUMNS}
