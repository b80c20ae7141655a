"""Load generation: the replay of a run's sessions against the server, on uvloop, with its
records handed to the run's journals as they complete."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import uvloop

from harness.client import Client, ClientOptions
from harness.records import RequestRecord, RunClock, StepRecord, ToolRecord
from harness.replay import Replayer, ReplayOptions, ReplayOutcome
from harness.results import RunWriter
from harness.routing import Router, RoutingPlan, open_sender
from harness.run.health import LoopLagMonitor
from harness.run.live import LiveFeed
from harness.run.plan import RunPlan
from harness.run.prepare import chat_renderer, make_tools, sessions
from harness.run.stop_signals import StopSignals
from harness.tools.runner import ExecuteTools, ReplayTools
from harness.workload.prompts import PromptBuilder
from harness.workload.tokenizer import TokenSpace

T = TypeVar("T")


@dataclass(frozen=True)
class LoadPlan:
    """What load generation needs, all of it picklable for a worker process."""

    plan: RunPlan
    replay: ReplayOptions
    client: ClientOptions
    tokenizer: str
    prompt_salt: int
    chat_overhead: int | None
    """Tokens the chat template adds (chat API only), measured once on the server."""
    anchor_perf_ns: int
    """The run clock's zero on the host's monotonic clock: one clock for every process."""
    routing: RoutingPlan | None = None
    """Several replicas: how each worker routes its requests; None: one server."""

    def clock(self) -> RunClock:
        """The run's clock, as every process of the run reads it."""
        return RunClock(anchor_perf_ns=self.anchor_perf_ns)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _replay(
    replayer: Replayer,
    load: LoadPlan,
    space: TokenSpace,
    client: Client | Router,
    tools: ReplayTools | ExecuteTools,
    signals: StopSignals,
    monitor: LoopLagMonitor,
) -> ReplayOutcome:
    if isinstance(tools, ExecuteTools):
        await tools.start()  # workers up before the clock matters
    try:
        async with client, monitor:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(replayer.run(sessions(load.plan, space)))

            def stop() -> None:
                replayer.interrupt("interrupted by a stop signal")
                task.cancel()

            def stop_soon() -> None:
                loop.call_soon_threadsafe(stop)

            with signals.replay(stop_soon):
                return await task
    finally:
        if isinstance(tools, ExecuteTools):
            await tools.aclose()


class LoadGenerator:
    """Replays the plan's sessions in this process; `outcome` is how far it got, also when
    it was interrupted or crashed. The same face as the multi-process WorkerPool."""

    def __init__(self, load: LoadPlan, space: TokenSpace, writer: RunWriter) -> None:
        self.load = load
        self._space = space
        self._writer = writer
        self._replayer: Replayer | None = None
        self._monitor = LoopLagMonitor()
        self.worker_errors: list[str] = []

    @property
    def health(self) -> list[dict[str, Any]]:
        """The client's own health over the replay (one worker: this process)."""
        return [self._monitor.health(0).to_dict()] if self._replayer is not None else []

    def start(self) -> None:
        """Nothing to start: the replay runs in this process."""

    def close(self) -> None:
        """Nothing to stop: the replay ran in this process."""

    @property
    def outcome(self) -> ReplayOutcome:
        """How the replay ended (or stands, if it did not end)."""
        return self._replayer.outcome if self._replayer is not None else ReplayOutcome()

    def run(self, feed: LiveFeed, signals: StopSignals) -> ReplayOutcome:
        """Replay to the end; `feed` gets each request's record as it is journalled."""
        load, writer = self.load, self._writer
        clock = load.clock()

        def on_record(record: RequestRecord) -> None:
            writer.append([record])
            feed.record(record)

        def on_step(record: StepRecord) -> None:
            writer.append_rows("steps", [record])

        def on_tool(record: ToolRecord) -> None:
            writer.append_rows("tools", [record])

        client = open_sender(load.client, load.routing, clock.now_ns)
        overhead = load.chat_overhead
        to_text = chat_renderer(self._space, overhead) if overhead is not None else None
        tools = make_tools(load.plan.spec, clock.now_ns, load.plan.seed)
        self._replayer = replayer = Replayer(
            client,
            PromptBuilder(self._space, seed=load.plan.seed, salt=load.prompt_salt),
            load.replay,
            clock.now_ns,
            on_record,
            tools,
            api=load.client.api,
            to_text=to_text,
            on_step=on_step,
            on_tool=on_tool,
            on_session_end=feed.sessions_ended,
        )
        gc.collect()
        gc.freeze()  # as vllm bench does: no collector pauses over long-lived setup
        try:
            return run_loop(
                _replay(replayer, load, self._space, client, tools, signals, self._monitor)
            )
        finally:
            gc.unfreeze()
