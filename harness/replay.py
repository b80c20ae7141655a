"""Replay: arrivals (trace timestamps with a time scale, Poisson, constant), closed-loop
concurrency and the agent session loop. Sessions run their steps in order: the request with
the session's growing context, then the step's tool calls (through a ToolRunner: replayed
waits or real CPU kernels), then the next step.

A sub-agent session (one naming its `parent_id`) is no arrival of its own: its parent starts
it. One with a `parent_step` starts when the request of that step of its parent has
completed, in the tool phase where the parent's tool call (Claude Code's Task tool) started
it: after the delay the recording puts between that request's end and the spawn
(`harness.workload.subagents.spawn_delay_ms`, 0 where untimed). One without starts
`parent_offset_ms` after its parent's start on the run clock (scaled by the time scale, as
other trace times; with the trace's timing replaced by a rate or a concurrency, with its
parent, as steps' offsets are dropped then). The parent's wait on it stays its recorded
tool wait. A sub-agent runs on its parent's load worker; one whose parent is not in the
run (not in the source, or further back in it than the lookback) starts at its own
arrival time and is counted, and one whose parent ended before reaching its step is
counted as not started: never dropped silently."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Container, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from harness.client import CANCELLED, Completion
from harness.errors import ConfigError
from harness.records import RequestRecord, StepRecord, ToolContext, ToolRecord, sleep_until
from harness.units import NS_PER_S, ms_to_ns
from harness.workload.model import Session, Step, ToolCall
from harness.workload.prompts import PromptBuilder, SessionPrompts, prompt_problem
from harness.workload.subagents import Recent, spawn_delay_ms

Pattern = Literal["trace", "poisson", "constant", "closed"]
OverlengthPolicy = Literal["error", "clip", "skip"]

_UNREACHABLE_IN_A_ROW = 8
"""Requests in a row whose sender said the server is gone (Completion.connection_lost: for
several replicas, every one of them) before the run stops."""
MAX_SESSION_ERRORS = 20
"""How many session-ending errors a run keeps verbatim (all are counted)."""
MAX_SUBAGENT_NOTES = 20
"""How many notes on sub-agents not started where their parent started them a run keeps
verbatim (all are counted)."""


def error_text(err: BaseException) -> str:
    """One line naming an error: its class and message."""
    return f"{type(err).__name__}: {err}".strip()


class RequestSender(Protocol):
    """What replay needs from a client."""

    async def send(self, record: RequestRecord, prompt: list[int] | str) -> Completion: ...


class Tickets(Protocol):
    """Numbers requests in the order they go out (warm-up is the first ones sent), None
    past a limit; one counter is shared by every load worker of a run."""

    def take(self) -> int | None: ...


class LocalTickets:
    """Send-order numbers for a replay in one process."""

    def __init__(self, limit: int | None) -> None:
        self._next = 0
        self._limit = limit

    def take(self) -> int | None:
        """The next request number, or None once `limit` are out."""
        if self._limit is not None and self._next >= self._limit:
            return None
        ticket = self._next
        self._next += 1
        return ticket


def owns_all(_: int) -> bool:
    """A replay in one process runs every session."""
    return True


@dataclass(frozen=True)
class PlannedSession:
    """A session with its place in the run's plan: its index in the source, the run-wide
    number of its first request (request ids count on from it) and how many of its steps
    the request budget leaves it. `root` is the index of the top session of its family (its
    own unless it is a sub-agent whose parent is in the run): a family runs on one load
    worker. `parent_in_run` says a sub-agent's parent is in the run (its parent starts it)."""

    ordinal: int
    first_request: int
    requests: int
    session: Session
    root: int = -1
    parent_in_run: bool = False

    @property
    def shard(self) -> int:
        """The index that picks the load worker: its family's top session's."""
        return self.root if self.root >= 0 else self.ordinal


def plan_sessions(
    sessions: Iterable[Session], max_requests: int | None
) -> Iterator[PlannedSession]:
    """The sessions in source order with the request budget dealt out session by session
    (as `preflight` counts it), so which requests a run sends and their ids are fixed before
    it starts, whatever the timing and however many workers share it; each sub-agent with
    its parent among the recent sessions before it is tied to its parent's family."""
    first = 0
    roots: Recent[str, int] = Recent()
    for ordinal, session in enumerate(sessions):
        if max_requests is not None and first >= max_requests:
            return
        steps = len(session.steps)
        allowed = steps if max_requests is None else min(steps, max_requests - first)
        parent_root = roots.get(session.parent_id)
        root = ordinal if parent_root is None else parent_root
        roots.add(session.session_id, root)
        yield PlannedSession(ordinal, first, allowed, session, root, parent_root is not None)
        first += steps


class ToolRunner(Protocol):
    """Runs one tool call and reports it; never raises for a failing tool."""

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolRecord: ...


@dataclass(frozen=True)
class ReplayOptions:
    """How sessions arrive and what bounds the run."""

    pattern: Pattern = "trace"
    time_scale: float = 1.0
    rate_per_s: float | None = None
    concurrency: int | None = None
    max_concurrency: int | None = None
    max_requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int = 0
    seed: int = 0
    max_model_len: int | None = None
    overlength: OverlengthPolicy = "error"
    on_tool_failure: Literal["continue", "stop"] = "continue"


@dataclass
class ReplayOutcome:
    """How the replay ended."""

    requests_sent: int = 0
    requests_not_sent: int = 0
    """Requests the harness failed to build or send (recorded with their error)."""
    requests_skipped_overlength: int = 0
    requests_clipped: int = 0
    interrupted: bool = False
    aborted_reason: str | None = None
    first_send_ns: int | None = None
    last_done_ns: int | None = None
    sessions_started: int = 0
    sessions_failed: int = 0
    session_errors: list[str] = field(default_factory=list)
    """The first MAX_SESSION_ERRORS errors that ended a session (the harness's own failures)."""
    subagents_started: int = 0
    """Sub-agent sessions started by their parents (at a step, or at an offset)."""
    subagents_without_parent: int = 0
    """Sub-agent sessions whose parent is not in the run: started at their own arrival."""
    subagents_not_started: int = 0
    """Sub-agent sessions whose parent ended before the step that starts them."""
    subagent_notes: list[str] = field(default_factory=list)
    """The first MAX_SUBAGENT_NOTES sub-agents not started where their parent started them,
    each with why."""

    def count_record(self, record: RequestRecord) -> None:
        """Count a recorded request: sent (with the first send and last completion) or not."""
        if record.sent_ns is None:
            self.requests_not_sent += 1
            return
        self.requests_sent += 1
        first = self.first_send_ns
        self.first_send_ns = record.sent_ns if first is None else min(first, record.sent_ns)
        if record.done_ns is not None:
            self.last_done_ns = max(self.last_done_ns or 0, record.done_ns)

    def note_session_error(self, session_id: str, err: BaseException) -> None:
        """Count a session ended by an error of the harness, keeping the first few messages."""
        self.sessions_failed += 1
        if len(self.session_errors) < MAX_SESSION_ERRORS:
            self.session_errors.append(f"session {session_id!r}: {error_text(err)}")

    def note_subagent(self, session: Session, started: bool) -> None:
        """Count a sub-agent whose parent could not start it: without its parent in the run
        (`started` at its own arrival) or after its parent ended short of its step."""
        if started:
            self.subagents_without_parent += 1
            why = "its parent is not in the run; started at its own arrival time"
        else:
            self.subagents_not_started += 1
            why = f"its parent ended before step {session.parent_step}; not started"
        if len(self.subagent_notes) < MAX_SUBAGENT_NOTES:
            self.subagent_notes.append(
                f"sub-agent {session.session_id!r} of {session.parent_id!r}: {why}"
            )


def fits(prompt_tokens: int, output_tokens: int, max_model_len: int | None) -> bool:
    """Whether a request fits the server's context window."""
    return max_model_len is None or prompt_tokens + output_tokens <= max_model_len


def clipped_lengths(prompt_tokens: int, output_tokens: int, max_model_len: int) -> tuple[int, int]:
    """Prompt and output lengths clipped to fit the context window (prompt first)."""
    output = min(output_tokens, max_model_len - 1)
    return min(prompt_tokens, max_model_len - output), output


def _check_tool(
    session: Session, index: int, t: int, call: ToolCall, known: Container[str]
) -> None:
    """ConfigError naming the session and step for an unknown kind or impossible duration/size."""
    where = f"session {session.session_id!r} step {index} tool {t}"
    if call.kind not in known:
        raise ConfigError(f"{where}: unknown tool kind {call.kind!r}")
    if not math.isfinite(call.duration_ms) or call.duration_ms < 0:
        raise ConfigError(
            f"{where}: duration_ms must be a finite number ≥ 0, not {call.duration_ms}"
        )
    if call.size is not None and (not math.isfinite(call.size) or call.size < 0):
        raise ConfigError(f"{where}: size must be a finite number ≥ 0, not {call.size}")


def _check_parent(session: Session, parent_steps: int | None) -> None:
    """ConfigError naming the sub-agent for a parent it cannot have: itself, or one with no
    step `parent_step` (where the parent is among the sessions before it)."""
    if session.parent_id is None:
        return
    where = f"session {session.session_id!r}"
    if session.parent_id == session.session_id:
        raise ConfigError(f"{where}: parent_id names the session itself")
    step = session.parent_step
    if parent_steps is not None and step is not None and step >= parent_steps:
        raise ConfigError(
            f"{where}: parent_step {step}, but its parent {session.parent_id!r} has "
            f"{parent_steps} steps (0 to {parent_steps - 1})"
        )


def preflight(
    sessions: Iterable[Session], opts: ReplayOptions, tool_kinds: Container[str] | None = None
) -> dict[str, int]:
    """Count what a run will send before it starts: sessions, requests (after
    `max_requests`), requests that exceed the context window, tool calls and the longest
    request (prompt + output tokens), the output tokens asked for and the span of the
    sessions' start times (for the expected stream rate). Every step's
    prompt is checked to be buildable (ConfigError naming session and step), and every
    sub-agent's parent step to exist where its parent came before it; with `tool_kinds`,
    every tool call is checked (kind known, duration and size possible)."""
    n_sessions = n_requests = over = n_tools = longest = n_output = 0
    first_ms = last_ms = 0.0
    steps_of: Recent[str, int] = Recent()
    for session in sessions:
        if opts.max_requests is not None and n_requests >= opts.max_requests:
            break
        _check_parent(session, steps_of.get(session.parent_id))
        steps_of.add(session.session_id, len(session.steps))
        if n_sessions == 0:
            first_ms = last_ms = session.start_ms
        first_ms, last_ms = min(first_ms, session.start_ms), max(last_ms, session.start_ms)
        n_sessions += 1
        for index, (prompt, step) in enumerate(
            zip(session.input_lengths(), session.steps, strict=True)
        ):
            if opts.max_requests is not None and n_requests >= opts.max_requests:
                break
            n_requests += 1
            n_output += step.output_tokens
            problem = prompt_problem(step)
            if problem is not None:
                raise ConfigError(f"session {session.session_id!r} step {index}: {problem}")
            longest = max(longest, prompt + step.output_tokens)
            if not fits(prompt, step.output_tokens, opts.max_model_len):
                over += 1
            for t, call in enumerate(step.tools):
                n_tools += 1
                if tool_kinds is not None:
                    _check_tool(session, index, t, call, tool_kinds)
    return {
        "sessions": n_sessions,
        "requests": n_requests,
        "overlength_requests": over,
        "tool_calls": n_tools,
        "max_request_tokens": longest,
        "output_tokens": n_output,
        "start_span_ms": round(last_ms - first_ms),
    }


def arrival_offsets_ns(opts: ReplayOptions) -> Iterator[int]:
    """Session start offsets for rate-driven patterns (Poisson or constant)."""
    assert opts.rate_per_s is not None
    if opts.pattern == "constant":
        gap = NS_PER_S / opts.rate_per_s
        for i in itertools.count():
            yield round(i * gap)
    rng = np.random.default_rng(opts.seed)
    t = 0.0
    while True:
        yield round(t)
        t += rng.exponential(NS_PER_S / opts.rate_per_s)


AT_START = -1
"""The place of a sub-agent started at an offset from its parent's start (no `parent_step`)."""


@dataclass
class _Progress:
    """How far a session has got, for the sub-agents it starts: when it started (None while
    it waits to), the last step whose request completed, whether it ended, the sub-agents
    waiting for a step of it (AT_START: for its start) and how many each step started."""

    planned: PlannedSession
    start_ns: int | None = None
    reached: int = AT_START
    ended: bool = False
    waiting: dict[int, list[PlannedSession]] = field(default_factory=dict)
    spawned: dict[int, int] = field(default_factory=dict)


class Replayer:
    """Drives sessions against a sender under one run clock."""

    def __init__(
        self,
        sender: RequestSender,
        prompts: PromptBuilder,
        opts: ReplayOptions,
        now_ns: Callable[[], int],
        on_record: Callable[[RequestRecord], None],
        tools: ToolRunner,
        api: str = "completions",
        to_text: Callable[[list[int]], str] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        on_tool: Callable[[ToolRecord], None] | None = None,
        tickets: Tickets | None = None,
        owns: Callable[[int], bool] = owns_all,
        on_start: Callable[[RequestRecord], None] | None = None,
        on_session_end: Callable[[], None] | None = None,
    ) -> None:
        """`tickets` and `owns` shard a run over load workers: the run's shared send-order
        numbers (for warm-up) and which sessions (by `PlannedSession.shard`: the index in the
        source of a session, or of its family's top session) this replay runs. `on_start`
        sees each request just before it is sent; `on_session_end` hears of each session that
        ran its last step or stopped (for live progress)."""
        self._sender = sender
        self._prompts = prompts
        self._opts = opts
        self._now_ns = now_ns
        self._on_record = on_record
        self._tools = tools
        self._on_step = on_step or (lambda _: None)
        self._on_tool = on_tool or (lambda _: None)
        self._api = api
        self._to_text = to_text
        self._tickets = tickets if tickets is not None else LocalTickets(None)
        self._owns = owns
        self._on_start = on_start
        self._on_session_end = on_session_end or (lambda: None)
        self._sem = asyncio.Semaphore(opts.max_concurrency) if opts.max_concurrency else None
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._progress: Recent[str, _Progress] = Recent()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unreachable_in_a_row = 0
        self._deadline_ns: int | None = None
        self.outcome = ReplayOutcome()
        self._cancel_reason: str | None = None
        """Why `interrupt` cancelled the requests in flight (their records say so)."""

    def interrupt(self, reason: str) -> None:
        """Stop now: no new request, every session in flight cancelled (its sent requests
        still recorded), the outcome marked interrupted whatever the cancellation meets."""
        self.outcome.interrupted = True
        self._cancel_reason = reason
        self.stop(reason)
        for task in list(self._running):
            task.cancel()

    def stop(self, reason: str | None = None) -> None:
        """Stop sending new requests (in-flight ones finish or are cancelled by the caller)."""
        if reason and self.outcome.aborted_reason is None:
            self.outcome.aborted_reason = reason
        self._stop.set()

    async def _sleep_until(self, t_ns: int) -> bool:
        """Sleep until `t_ns` on the run clock (never waking before it); False if the run
        stopped meanwhile.

        A `t_ns` past the run's deadline waits only until the deadline, then stops the run."""
        past_deadline = self._deadline_ns is not None and t_ns >= self._deadline_ns
        if past_deadline:
            assert self._deadline_ns is not None
            t_ns = self._deadline_ns
        await sleep_until(self._now_ns, t_ns, self._stop)
        if past_deadline:
            self._stop.set()
        return not self._stopped()

    def _stopped(self) -> bool:
        if self._deadline_ns is not None and self._now_ns() >= self._deadline_ns:
            self._stop.set()
        return self._stop.is_set()

    async def _run_tools(
        self, session_id: str, step_index: int, tools: tuple[ToolCall, ...]
    ) -> list[ToolRecord]:
        """Run a step's tool calls: calls sharing a parallel_group run together, others in
        order. Records are handed on as each batch (one call, or one parallel group) ends."""
        groups: dict[int, list[tuple[int, ToolCall]]] = {}
        order: list[list[tuple[int, ToolCall]]] = []
        for i, call in enumerate(tools):
            if call.parallel_group is None:
                order.append([(i, call)])
            elif call.parallel_group in groups:
                groups[call.parallel_group].append((i, call))
            else:
                groups[call.parallel_group] = [(i, call)]
                order.append(groups[call.parallel_group])
        records: list[ToolRecord] = []
        for batch in order:
            done = await asyncio.gather(
                *(
                    self._tools.run(call, ToolContext(session_id, step_index, i, self._opts.seed))
                    for i, call in batch
                )
            )
            for rec in done:
                self._on_tool(rec)
            records.extend(done)
        return records

    def _note_result(self, record: RequestRecord, completion: Completion) -> None:
        if completion.connection_lost:
            self._unreachable_in_a_row += 1
            if self._unreachable_in_a_row >= _UNREACHABLE_IN_A_ROW:
                self.stop(f"server unreachable: {record.error}")
        elif record.error is None:
            self._unreachable_in_a_row = 0

    async def _step(
        self,
        planned: PlannedSession,
        prompts: SessionPrompts,
        index: int,
        step: Step,
        due_ns: int,
    ) -> RequestRecord | None:
        """Run one step's request; its record, or None when it was not sent and the session
        should stop (run stopped, request budget spent, over the context window)."""
        session = planned.session
        if index >= planned.requests or not await self._sleep_until(due_ns):
            return None
        order = self._tickets.take()
        if index == 0:
            self.outcome.sessions_started += 1
        expected_prompt = prompts.expected_next(step)
        output_len = step.output_tokens
        clip_to: int | None = None
        if not fits(expected_prompt, output_len, self._opts.max_model_len):
            assert self._opts.max_model_len is not None
            if self._opts.overlength == "skip":
                # Context only grows, so every later step of the session is too long as well.
                self.outcome.requests_skipped_overlength += planned.requests - index
                return None
            clip_to, output_len = clipped_lengths(
                expected_prompt, output_len, self._opts.max_model_len
            )
            self.outcome.requests_clipped += 1
        record = RequestRecord(
            request_id=f"r{planned.first_request + index:07d}",
            session_id=session.session_id,
            step_index=index,
            api=self._api,
            prompt_tokens_expected=clip_to if clip_to is not None else expected_prompt,
            output_tokens_expected=output_len,
            scheduled_ns=due_ns,
            warmup=order is not None and order < self._opts.warmup_requests,
            parent_session_id=session.parent_id,
        )
        completion = Completion(None)
        harness_error: Exception | None = None
        try:
            if self._sem is not None:
                queued_ns = self._now_ns()
                await self._sem.acquire()
                record.slot_wait_ns = self._now_ns() - queued_ns
            try:
                if self._stopped():
                    return None  # stopped while queued for a concurrency slot: never sent
                prompt_ids = prompts.next_prompt(step, clip_to)
                if len(prompt_ids) != record.prompt_tokens_expected:
                    raise RuntimeError(
                        f"prompt of {len(prompt_ids)} tokens built where "
                        f"{record.prompt_tokens_expected} were expected"
                    )
                prompt: list[int] | str = prompt_ids
                if self._to_text is not None:
                    prompt = self._to_text(prompt_ids)
                if self._on_start is not None:
                    self._on_start(record)
                completion = await self._sender.send(record, prompt)
            finally:
                if self._sem is not None:
                    self._sem.release()
        except Exception as err:
            # The harness failed to build or send this request: a failed row, never a loss.
            harness_error = err
            record.error = f"harness: {error_text(err)}"
        finally:
            # Only requests that were sent (or that the harness failed) are records; one still
            # queued when the run stopped or was cancelled never reached the server.
            if record.sent_ns is not None or harness_error is not None:
                if record.error == CANCELLED and self._cancel_reason is not None:
                    record.error = f"{CANCELLED}: {self._cancel_reason}"
                self.outcome.count_record(record)
                self._on_record(record)
        if harness_error is not None:
            raise harness_error
        self._note_result(record, completion)
        # Text prompts can't carry generated ids exactly: their context grows by fresh words.
        ids = completion.output_ids if self._to_text is None else None
        prompts.add_output(ids, output_len)
        return record

    async def run_session(self, planned: PlannedSession, start_ns: int) -> None:
        """Run one session's planned steps in order from `start_ns`, recording each step and
        starting the sub-agents that wait on its steps; an error of the harness ends the
        session as failed (counted and kept in the outcome), never the run, and never
        silently. Its index in the source seeds its prompts."""
        progress = self._progress.get(planned.session.session_id)
        if progress is None or progress.planned is not planned:
            progress = self._track(planned)
        progress.start_ns = start_ns
        for child in progress.waiting.pop(AT_START, ()):
            self._start_child(progress, child)
        try:
            await self._session_steps(planned, start_ns, progress)
        except Exception as err:
            self.outcome.note_session_error(planned.session.session_id, err)
        finally:
            self._end(progress)
        self._on_session_end()

    def _track(self, planned: PlannedSession) -> _Progress:
        """Follow a session this replay runs (or holds for its parent), for its sub-agents."""
        progress = _Progress(planned)
        self._progress.add(planned.session.session_id, progress)
        return progress

    def _end(self, progress: _Progress) -> None:
        """A session is over (or will never start): the sub-agents still waiting on it are
        counted as not started, and so are theirs; unless the run stopped, which starts no
        session, theirs as others."""
        progress.ended = True
        waiting = [child for children in progress.waiting.values() for child in children]
        progress.waiting.clear()
        for child in waiting:
            if not self._stop.is_set():
                self.outcome.note_subagent(child.session, started=False)
            held = self._progress.get(child.session.session_id)
            if held is not None and held.planned is child:
                self._end(held)

    async def _session_steps(
        self, planned: PlannedSession, start_ns: int, progress: _Progress
    ) -> None:
        session = planned.session
        prompts = self._prompts.session(planned.ordinal)
        ready_ns = start_ns
        for index, step in enumerate(session.steps):
            step_ready_ns = ready_ns
            if step.think_ms > 0:
                if not await self._sleep_until(ready_ns + ms_to_ns(step.think_ms)):
                    return
                ready_ns = self._now_ns()
            due_ns = ready_ns
            if step.offset_ms is not None and self._opts.pattern == "trace":
                due_ns = max(ready_ns, start_ns + ms_to_ns(step.offset_ms * self._opts.time_scale))
            record = await self._step(planned, prompts, index, step, due_ns)
            if record is None:
                return
            progress.reached = index
            for child in progress.waiting.pop(index, ()):
                self._start_child(progress, child)
            # Waiting for the step's recorded timestamp is the recording's time, not the system's.
            ready_ns = max(ready_ns, min(due_ns, record.sent_ns or due_ns))
            srec = StepRecord(
                session_id=session.session_id,
                step_index=index,
                request_id=record.request_id,
                ready_ns=step_ready_ns,
                end_ns=self._now_ns(),
                sent_ns=record.sent_ns,
                done_ns=record.done_ns,
                think_ns=ready_ns - step_ready_ns,
                request_ok=record.ok,
                slot_wait_ns=record.slot_wait_ns,
            )
            try:
                if step.tools:
                    srec.tools_start_ns = self._now_ns()
                    tool_records = await self._run_tools(session.session_id, index, step.tools)
                    srec.tools_end_ns = self._now_ns()
                    srec.tool_calls = len(tool_records)
                    srec.tool_failures = sum(1 for t in tool_records if t.status != "ok")
            finally:
                srec.end_ns = self._now_ns()
                srec.subagents_started = progress.spawned.get(index, 0)
                self._on_step(srec)
            if srec.tool_failures and self._opts.on_tool_failure == "stop":
                return
            ready_ns = srec.end_ns

    def _adopt(self, child: PlannedSession) -> bool:
        """Hand a sub-agent to its parent: started now if the parent has passed its step
        (or, by offset, has started), held until it gets there, counted as not started if
        it ended short of it. False where its parent is not followed here."""
        session = child.session
        parent = self._progress.get(session.parent_id)
        if parent is None:
            return False
        held = self._track(child)
        step = AT_START if session.parent_step is None else session.parent_step
        if parent.reached >= step and (step != AT_START or parent.start_ns is not None):
            self._start_child(parent, child)
        elif parent.ended:
            self.outcome.note_subagent(session, started=False)
            self._end(held)
        else:
            parent.waiting.setdefault(step, []).append(child)
        return True

    def _start_child(self, parent: _Progress, child: PlannedSession) -> None:
        """Start a sub-agent where its parent starts it: `spawn_delay_ms` after its step's
        request ended (from now: the parent is there, or has passed it), else its offset
        from the parent's start (trace timing only; with its parent otherwise)."""
        session = child.session
        now = self._now_ns()
        if session.parent_step is not None:
            at = now + ms_to_ns(spawn_delay_ms(parent.planned.session, session))
            parent.spawned[session.parent_step] = parent.spawned.get(session.parent_step, 0) + 1
        else:
            at = parent.start_ns if parent.start_ns is not None else now
            if self._opts.pattern == "trace":
                offset_ms = session.parent_offset_ms
                if offset_ms is None:
                    offset_ms = max(0.0, session.start_ms - parent.planned.session.start_ms)
                at += ms_to_ns(offset_ms * self._opts.time_scale)
        self._launch(self._run_from(child, max(now, at)))

    async def _run_from(self, planned: PlannedSession, at_ns: int) -> None:
        """Run a sub-agent from `at_ns`, once the run clock gets there (not if the run stops
        first)."""
        if await self._sleep_until(at_ns):
            self.outcome.subagents_started += 1
            await self.run_session(planned, at_ns)
            return
        progress = self._progress.get(planned.session.session_id)
        if progress is not None and progress.planned is planned:
            self._end(progress)

    def _launch(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of this replay (awaited by `run`, cancelled by `interrupt`)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _arrives(self, p: PlannedSession, start_ns: int) -> None:
        """Start a session at its own arrival (a sub-agent there is one without its parent)."""
        if p.session.parent_id is not None:
            self.outcome.note_subagent(p.session, started=True)
        self._track(p)
        self._launch(self.run_session(p, start_ns))

    async def run(self, sessions: Iterable[Session], start_ns: int | None = None) -> ReplayOutcome:
        """Replay the sessions this replay owns under the options, from `start_ns` on the run
        clock (default now; every load worker of a run gets the same); returns when all are
        done or stopped, the sub-agents they started included."""
        start = self._now_ns() if start_ns is None else start_ns
        if self._opts.duration_s is not None:
            self._deadline_ns = start + round(self._opts.duration_s * NS_PER_S)
        try:
            planned = plan_sessions(sessions, self._opts.max_requests)
            if self._opts.pattern == "closed":
                await self._closed_loop(p for p in planned if self._owns(p.shard))
            else:
                await self._open_loop(planned, start)
            while self._tasks:
                await asyncio.gather(*list(self._tasks))
        except asyncio.CancelledError:
            self.outcome.interrupted = True
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return self.outcome

    async def _open_loop(self, planned: Iterable[PlannedSession], start: int) -> None:
        rate_offsets = (
            arrival_offsets_ns(self._opts)
            if self._opts.pattern in ("poisson", "constant")
            else None
        )
        first_ms: float | None = None
        for p in planned:
            if p.parent_in_run:
                # No arrival of its own: its parent starts it (on this worker, if it is ours).
                if self._owns(p.shard) and not self._adopt(p):
                    self._arrives(p, self._now_ns())
                continue
            # Every session's arrival is decided, owned or not: one schedule for the run.
            if rate_offsets is not None:
                offset = next(rate_offsets)
            else:
                first_ms = p.session.start_ms if first_ms is None else first_ms
                offset = ms_to_ns((p.session.start_ms - first_ms) * self._opts.time_scale)
            if not self._owns(p.shard):
                continue
            if not await self._sleep_until(start + offset):
                break
            self._arrives(p, start + offset)

    async def _closed_loop(self, planned: Iterator[PlannedSession]) -> None:
        """`concurrency` sessions back to back, each starting as a place frees up; a
        sub-agent runs beside its parent, in its parent's place, not in one of its own."""
        assert self._opts.concurrency is not None
        places = asyncio.Semaphore(self._opts.concurrency)

        async def in_place(p: PlannedSession) -> None:
            try:
                await self.run_session(p, self._now_ns())
            finally:
                places.release()

        for p in planned:
            if p.parent_in_run and self._adopt(p):
                continue
            await places.acquire()
            if self._stopped():
                places.release()
                return
            if p.session.parent_id is not None:
                self.outcome.note_subagent(p.session, started=True)
            self._track(p)
            self._launch(in_place(p))
