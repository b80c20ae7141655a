"""One load worker process: its own uvloop event loop replaying its shard of the run's
sessions on the run's clock, records sent to the parent in batches as they complete.

The parent owns stop signals (a worker ignores SIGINT and SIGTERM, which a terminal sends
to the whole process group) and tells workers to stop through a shared event; a worker
whose parent is gone stops by itself."""

from __future__ import annotations

import asyncio
import gc
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing import RawValue, Value
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any, Protocol

from harness.records import RequestRecord, StepRecord, ToolRecord
from harness.replay import Replayer, ReplayOutcome, error_text
from harness.routing import open_sender
from harness.run.health import LoopLagMonitor
from harness.run.load import LoadPlan, run_loop
from harness.run.prepare import chat_renderer, make_tools, open_token_space, sessions
from harness.tools.runner import ExecuteTools
from harness.workload.prompts import PromptBuilder

FLUSH_S = 0.02
"""How often a worker hands its finished records to the parent."""

FLUSH_RECORDS = 256
"""A batch this long goes at once, whatever the time."""

WATCH_S = 0.05
"""How often a worker checks for a stop from the parent (or the parent's exit)."""


@dataclass(frozen=True)
class WorkerSpec:
    """Worker `index` of `count`: its shares of the load and which sessions it owns."""

    load: LoadPlan
    index: int
    count: int
    concurrency: int | None
    """Closed-loop sessions this worker keeps going (its share of the run's)."""
    max_concurrency: int | None
    """Its share of the run's cap on requests in flight."""
    slots: int | None
    """The run's slots (closed-loop concurrency, else the in-flight cap): sessions are dealt
    out slot by slot, so each worker's share of sessions matches its share of slots."""
    tool_workers: int | None
    parent_pid: int
    parent_name: str = "the run's parent process"
    """What `parent_pid` is, in words: a Ray actor's parent is its node's raylet."""

    def owns(self, ordinal: int) -> bool:
        """Whether sessions of shard `ordinal` are this worker's: the index in the source of
        a session, or of the top session of its family (a sub-agent runs on its parent's
        worker, `PlannedSession.shard`)."""
        if self.slots:
            return (ordinal % self.slots) % self.count == self.index
        return ordinal % self.count == self.index


@dataclass(frozen=True)
class Shared:
    """What every worker of a run shares with the parent. The start instant and the stop
    flag are lock-free values: a process killed while reading them holds no lock, and the
    parent's stop-signal handler takes none."""

    start_ns: Any
    """The run clock's start instant; 0 until the parent releases the workers."""
    stop: Any
    """Non-zero once the parent says stop."""
    tickets: Synchronized[int]

    @classmethod
    def in_process(cls) -> Shared:
        """The values of a worker whose parent reaches it by calls, not shared memory (a Ray
        actor): its own start instant, stop flag and request counter."""
        return cls(start_ns=RawValue("q", 0), stop=RawValue("b", 0), tickets=Value("q", 0))


class Messages(Protocol):
    """Where a worker's messages to its parent go (a pipe's Outbox, an actor's queue)."""

    def put(self, message: tuple[Any, ...]) -> None:
        """Queue one message (never blocks)."""


class Outbox:
    """A worker's messages to the parent over its own pipe, sent by a thread so the event
    loop never blocks on a full pipe; a parent that is gone ends the sending, not the worker."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._send_all, daemon=True)
        self._thread.start()

    def put(self, message: tuple[Any, ...]) -> None:
        """Queue one message (never blocks)."""
        self._queue.put(message)

    def _send_all(self) -> None:
        while (message := self._queue.get()) is not None:
            try:
                self._conn.send(message)
            except OSError:  # the parent is gone: nobody to tell
                return

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is queued, then close the pipe."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._conn.close()


class SharedTickets:
    """Request numbers from one counter shared by the run's workers."""

    def __init__(self, counter: Synchronized[int], limit: int | None) -> None:
        self._counter = counter
        self._limit = limit

    def take(self) -> int | None:
        """The next request number, or None once `limit` are out."""
        with self._counter.get_lock():
            ticket = int(self._counter.value)
            if self._limit is not None and ticket >= self._limit:
                return None
            self._counter.value = ticket + 1
        return ticket


def start_notice(record: RequestRecord, now_ns: int) -> tuple[Any, ...]:
    """What the parent keeps of a request in flight, to record it should the worker die."""
    return (
        record.request_id,
        record.session_id,
        record.step_index,
        record.api,
        record.prompt_tokens_expected,
        record.output_tokens_expected,
        record.scheduled_ns,
        record.warmup,
        record.slot_wait_ns,
        now_ns,
        record.parent_session_id,
    )


def worker_main(spec: WorkerSpec, shared: Shared, conn: Connection) -> None:
    """Entry point of a worker process."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    messages = Outbox(conn)
    try:
        replay_shard(spec, shared, messages)
    except BaseException as err:  # the parent records it
        detail = traceback.format_exc(limit=3).strip().splitlines()[-1]
        messages.put(("failed", spec.index, f"{error_text(err)} ({detail})"))
        messages.close()
        os._exit(1)
    messages.close()


def _parent_gone(spec: WorkerSpec) -> bool:
    return os.getppid() != spec.parent_pid


def replay_shard(spec: WorkerSpec, shared: Shared, messages: Messages) -> None:
    """Replay the sessions `spec` owns on the run clock once `shared` gives the start
    instant, sending ready, start notices, record batches and done (or orphaned, when its
    parent went first) to `messages`."""
    load = spec.load
    clock = load.clock()
    space = open_token_space(load.tokenizer, load.client.api)
    records: list[RequestRecord] = []
    steps: list[StepRecord] = []
    tools_done: list[ToolRecord] = []
    sessions_ended = [0]  # since the last batch, for the parent's live progress

    def flush() -> None:
        if records or steps or tools_done or sessions_ended[0]:
            batch = ("batch", spec.index, records[:], steps[:], tools_done[:], sessions_ended[0])
            messages.put(batch)
            records.clear()
            steps.clear()
            tools_done.clear()
            sessions_ended[0] = 0

    def on_session_end() -> None:
        sessions_ended[0] += 1

    def on_record(record: RequestRecord) -> None:
        records.append(record)
        if len(records) >= FLUSH_RECORDS:
            flush()

    def on_start(record: RequestRecord) -> None:
        messages.put(("start", spec.index, start_notice(record, clock.now_ns())))

    opts = replace(load.replay, concurrency=spec.concurrency, max_concurrency=spec.max_concurrency)
    client_opts = replace(load.client, max_connections=spec.max_concurrency or 0)
    client = open_sender(client_opts, load.routing, clock.now_ns, spec.index)
    overhead = load.chat_overhead
    to_text = chat_renderer(space, overhead) if overhead is not None else None
    tools = make_tools(load.plan.spec, clock.now_ns, load.plan.seed, spec.tool_workers)
    replayer = Replayer(
        client,
        PromptBuilder(space, seed=load.plan.seed, salt=load.prompt_salt),
        opts,
        clock.now_ns,
        on_record,
        tools,
        api=client_opts.api,
        to_text=to_text,
        on_step=steps.append,
        on_tool=tools_done.append,
        tickets=SharedTickets(shared.tickets, None),
        owns=spec.owns,
        on_start=on_start,
        on_session_end=on_session_end,
    )
    monitor = LoopLagMonitor()

    async def main() -> ReplayOutcome:
        if isinstance(tools, ExecuteTools):
            await tools.start()
        try:
            async with client:
                messages.put(("ready", spec.index))
                while not shared.start_ns.value:  # before the clock matters: blocking is fine
                    if shared.stop.value or _parent_gone(spec):
                        return replayer.outcome
                    time.sleep(0.001)
                monitor.start()
                task = asyncio.ensure_future(
                    replayer.run(sessions(load.plan, space), start_ns=int(shared.start_ns.value))
                )
                watcher = asyncio.ensure_future(_watch(spec, shared, replayer, task, flush))
                try:
                    return await task
                finally:
                    watcher.cancel()
                    await monitor.stop()
        finally:
            if isinstance(tools, ExecuteTools):
                await tools.aclose()

    gc.collect()
    gc.freeze()
    try:
        outcome = run_loop(main())
    finally:
        flush()  # what finished is the parent's, however the loop ended
    if _parent_gone(spec):
        # Not an interruption: whoever still reads this (a Ray driver whose actor lost its
        # node) records the worker as lost, its requests in flight as failed.
        messages.put(("orphaned", spec.index, f"{spec.parent_name} exited"))
        return
    messages.put(("done", spec.index, outcome, monitor.health(spec.index).to_dict()))


async def _watch(
    spec: WorkerSpec,
    shared: Shared,
    replayer: Replayer,
    task: asyncio.Future[ReplayOutcome],
    flush: Callable[[], None],
) -> None:
    """Flush records every FLUSH_S; stop the replay when the parent says so or is gone."""
    ticks_per_watch = max(1, round(WATCH_S / FLUSH_S))
    tick = 0
    while not task.done():
        await asyncio.sleep(FLUSH_S)
        flush()
        tick += 1
        if tick % ticks_per_watch:
            continue
        if shared.stop.value:
            replayer.interrupt("interrupted by a stop signal")
            task.cancel()
            return
        if _parent_gone(spec):
            replayer.interrupt(f"{spec.parent_name} exited")
            task.cancel()
            return
