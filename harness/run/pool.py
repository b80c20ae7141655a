"""The parent's side of a multi-process run: it starts the load workers, gives them one start
instant on the run clock, journals their records as they arrive and merges how each ended.

A worker that dies mid-run leaves its requests in flight recorded as failed with the reason;
the other workers go on and the run's exit status says it. A stop signal stops every worker,
and what they measured is written."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from typing import Any

from harness.errors import HarnessError
from harness.records import RequestRecord
from harness.replay import MAX_SESSION_ERRORS, MAX_SUBAGENT_NOTES, ReplayOutcome
from harness.results import RunWriter
from harness.run.live import LiveBounds, LiveFeed, LiveStats
from harness.run.load import LoadPlan
from harness.run.stop_signals import StopSignals
from harness.run.worker_count import share
from harness.run.worker_process import Shared, WorkerSpec, worker_main
from harness.tools.workers import tool_workers

READY_TIMEOUT_S = 180.0
"""How long workers may take to start (imports, tokenizer, tool workers)."""

START_DELAY_NS = 20_000_000
"""The start instant is this far ahead of the moment every worker is ready."""

STOP_GRACE_S = 30.0
"""After a stop, how long workers get to hand over their records before they are killed."""


def worker_specs(load: LoadPlan, count: int, parent_pid: int) -> list[WorkerSpec]:
    """The `count` workers' shares of the load and of its sessions, however they are started."""
    opts = load.replay
    spec = load.plan.spec
    total_tools = tool_workers(spec.tools.workers)[0] if spec.tools.mode == "execute" else None
    slots = opts.concurrency if opts.pattern == "closed" else opts.max_concurrency
    return [
        WorkerSpec(
            load=load,
            index=k,
            count=count,
            concurrency=share(opts.concurrency, count, k) if opts.concurrency else None,
            max_concurrency=(
                share(opts.max_concurrency, count, k) if opts.max_concurrency else None
            ),
            slots=slots,
            tool_workers=max(1, total_tools // count) if total_tools else None,
            parent_pid=parent_pid,
        )
        for k in range(count)
    ]


class PoolRecords:
    """The parent's account of `count` workers, however their messages come: it journals
    their records, keeps each one's requests in flight, and records those as failed with the
    reason when a worker is lost."""

    def __init__(self, writer: RunWriter, count: int) -> None:
        self.count = count
        self._writer = writer
        self._in_flight: list[dict[str, tuple[Any, ...]]] = [{} for _ in range(count)]
        self._outcomes: list[ReplayOutcome | None] = [None] * count
        self._seen: list[ReplayOutcome] = [ReplayOutcome() for _ in range(count)]
        self._ended: list[bool] = [False] * count
        self._ready: set[int] = set()
        self.health: list[dict[str, Any]] = []
        self.worker_errors: list[str] = []
        self._feed: LiveFeed = LiveStats(LiveBounds(0))  # until run() gets the run's feed

    @property
    def outcome(self) -> ReplayOutcome:
        """Every worker's outcome merged (what the parent saw, for one that died)."""
        parts = [o if o is not None else s for o, s in zip(self._outcomes, self._seen, strict=True)]
        return merge_outcomes(parts)

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind, k = msg[0], msg[1]
        if kind == "ready":
            self._ready.add(k)
        elif kind == "start":
            notice = msg[2]
            self._in_flight[k][notice[0]] = notice
        elif kind == "batch":
            self._journal(k, msg[2], msg[3], msg[4])
            if msg[5]:
                self._feed.sessions_ended(msg[5])
        elif kind == "done":
            self._outcomes[k] = msg[2]
            self.health.append(msg[3])
            self._end(k)
        elif kind == "failed":  # it crashed
            self._worker_failed(k, f"load worker {k} failed: {msg[2]}")
        elif kind == "orphaned":
            # It stopped itself, its parent gone (a Ray actor's raylet): it recorded its
            # requests in flight as cancelled, with the reason, before it said so.
            self._worker_failed(k, f"load worker {k} failed: {msg[2]}", self_stopped=True)

    def _journal(
        self, k: int, records: list[RequestRecord], steps: list[Any], tools: list[Any]
    ) -> None:
        writer = self._writer
        if records:
            writer.append(records)
            seen = self._seen[k]
            flights = self._in_flight[k]
            for record in records:
                flights.pop(record.request_id, None)
                _count(seen, record)
                self._feed.record(record)
        if steps:
            writer.append_rows("steps", steps)
        if tools:
            writer.append_rows("tools", tools)

    def _end(self, k: int) -> None:
        self._ended[k] = True
        self._in_flight[k].clear()

    def _worker_failed(self, k: int, reason: str, self_stopped: bool = False) -> None:
        """Record the worker's requests in flight as failed with the reason; its sessions end."""
        if self._ended[k]:
            return
        flights = sorted(self._in_flight[k].values(), key=lambda n: n[0])
        lost = [_failed_record(n, reason) for n in flights]
        if self_stopped and not lost:
            self.worker_errors.append(f"{reason}; it recorded its requests in flight as cancelled")
        else:
            self.worker_errors.append(
                f"{reason}; {len(lost)} requests in flight recorded as failed"
            )
        if lost:
            self._journal(k, lost, [], [])
        self._seen[k].aborted_reason = self._seen[k].aborted_reason or reason
        self._end(k)


class WorkerPool(PoolRecords):
    """`count` load workers replaying one plan; `outcome` is the merged outcome so far."""

    def __init__(self, load: LoadPlan, writer: RunWriter, count: int) -> None:
        super().__init__(writer, count)
        self.load = load
        ctx = mp.get_context("spawn")  # no fork of a parent with threads (telemetry, rich)
        self._shared = Shared(
            start_ns=ctx.RawValue("q", 0), stop=ctx.RawValue("b", 0), tickets=ctx.Value("q", 0)
        )
        self._specs = worker_specs(load, count, os.getpid())
        pipes = [ctx.Pipe(duplex=False) for _ in range(count)]
        self._conns: list[Connection | None] = [reader for reader, _ in pipes]
        self._writers: list[Connection] = [writer_end for _, writer_end in pipes]
        self._procs: list[SpawnProcess] = [
            ctx.Process(
                target=worker_main,
                args=(s, self._shared, self._writers[s.index]),
                name=f"harness-load-{s.index}",
            )
            for s in self._specs
        ]
        self._stop_asked = False

    def start(self) -> None:
        """Start the workers and wait until each is ready to send (before the idle baseline,
        so their start-up is not in it)."""
        # A terminal's Ctrl-C goes to the whole group: workers start with it blocked and
        # ignore it before they unblock it (the parent stops them itself).
        stops = {signal.SIGINT, signal.SIGTERM}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            for proc in self._procs:
                proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for writer_end in self._writers:
            writer_end.close()  # the worker's copy is the only one: its exit is an EOF here
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(k in self._ready or self._ended[k] for k in range(self.count)):
            self._pump(0.2)
            if time.monotonic() > deadline:
                raise HarnessError(f"load workers not ready after {READY_TIMEOUT_S:g} s")
        if not self._ready - {
            k for k in range(self.count) if self._ended[k] and k not in self._ready
        }:
            raise HarnessError("no load worker started: " + "; ".join(self.worker_errors))

    def run(self, feed: LiveFeed, signals: StopSignals) -> ReplayOutcome:
        """Release the workers at one instant and journal their records until all end; `feed`
        gets each record as it is journalled and the workers' session ends."""
        self._feed = feed
        clock = self.load.clock()
        self._shared.start_ns.value = clock.now_ns() + START_DELAY_NS
        stop_at: float | None = None
        with signals.replay(self.stop):
            while not all(self._ended):
                if self._stop_asked and not self._shared.stop.value:
                    self._shared.stop.value = 1
                if stop_at is None and self._stop_asked:
                    stop_at = time.monotonic() + STOP_GRACE_S
                if stop_at is not None and time.monotonic() > stop_at:
                    self._kill("did not stop within the grace period after a stop")
                self._pump(0.1)
        for proc in self._procs:
            proc.join(timeout=5)
        return self.outcome

    def stop(self) -> None:
        """Ask every worker to stop (from the stop-signal handler: it only sets a flag)."""
        self._stop_asked = True

    def close(self) -> None:
        """Make sure no worker outlives the run."""
        self._shared.stop.value = 1
        for proc in self._procs:
            if proc.pid is None:
                continue
            if proc.is_alive():
                proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        for conn in self._conns:
            if conn is not None:
                conn.close()

    def _pump(self, timeout_s: float) -> None:
        """Handle what the workers sent within `timeout_s`; a pipe at its end (the worker
        exited, or died mid-message) ends that worker."""
        live = [c for c in self._conns if c is not None]
        if not live:
            return
        for conn in wait(live, timeout=timeout_s):
            assert isinstance(conn, Connection)
            k = self._conns.index(conn)
            self._read(k, conn)

    def _read(self, k: int, conn: Connection) -> None:
        """One message from worker k, or its end."""
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            self._conns[k] = None
            conn.close()
            if not self._ended[k]:
                proc = self._procs[k]
                proc.join(timeout=5)
                self._worker_failed(k, f"load worker {k} exited with code {proc.exitcode}")
            return
        self._handle(msg)

    def _kill(self, why: str) -> None:
        for k, proc in enumerate(self._procs):
            if not self._ended[k] and proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
                conn, self._conns[k] = self._conns[k], None
                while conn is not None:  # what it sent before it was killed is the run's
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        conn.close()
                        break
                    self._handle(msg)
                self._worker_failed(k, f"load worker {k} {why}")


def _failed_record(notice: tuple[Any, ...], reason: str) -> RequestRecord:
    (rid, sid, step, api, prompt, output, scheduled, warmup, slot_wait, sent, parent) = notice
    return RequestRecord(
        request_id=rid,
        session_id=sid,
        step_index=step,
        api=api,
        prompt_tokens_expected=prompt,
        output_tokens_expected=output,
        scheduled_ns=scheduled,
        sent_ns=sent,
        warmup=warmup,
        slot_wait_ns=slot_wait,
        error=f"harness: {reason}",
        parent_session_id=parent,
    )


def _count(outcome: ReplayOutcome, record: RequestRecord) -> None:
    """What the parent can count of a worker from its records alone."""
    outcome.count_record(record)
    if record.sent_ns is not None and record.step_index == 0:
        outcome.sessions_started += 1


def merge_outcomes(parts: list[ReplayOutcome]) -> ReplayOutcome:
    """One outcome for the run from its workers' outcomes."""
    merged = ReplayOutcome()
    for part in parts:
        merged.requests_sent += part.requests_sent
        merged.requests_not_sent += part.requests_not_sent
        merged.requests_skipped_overlength += part.requests_skipped_overlength
        merged.requests_clipped += part.requests_clipped
        merged.sessions_started += part.sessions_started
        merged.sessions_failed += part.sessions_failed
        merged.subagents_started += part.subagents_started
        merged.subagents_without_parent += part.subagents_without_parent
        merged.subagents_not_started += part.subagents_not_started
        notes_room = MAX_SUBAGENT_NOTES - len(merged.subagent_notes)
        merged.subagent_notes.extend(part.subagent_notes[: max(0, notes_room)])
        merged.interrupted = merged.interrupted or part.interrupted
        merged.aborted_reason = merged.aborted_reason or part.aborted_reason
        room = MAX_SESSION_ERRORS - len(merged.session_errors)
        merged.session_errors.extend(part.session_errors[: max(0, room)])
        if part.first_send_ns is not None:
            first = merged.first_send_ns
            merged.first_send_ns = (
                part.first_send_ns if first is None else min(first, part.first_send_ns)
            )
        if part.last_done_ns is not None:
            merged.last_done_ns = max(merged.last_done_ns or 0, part.last_done_ns)
    return merged
