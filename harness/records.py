"""The per-request record: one row of `requests.parquet`, written by the client and replay.

All `*_ns` times are integer nanoseconds on the run's monotonic clock, counted from the
run's anchor (see `RunClock`); the manifest holds the wall-clock time of that anchor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from harness.units import NS_PER_S


@dataclass(slots=True)
class RunClock:
    """One anchor per run: a monotonic origin and the wall-clock time taken at the same moment."""

    anchor_perf_ns: int = field(default_factory=time.perf_counter_ns)
    anchor_unix_ns: int = field(default_factory=time.time_ns)

    def now_ns(self) -> int:
        """Nanoseconds since the anchor, monotonic."""
        return time.perf_counter_ns() - self.anchor_perf_ns


async def sleep_until(
    now_ns: Callable[[], int], until_ns: int, stop: asyncio.Event | None = None
) -> bool:
    """Sleep until `until_ns` on the run clock `now_ns`, or until `stop` is set; whether
    the time was reached (False: stopped first). The event loop's timers may wake a little
    early (uvloop's count whole milliseconds): the wait sleeps again for what is left, so it
    never ends before `until_ns` unless stopped."""
    while (left_ns := until_ns - now_ns()) > 0:
        if stop is None:
            await asyncio.sleep(left_ns / NS_PER_S)
            continue
        if stop.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=left_ns / NS_PER_S)
    return True


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
    slot_wait_ns: int | None = None
    """Time spent waiting in the harness for a `max_concurrency` slot (None: no cap)."""
    parent_session_id: str | None = None
    """A sub-agent's request: the session of the agent that started it (None otherwise)."""
    server: str | None = None
    """The base URL of the server (of the replicas, the one routed to) it was sent to; None
    where that is unknown (in flight on a load worker that was lost) or no replica was left."""

    @property
    def ok(self) -> bool:
        """True when the request completed with a 200 and no error."""
        return self.error is None and self.http_status == 200 and self.done_ns is not None


ColumnKind = Literal["int", "int_list", "float", "str", "bool"]

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
    "slot_wait_ns": "int",
    "parent_session_id": "str",
    "server": "str",
    "ok": "bool",
}
"""The columns of `requests.parquet`, in order, with the kind of value each holds."""

REQUEST_COLUMNS: tuple[str, ...] = tuple(REQUEST_COLUMN_KINDS)


def record_to_row(record: object, columns: tuple[str, ...] = REQUEST_COLUMNS) -> dict[str, object]:
    """A record as a plain dict with the given columns (default: those of `requests.parquet`)."""
    return {name: getattr(record, name) for name in columns}


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Where a tool call sits: its session, step and position, and the seed for its data."""

    session_id: str
    step_index: int
    tool_index: int
    seed: int = 0


@dataclass(slots=True)
class ToolRecord:
    """One tool call: what ran, when (run clock ns), what it cost the host CPU, how it ended.

    CPU and memory figures are None where the mode does not measure them (replay waits),
    never 0 as a stand-in."""

    session_id: str
    step_index: int
    tool_index: int
    kind: str
    mode: str
    size: float | None
    recorded_duration_ms: float
    start_ns: int
    end_ns: int
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    peak_rss_bytes: int | None = None
    status: str = "ok"
    error: str | None = None
    work_start_ns: int | None = None
    """When a worker began the work (execute mode); before it the call queued for a worker."""
    sandbox: str | None = None
    """How a sandboxed call (code_exec) was contained: "bwrap+cgroup-v2", "bwrap+cgroup-v1"
    (bubblewrap, whole-tree limits in that cgroup), "bwrap" (per-process limits only) or
    "rlimits" (no bubblewrap); None for kinds that run in the worker, and in replay."""
    limits_clamped: bool | None = None
    """Whether a limit the call asked for (from its size or timeout) was above the fixed
    maxima and clamped to them; None where no limit applies (replay)."""
    cpu_limit_s: float | None = None
    """The CPU limit a sandboxed call ran under (None where there is none)."""
    wall_limit_s: float | None = None
    """The wall-clock limit the call ran under (execute mode)."""
    tree_cpu_from: str | None = None
    """Where a sandboxed call's CPU seconds come from: "cgroup" (the whole process tree) or
    "wait4" (the processes reaped); None for other calls."""

    @property
    def cpu_s(self) -> float | None:
        """User plus system CPU seconds, None when not measured."""
        if self.cpu_user_s is None or self.cpu_system_s is None:
            return None
        return self.cpu_user_s + self.cpu_system_s


@dataclass(slots=True)
class StepRecord:
    """One agent step's timeline on the run clock: ready → (think) → request sent → done →
    tools → end. Consecutive steps of a session are contiguous (next ready = this end)."""

    session_id: str
    step_index: int
    request_id: str | None
    ready_ns: int
    end_ns: int
    sent_ns: int | None = None
    done_ns: int | None = None
    tools_start_ns: int | None = None
    tools_end_ns: int | None = None
    tool_calls: int = 0
    tool_failures: int = 0
    think_ns: int = 0
    request_ok: bool = False
    slot_wait_ns: int | None = None
    """Time the step's request waited for a `max_concurrency` slot (harness queue)."""
    subagents_started: int = 0
    """Sub-agent sessions this step started (its waits are the wait on them)."""


STEP_COLUMN_KINDS: dict[str, ColumnKind] = {
    "session_id": "str",
    "step_index": "int",
    "request_id": "str",
    "ready_ns": "int",
    "end_ns": "int",
    "sent_ns": "int",
    "done_ns": "int",
    "tools_start_ns": "int",
    "tools_end_ns": "int",
    "tool_calls": "int",
    "tool_failures": "int",
    "think_ns": "int",
    "request_ok": "bool",
    "slot_wait_ns": "int",
    "subagents_started": "int",
}
"""The columns of `steps.parquet`."""

TOOL_COLUMN_KINDS: dict[str, ColumnKind] = {
    "session_id": "str",
    "step_index": "int",
    "tool_index": "int",
    "kind": "str",
    "mode": "str",
    "size": "float",
    "recorded_duration_ms": "float",
    "start_ns": "int",
    "end_ns": "int",
    "cpu_user_s": "float",
    "cpu_system_s": "float",
    "peak_rss_bytes": "int",
    "status": "str",
    "error": "str",
    "work_start_ns": "int",
    "sandbox": "str",
    "limits_clamped": "bool",
    "cpu_limit_s": "float",
    "wall_limit_s": "float",
    "tree_cpu_from": "str",
}
"""The columns of `tools.parquet`."""

TABLE_COLUMN_KINDS: dict[str, dict[str, ColumnKind]] = {
    "requests": REQUEST_COLUMN_KINDS,
    "steps": STEP_COLUMN_KINDS,
    "tools": TOOL_COLUMN_KINDS,
}
"""Every per-event table of a run directory, by name."""
