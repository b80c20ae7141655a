"""Replay scheduling: arrivals, concurrency, limits, agent loops, overlength, stop and abort.

These are unit tests of the scheduling logic. `RecordingSender` implements the
`RequestSender` protocol the way a client fills a record (timestamps from the replay's
clock, usage counts), without any server behind it; it only records when it was called.
Timings use the real run clock and small durations; lower bounds are tight (sleeps never
end early), upper bounds are wide enough for a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import uvloop

from harness.client import Completion
from harness.errors import ConfigError
from harness.records import RequestRecord, RunClock, StepRecord, ToolContext, ToolRecord
from harness.replay import (
    Replayer,
    ReplayOptions,
    ReplayOutcome,
    arrival_offsets_ns,
    clipped_lengths,
    fits,
    plan_sessions,
    preflight,
)
from harness.tools.runner import ReplayTools
from harness.workload.model import Session, Step, ToolCall
from harness.workload.prompts import PromptBuilder
from harness.workload.tokenizer import synthetic_token_space

MS = 1_000_000  # ns per ms
EARLY_NS = 2 * MS  # how early a timer may fire relative to the run clock
SLACK_NS = 150 * MS  # scheduling slack on a busy machine


@dataclass
class Call:
    record: RequestRecord
    prompt: list[int] | str
    start_ns: int
    end_ns: int | None = None


class RecordingSender:
    """A `RequestSender` for scheduling tests: waits `delay_s`, then fills the record as the
    real client would (200, usage counts, timestamps on the replay's clock) or sets the
    error `error_for(call_index)` returns (a ClientConnectorError's text as a lost connection,
    as the real client tells it). Records each call and the peak in flight."""

    def __init__(
        self,
        now_ns: Callable[[], int],
        delay_s: float = 0.0,
        error_for: Callable[[int], str | None] | None = None,
        return_ids: bool = False,
    ) -> None:
        self._now_ns = now_ns
        self.delay_s = delay_s
        self.error_for = error_for
        self.return_ids = return_ids
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def send(self, record: RequestRecord, prompt: list[int] | str) -> Completion:
        record.sent_ns = self._now_ns()
        call = Call(record, prompt, record.sent_ns)
        index = len(self.calls)
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            record.error = "cancelled"
            record.done_ns = call.end_ns = self._now_ns()
            raise
        finally:
            self.in_flight -= 1
        error = self.error_for(index) if self.error_for else None
        now = self._now_ns()
        call.end_ns = now
        if error is not None:
            record.error = error
            record.done_ns = now
            return Completion(None, connection_lost=error.startswith("ClientConnectorError"))
        record.http_status = 200
        record.first_token_ns = record.last_token_ns = record.done_ns = now
        record.chunk_ns = [now]
        record.chunk_tokens = [record.output_tokens_expected]
        record.prompt_tokens = len(prompt)
        record.output_tokens = record.output_tokens_expected
        if not self.return_ids:
            return Completion(None)
        return Completion([900 + i % 50 for i in range(record.output_tokens_expected)])


class RecordingTools(ReplayTools):
    """A `ToolRunner` that waits the call's duration and records when it ran."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        super().__init__(now_ns)
        self.runs: list[tuple[str, int, int]] = []

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolRecord:
        rec = await super().run(call, ctx)
        self.runs.append((call.kind, rec.start_ns, rec.end_ns))
        return rec


def _session(
    i: int,
    start_ms: float = 0.0,
    steps: Sequence[tuple[int, int]] = ((20, 4),),
    tools: Sequence[tuple[ToolCall, ...]] = (),
    think_ms: float = 0.0,
) -> Session:
    built = []
    for k, (new, out) in enumerate(steps):
        step_tools = tools[k] if k < len(tools) else ()
        built.append(Step(new, out, tools=step_tools, think_ms=think_ms if k else 0.0))
    return Session(session_id=f"s{i}", start_ms=start_ms, steps=tuple(built))


class Run:
    """One replay under a fresh run clock, with everything the tests look at."""

    def __init__(
        self,
        opts: ReplayOptions,
        delay_s: float = 0.0,
        error_for: Callable[[int], str | None] | None = None,
        return_ids: bool = False,
        recording_tools: bool = False,
        to_text: Callable[[list[int]], str] | None = None,
    ) -> None:
        self.clock = RunClock()
        self.sender = RecordingSender(self.clock.now_ns, delay_s, error_for, return_ids)
        self.tools = (
            RecordingTools(self.clock.now_ns) if recording_tools else ReplayTools(self.clock.now_ns)
        )
        self.records: list[RequestRecord] = []
        self.replayer = Replayer(
            self.sender,
            PromptBuilder(synthetic_token_space(1000), seed=0),
            opts,
            self.clock.now_ns,
            self.records.append,
            tools=self.tools,
            to_text=to_text,
        )
        self.start_ns = 0
        self.end_ns = 0

    async def run(self, sessions: Sequence[Session]) -> ReplayOutcome:
        self.start_ns = self.clock.now_ns()
        outcome = await self.replayer.run(sessions)
        self.end_ns = self.clock.now_ns()
        return outcome

    @property
    def elapsed_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def by_session(self) -> dict[str, list[RequestRecord]]:
        out: dict[str, list[RequestRecord]] = {}
        for r in sorted(self.records, key=lambda r: (r.session_id, r.step_index)):
            out.setdefault(r.session_id, []).append(r)
        return out


def _max_overlap(intervals: list[tuple[int, int]]) -> int:
    """Peak number of open [start, end] intervals (an end before a start at equal times)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


# --- pure helpers -------------------------------------------------------------------


def test_fits_and_clipped_lengths() -> None:
    assert fits(90, 10, 100) and not fits(91, 10, 100) and fits(10**6, 10**6, None)
    assert clipped_lengths(150, 30, 100) == (70, 30)
    assert clipped_lengths(50, 500, 100) == (1, 99)
    p, o = clipped_lengths(4000, 1000, 4096)
    assert p + o == 4096 and o == 1000


def test_constant_offsets_are_exact() -> None:
    offsets = arrival_offsets_ns(ReplayOptions(pattern="constant", rate_per_s=4.0))
    assert [next(offsets) for _ in range(5)] == [0, 250 * MS, 500 * MS, 750 * MS, 1000 * MS]


def test_poisson_offsets_reproducible_by_seed_with_the_right_mean() -> None:
    def take(seed: int, n: int = 4000) -> list[int]:
        it = arrival_offsets_ns(ReplayOptions(pattern="poisson", rate_per_s=10.0, seed=seed))
        return [next(it) for _ in range(n)]

    a = take(1)
    assert a == take(1)
    assert a != take(2)
    assert a[0] == 0 and all(y >= x for x, y in itertools.pairwise(a))
    gaps = np.diff(a) / 1e9
    assert 0.09 < gaps.mean() < 0.11  # 1/rate
    assert 0.8 < gaps.std() / gaps.mean() < 1.2  # exponential: CV of 1, unlike constant


def test_preflight_counts_sessions_requests_and_overlength() -> None:
    sessions = [
        _session(0, steps=((50, 10), (40, 30), (10, 5))),  # prompts 50, 100, 140
        _session(1, steps=((95, 10),)),
        _session(2, steps=((10, 10),)),
    ]
    opts = ReplayOptions(max_model_len=100)
    assert preflight(sessions, opts) == {
        "sessions": 3,
        "requests": 5,
        "overlength_requests": 3,
        "tool_calls": 0,
        "max_request_tokens": 145,  # 140 prompt + 5 output
        "output_tokens": 65,
        "start_span_ms": 0.0,
    }
    capped = ReplayOptions(max_model_len=100, max_requests=2)
    assert preflight(sessions, capped) == {
        "sessions": 1,
        "requests": 2,
        "overlength_requests": 1,
        "tool_calls": 0,
        "max_request_tokens": 130,
        "output_tokens": 40,
        "start_span_ms": 0.0,
    }
    assert preflight(sessions, ReplayOptions())["overlength_requests"] == 0
    spread = [_session(0, start_ms=100.0), _session(1, start_ms=40.0), _session(2, 900.0)]
    assert preflight(spread, ReplayOptions())["start_span_ms"] == 860.0


# --- arrivals -----------------------------------------------------------------------


async def test_trace_gaps_are_scaled() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.5))
    sessions = [_session(i, start_ms=1000.0 + 100.0 * i) for i in range(4)]
    outcome = await r.run(sessions)
    assert outcome.requests_sent == 4 and outcome.sessions_started == 4
    recs = sorted(r.records, key=lambda x: x.session_id)
    sched = [x.scheduled_ns for x in recs]
    assert [b - a for a, b in itertools.pairwise(sched)] == [50 * MS] * 3
    assert sched[0] - r.start_ns < 20 * MS  # the first session starts at once, not at 1 s
    for x in recs:
        assert x.sent_ns is not None
        assert x.scheduled_ns - EARLY_NS <= x.sent_ns <= x.scheduled_ns + SLACK_NS
    assert 0.15 <= r.elapsed_s < 0.15 + 1.0


async def test_time_scale_zero_sends_everything_at_once() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0), delay_s=0.05)
    sessions = [_session(i, start_ms=10_000.0 * i) for i in range(6)]
    await r.run(sessions)
    sent = [x.sent_ns or 0 for x in r.records]
    assert len(sent) == 6
    assert max(sent) - min(sent) < 40 * MS  # all before the first one finished
    assert r.sender.max_in_flight == 6
    assert r.elapsed_s < 0.6


async def test_step_offsets_in_a_trace_session_are_scaled() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.5))
    steps = (Step(10, 2), Step(10, 2, offset_ms=200.0))
    await r.run([Session("s0", 0.0, steps)])
    first, second = r.by_session()["s0"]
    assert second.scheduled_ns - first.scheduled_ns == 100 * MS
    assert second.sent_ns is not None and second.sent_ns >= second.scheduled_ns - EARLY_NS


async def test_constant_rate_spaces_sessions_evenly() -> None:
    r = Run(ReplayOptions(pattern="constant", rate_per_s=25.0))
    await r.run([_session(i, start_ms=0.0) for i in range(5)])
    recs = sorted(r.records, key=lambda x: x.scheduled_ns)
    sched = [x.scheduled_ns for x in recs]
    assert [b - a for a, b in itertools.pairwise(sched)] == [40 * MS] * 4
    for x in recs:  # sent on schedule (a late send does not push the later ones back)
        assert x.sent_ns is not None
        assert x.scheduled_ns - EARLY_NS <= x.sent_ns <= x.scheduled_ns + SLACK_NS
    assert (recs[-1].sent_ns or 0) - (recs[0].sent_ns or 0) >= 160 * MS - EARLY_NS
    assert 0.16 <= r.elapsed_s < 1.0


async def test_poisson_schedule_follows_the_seeded_offsets() -> None:
    opts = ReplayOptions(pattern="poisson", rate_per_s=100.0, seed=11)
    r = Run(opts)
    await r.run([_session(i) for i in range(8)])
    sched = sorted(x.scheduled_ns for x in r.records)
    it = arrival_offsets_ns(opts)
    expected = [next(it) for _ in range(8)]
    assert [s - sched[0] for s in sched] == expected
    other = arrival_offsets_ns(ReplayOptions(pattern="poisson", rate_per_s=100.0, seed=12))
    assert [next(other) for _ in range(8)] != expected


# --- concurrency and limits -----------------------------------------------------------


async def test_closed_loop_keeps_at_most_n_sessions_in_flight() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=3), delay_s=0.02)
    tool = (ToolCall("sleep", 10.0),)
    sessions = [_session(i, steps=((10, 2), (5, 2)), tools=(tool,)) for i in range(9)]
    outcome = await r.run(sessions)
    assert outcome.requests_sent == 18 and outcome.sessions_started == 9
    spans = [(recs[0].sent_ns or 0, recs[-1].done_ns or 0) for recs in r.by_session().values()]
    assert len(spans) == 9
    assert _max_overlap(spans) == 3  # reaches N, never more
    assert r.sender.max_in_flight <= 3
    # 3 rounds of (20 + 10 + 20) ms
    assert 0.15 <= r.elapsed_s < 1.5


async def test_closed_loop_concurrency_one_is_serial() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=1), delay_s=0.01)
    await r.run([_session(i) for i in range(4)])
    recs = sorted(r.records, key=lambda x: x.sent_ns or 0)
    assert [x.session_id for x in recs] == ["s0", "s1", "s2", "s3"]
    for a, b in itertools.pairwise(recs):
        assert (b.sent_ns or 0) >= (a.done_ns or 0)


async def test_max_concurrency_caps_requests_in_flight() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_concurrency=2), delay_s=0.03)
    await r.run([_session(i) for i in range(8)])
    assert len(r.records) == 8
    assert r.sender.max_in_flight == 2
    assert r.elapsed_s >= 4 * 0.03 - 0.002  # 8 requests, 2 at a time
    spans = [(c.start_ns, c.end_ns or 0) for c in r.sender.calls]
    assert _max_overlap(spans) == 2


async def test_max_requests_stops_after_n() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_requests=5))
    sessions = [_session(i, steps=((10, 2), (10, 2))) for i in range(10)]
    outcome = await r.run(sessions)
    assert outcome.requests_sent == 5
    assert len(r.records) == 5 == len(r.sender.calls)
    assert sorted(x.request_id for x in r.records) == [f"r{i:07d}" for i in range(5)]


async def test_max_requests_in_a_closed_loop() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=2, max_requests=3), delay_s=0.005)
    outcome = await r.run([_session(i) for i in range(10)])
    assert outcome.requests_sent == 3 and len(r.records) == 3


async def test_duration_stops_sending() -> None:
    r = Run(ReplayOptions(pattern="constant", rate_per_s=20.0, duration_s=0.2))
    outcome = await r.run([_session(i) for i in range(100)])
    assert 2 <= outcome.requests_sent <= 5  # sends at 0, 50, 100, 150 ms
    deadline = r.start_ns + 200 * MS
    assert all((x.sent_ns or 0) <= deadline + 5 * MS for x in r.records)
    assert r.elapsed_s < 0.2 + 0.5


async def test_duration_ends_a_long_trace_gap() -> None:
    """A deadline inside a long gap between arrivals ends the run at the deadline."""
    r = Run(ReplayOptions(pattern="trace", time_scale=1.0, duration_s=0.1))
    outcome = await r.run([_session(0, start_ms=0.0), _session(1, start_ms=5_000.0)])
    assert outcome.requests_sent == 1
    assert r.elapsed_s < 1.0


async def test_duration_in_a_closed_loop() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=2, duration_s=0.1), delay_s=0.02)
    outcome = await r.run([_session(i) for i in range(1000)])
    assert 4 <= outcome.requests_sent <= 14
    assert r.elapsed_s < 0.1 + 0.5


async def test_warmup_flags_the_first_requests_sent() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, warmup_requests=3))
    await r.run([_session(i, steps=((10, 2), (10, 2))) for i in range(3)])
    sent = sorted(r.records, key=lambda x: x.sent_ns or 0)
    assert [x.warmup for x in sent] == [True, True, True, False, False, False]
    assert {x.step_index for x in sent[:3]} == {0}  # every session's first step went first


async def test_request_ids_and_the_budget_follow_the_plan_not_the_timing() -> None:
    """Ids count session by session through the source and `max_requests` is dealt out the
    same way, so a run sends the same requests under the same ids whatever the timing."""
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_requests=5))
    await r.run([_session(i, steps=((10, 2), (10, 2))) for i in range(4)])
    got = sorted((x.request_id, x.session_id, x.step_index) for x in r.records)
    assert got == [
        ("r0000000", "s0", 0),
        ("r0000001", "s0", 1),
        ("r0000002", "s1", 0),
        ("r0000003", "s1", 1),
        ("r0000004", "s2", 0),
    ]


async def test_every_session_end_is_heard_once() -> None:
    """Live progress hears of each session that ends: run to its last step, or cut short by
    the request budget; a session the budget leaves out never started, so never ends."""
    clock = RunClock()
    ended: list[None] = []
    replayer = Replayer(
        RecordingSender(clock.now_ns),
        PromptBuilder(synthetic_token_space(1000), seed=0),
        ReplayOptions(pattern="trace", time_scale=0.0, max_requests=5),
        clock.now_ns,
        lambda _: None,
        tools=ReplayTools(clock.now_ns),
        on_session_end=lambda: ended.append(None),
    )
    outcome = await replayer.run([_session(i, steps=((10, 2), (10, 2))) for i in range(4)])
    assert outcome.sessions_started == 3
    assert len(ended) == 3


# --- the agent session loop -----------------------------------------------------------


async def test_steps_run_in_order_with_tool_waits_between() -> None:
    r = Run(ReplayOptions(pattern="trace"), delay_s=0.01)
    steps = (
        Step(30, 4, tools=(ToolCall("sleep", 60.0),)),
        Step(20, 4),
        Step(10, 4, think_ms=40.0),  # the user's pause before this step
    )
    await r.run([Session("agent", 0.0, steps)])
    recs = r.by_session()["agent"]
    assert [x.step_index for x in recs] == [0, 1, 2]
    assert [x.prompt_tokens_expected for x in recs] == [30, 54, 68]  # 30+4+20, 54+4+10
    assert [x.prompt_tokens for x in recs] == [30, 54, 68]
    s0, s1, s2 = recs
    assert (s1.sent_ns or 0) - (s0.done_ns or 0) >= 60 * MS - EARLY_NS  # the tool wait
    assert (s2.sent_ns or 0) - (s1.done_ns or 0) >= 40 * MS - EARLY_NS  # the think time
    assert (s1.sent_ns or 0) - (s0.done_ns or 0) < 60 * MS + SLACK_NS
    # a step is scheduled when the previous one's tools and think time are over
    assert s1.scheduled_ns >= (s0.done_ns or 0) + 60 * MS - EARLY_NS


async def test_agent_loop_sends_previous_prompt_plus_output_ids() -> None:
    r = Run(ReplayOptions(pattern="trace"), return_ids=True)
    await r.run([_session(0, steps=((30, 5), (10, 5), (10, 5)))])
    prompts = [c.prompt for c in sorted(r.sender.calls, key=lambda c: c.record.step_index)]
    assert all(isinstance(p, list) for p in prompts)
    p0, p1, p2 = (list(p) for p in prompts)
    ids = [900 + i for i in range(5)]
    assert len(p0) == 30 and len(p1) == 45 and len(p2) == 60
    assert p1[:30] == p0 and p1[30:35] == ids
    assert p2[:45] == p1 and p2[45:50] == ids


async def test_to_text_turns_prompts_into_text() -> None:
    r = Run(ReplayOptions(pattern="trace"), to_text=lambda ids: " ".join(map(str, ids)))
    await r.run([_session(0, steps=((7, 2),))])
    (call,) = r.sender.calls
    assert isinstance(call.prompt, str) and len(call.prompt.split()) == 7
    assert r.records[0].prompt_tokens_expected == 7


async def test_parallel_group_tools_run_concurrently() -> None:
    r = Run(ReplayOptions(pattern="trace"), recording_tools=True)
    parallel = tuple(ToolCall(f"p{k}", 60.0, parallel_group=1) for k in range(3))
    serial = (ToolCall("a", 30.0), ToolCall("b", 30.0))
    steps = (Step(10, 2, tools=parallel), Step(10, 2, tools=serial), Step(10, 2))
    await r.run([Session("s", 0.0, steps)])
    assert r.tools is not None
    runs = {kind: (start, end) for kind, start, end in r.tools.runs}
    p_spans = [runs[f"p{k}"] for k in range(3)]
    assert _max_overlap(p_spans) == 3
    assert max(s for s, _ in p_spans) - min(s for s, _ in p_spans) < 30 * MS
    assert runs["b"][0] >= runs["a"][1]  # ungrouped tools run one after another
    s0, s1, s2 = r.by_session()["s"]
    gap_parallel = (s1.sent_ns or 0) - (s0.done_ns or 0)
    assert 60 * MS - EARLY_NS <= gap_parallel < 170 * MS  # not 3 x 60 ms
    assert (s2.sent_ns or 0) - (s1.done_ns or 0) >= 60 * MS - EARLY_NS


async def test_sleep_tools_are_the_default_and_parallel_groups_overlap() -> None:
    r = Run(ReplayOptions(pattern="trace"))
    group = tuple(ToolCall("t", 80.0, parallel_group=7) for _ in range(4))
    await r.run([Session("s", 0.0, (Step(5, 1, tools=group), Step(5, 1)))])
    s0, s1 = r.by_session()["s"]
    gap = (s1.sent_ns or 0) - (s0.done_ns or 0)
    assert 80 * MS - EARLY_NS <= gap < 80 * MS * 4 - 60 * MS


# --- overlength ------------------------------------------------------------------------


def _overlength_sessions() -> list[Session]:
    return [
        _session(0, steps=((50, 10), (40, 30), (10, 5))),  # 50+10 fits; 100+30 does not
        _session(1, steps=((20, 5),)),
    ]


async def test_overlength_skip_counts_and_ends_the_session() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_model_len=100, overlength="skip"))
    outcome = await r.run(_overlength_sessions())
    # s0's step 1 is too long and ends the session, so its step 2 is skipped too: the count
    # matches preflight's, which finds both too long.
    assert outcome.requests_skipped_overlength == 2
    plan = preflight(_overlength_sessions(), ReplayOptions(max_model_len=100))
    assert plan["overlength_requests"] == 2
    assert outcome.requests_clipped == 0
    assert outcome.requests_sent == 2
    assert sorted((x.session_id, x.step_index) for x in r.records) == [("s0", 0), ("s1", 0)]


async def test_overlength_clip_sends_clipped_lengths() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_model_len=100, overlength="clip"))
    outcome = await r.run(_overlength_sessions())
    assert outcome.requests_skipped_overlength == 0
    recs = r.by_session()["s0"]
    assert len(recs) == 3 and outcome.requests_sent == 4
    assert outcome.requests_clipped == 2
    lengths = [(x.prompt_tokens_expected, x.output_tokens_expected) for x in recs]
    # step 2: 100 + 30 -> (70, 30); step 3: 70 + 30 + 10 = 110 + 5 -> (95, 5)
    assert lengths == [(50, 10), (70, 30), (95, 5)]
    assert all(p + o <= 100 for p, o in lengths)
    assert [x.prompt_tokens for x in recs] == [50, 70, 95]  # the prompts really were clipped


# --- stopping -------------------------------------------------------------------------


async def test_stop_with_a_reason_ends_the_run() -> None:
    r = Run(ReplayOptions(pattern="constant", rate_per_s=50.0))
    task = asyncio.create_task(r.run([_session(i) for i in range(500)]))
    await asyncio.sleep(0.1)
    r.replayer.stop("enough")
    r.replayer.stop("another reason")
    outcome = await asyncio.wait_for(task, timeout=2.0)
    assert outcome.aborted_reason == "enough"
    assert not outcome.interrupted
    assert 2 <= outcome.requests_sent <= 12
    assert r.elapsed_s < 1.0


async def test_stop_without_a_reason_is_not_an_abort() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=1), delay_s=0.01)
    task = asyncio.create_task(r.run([_session(i) for i in range(500)]))
    await asyncio.sleep(0.05)
    r.replayer.stop()
    outcome = await asyncio.wait_for(task, timeout=2.0)
    assert outcome.aborted_reason is None
    assert 1 <= outcome.requests_sent < 50


def _unreachable(_: int) -> str:
    return "ClientConnectorError: Cannot connect to host 127.0.0.1:9 [Connection refused]"


async def test_consecutive_unreachable_errors_abort_the_run() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=1), error_for=_unreachable)
    outcome = await asyncio.wait_for(r.run([_session(i) for i in range(50)]), timeout=5.0)
    assert outcome.aborted_reason is not None
    assert outcome.aborted_reason.startswith("server unreachable: ClientConnectorError")
    assert outcome.requests_sent == 8
    assert len(r.records) == 8 and all(x.error for x in r.records)


async def test_a_success_resets_the_unreachable_count() -> None:
    def errors(i: int) -> str | None:
        return None if i == 5 else _unreachable(i)

    r = Run(ReplayOptions(pattern="closed", concurrency=1), error_for=errors)
    outcome = await asyncio.wait_for(r.run([_session(i) for i in range(50)]), timeout=5.0)
    assert outcome.requests_sent == 5 + 1 + 8
    assert outcome.aborted_reason is not None


async def test_other_errors_do_not_abort() -> None:
    r = Run(ReplayOptions(pattern="closed", concurrency=2), error_for=lambda i: "HTTP 500: boom")
    outcome = await asyncio.wait_for(r.run([_session(i) for i in range(20)]), timeout=5.0)
    assert outcome.aborted_reason is None
    assert outcome.requests_sent == 20


@pytest.mark.parametrize(
    "opts",
    [
        ReplayOptions(pattern="trace", time_scale=1.0),
        ReplayOptions(pattern="closed", concurrency=3),
    ],
    ids=["open", "closed"],
)
async def test_cancel_marks_interrupted_and_keeps_in_flight_records(opts: ReplayOptions) -> None:
    r = Run(opts, delay_s=5.0)
    # three sessions start at once; a fourth would come 10 s later
    sessions = [_session(i, start_ms=0.0) for i in range(3)] + [_session(3, start_ms=10_000.0)]
    task = asyncio.create_task(r.run(sessions))
    await asyncio.sleep(0.1)
    assert r.sender.in_flight == 3
    started = time.monotonic()
    task.cancel()
    outcome = await asyncio.wait_for(task, timeout=2.0)
    assert time.monotonic() - started < 1.0
    assert outcome.interrupted
    assert len(r.records) == 3  # every in-flight request reached on_record
    assert all(x.error == "cancelled" and x.sent_ns is not None for x in r.records)
    assert outcome.requests_sent == 3
    assert r.sender.in_flight == 0


async def test_outcome_times_span_the_sends() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0), delay_s=0.02)
    outcome = await r.run([_session(i) for i in range(3)])
    assert outcome.first_send_ns == min(x.sent_ns or 0 for x in r.records)
    assert outcome.last_done_ns == max(x.done_ns or 0 for x in r.records)
    assert (outcome.last_done_ns or 0) - (outcome.first_send_ns or 0) >= 20 * MS


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (ToolCall("teleport", 10.0), "unknown tool kind 'teleport'"),
        (ToolCall("retrieval", -5.0), "duration_ms must be a finite number"),
        (ToolCall("retrieval", 5.0, size=float("nan")), "size must be a finite number"),
    ],
)
def test_preflight_rejects_bad_tool_calls_naming_session_and_step(
    call: ToolCall, message: str
) -> None:
    sessions = [Session("agent-7", 0.0, (Step(10, 2), Step(5, 2, tools=(call,))))]
    with pytest.raises(ConfigError, match=f"session 'agent-7' step 1 tool 0: {message}"):
        preflight(sessions, ReplayOptions(), ("retrieval", "summarize"))


# --- no silent loss ------------------------------------------------------------------


def _bad_block_session(i: int) -> Session:
    """A session whose second step names a block id no prompt can be built from."""
    return Session(
        session_id=f"s{i}",
        start_ms=0.0,
        steps=(Step(20, 4), Step(600, 4, hash_ids=(5, -1))),
    )


def test_preflight_rejects_an_unbuildable_prompt_naming_session_and_step() -> None:
    with pytest.raises(ConfigError, match=r"session 's1' step 1: hash id -1"):
        preflight([_session(0), _bad_block_session(1)], ReplayOptions())


@pytest.mark.parametrize(
    "opts",
    [
        ReplayOptions(pattern="trace", time_scale=0.0),
        ReplayOptions(pattern="poisson", rate_per_s=200.0),
        ReplayOptions(pattern="closed", concurrency=2),
    ],
    ids=["trace", "poisson", "closed"],
)
async def test_a_session_that_raises_is_a_recorded_failure_not_a_loss(
    opts: ReplayOptions,
) -> None:
    r = Run(opts)
    outcome = await r.run([_session(0), _bad_block_session(1), _session(2)])
    assert outcome.sessions_failed == 1
    assert "session 's1'" in outcome.session_errors[0]
    assert "ValueError" in outcome.session_errors[0]
    failed = [rec for rec in r.records if rec.session_id == "s1" and rec.step_index == 1]
    assert len(failed) == 1 and not failed[0].ok
    assert failed[0].error is not None and failed[0].error.startswith("harness: ValueError")
    assert failed[0].sent_ns is None  # never reached the server
    assert outcome.requests_not_sent == 1
    # The other sessions ran to the end.
    assert {rec.session_id for rec in r.records if rec.ok} == {"s0", "s1", "s2"}


async def test_slot_wait_is_recorded_for_a_capped_run() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_concurrency=1), delay_s=0.05)
    await r.run([_session(i) for i in range(3)])
    waits = sorted(rec.slot_wait_ns or 0 for rec in r.records)
    assert all(rec.slot_wait_ns is not None for rec in r.records)
    assert waits[0] < 20 * MS  # the first request found a free slot
    assert waits[-1] >= 2 * 50 * MS - EARLY_NS  # the third waited for two requests


async def test_no_slot_wait_without_a_cap() -> None:
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0))
    await r.run([_session(0)])
    assert r.records[0].slot_wait_ns is None


@pytest.mark.parametrize(
    "opts",
    [
        ReplayOptions(pattern="trace", time_scale=1.0),
        ReplayOptions(pattern="closed", concurrency=2),
    ],
    ids=["open", "closed"],
)
async def test_interrupt_cancels_sessions_in_flight_and_marks_the_outcome(
    opts: ReplayOptions,
) -> None:
    r = Run(opts, delay_s=5.0)
    sessions = [_session(i, start_ms=i * 10.0) for i in range(4)]
    task = asyncio.ensure_future(r.run(sessions))
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    r.replayer.interrupt("stop signal")
    outcome = await task
    assert time.monotonic() - t0 < 1.0  # in-flight requests were cancelled, not awaited
    assert outcome.interrupted and outcome.aborted_reason == "stop signal"
    assert r.records and all(rec.error == "cancelled: stop signal" for rec in r.records)


# --- sub-agent sessions -------------------------------------------------------------


def _family(own_start_ms: float = 10_000.0) -> list[Session]:
    """A parent of two steps and its two sub-agents: one started by the parent's step 0
    (its Task tool, 50 ms into the 300 ms tool wait, as the recording times it), one 120
    ms after the parent's start; both with own start times far later, which must not
    count. A session of its own comes between."""
    parent = Session(
        "main",
        0.0,
        (
            Step(20, 4, tools=(ToolCall("unmapped", 300.0),), recorded_llm_ms=100.0),
            Step(10, 4),
        ),
    )
    by_step = Session(
        "main/task",
        own_start_ms,
        (Step(10, 2), Step(5, 2)),
        parent_id="main",
        parent_offset_ms=150.0,
        parent_step=0,
    )
    by_offset = Session(
        "main/early",
        own_start_ms,
        (Step(10, 2),),
        parent_id="main",
        parent_offset_ms=120.0,
    )
    return [parent, _session(1, start_ms=0.0), by_step, by_offset]


async def test_a_sub_agent_starts_where_its_parent_started_it() -> None:
    """The step's sub-agent starts after the parent's step 0 request completed plus the
    recorded 50 ms into the tool phase (150 ms offset − 100 ms LLM); the offset one at the
    parent's start plus its offset, scaled; neither at its own arrival, and the parent's
    wait on its Task stays the recorded 300 ms."""
    r = Run(ReplayOptions(pattern="trace", time_scale=0.5), delay_s=0.01)
    outcome = await r.run(_family())
    by = r.by_session()
    main0, main1 = by["main"]
    assert main0.done_ns is not None and main1.sent_ns is not None
    task0 = by["main/task"][0]
    assert task0.sent_ns is not None
    assert task0.sent_ns >= main0.done_ns + 50 * MS  # never early
    assert task0.sent_ns < main0.done_ns + 50 * MS + SLACK_NS
    assert task0.sent_ns < main1.sent_ns  # during the parent's wait on it
    early = by["main/early"][0]
    assert early.sent_ns is not None and main0.sent_ns is not None
    assert early.sent_ns >= r.start_ns + 60 * MS  # 120 ms × time scale 0.5
    assert early.sent_ns < r.start_ns + 60 * MS + SLACK_NS
    assert main1.sent_ns - main0.done_ns >= 300 * MS  # the recorded wait, not the sub-agent's
    assert r.elapsed_s < 2.0  # not at their own arrival (10 s × 0.5)
    assert outcome.subagents_started == 2
    assert outcome.subagents_without_parent == outcome.subagents_not_started == 0
    assert outcome.sessions_started == 4
    assert {x.session_id: x.parent_session_id for x in r.records} == {
        "main": None,
        "s1": None,
        "main/task": "main",
        "main/early": "main",
    }


async def test_a_step_that_starts_sub_agents_says_how_many() -> None:
    clock = RunClock()
    steps: list[StepRecord] = []
    replayer = Replayer(
        RecordingSender(clock.now_ns),
        PromptBuilder(synthetic_token_space(1000), seed=0),
        ReplayOptions(pattern="trace", time_scale=0.0),
        clock.now_ns,
        lambda _: None,
        tools=ReplayTools(clock.now_ns),
        on_step=steps.append,
    )
    await replayer.run(_family())
    started = {(s.session_id, s.step_index): s.subagents_started for s in steps}
    assert started[("main", 0)] == 1  # the offset one belongs to no step
    assert started[("main", 1)] == 0 and started[("s1", 0)] == 0


async def test_a_sub_agent_without_its_parent_starts_at_its_own_arrival() -> None:
    """Its parent is not in the run (a limit cut it): it runs at its own start time, and it
    is counted and named, not dropped."""
    orphan = Session(
        "gone/task", 80.0, (Step(10, 2),), parent_id="gone", parent_offset_ms=5.0, parent_step=0
    )
    r = Run(ReplayOptions(pattern="trace", time_scale=1.0))
    outcome = await r.run([_session(0, start_ms=0.0), orphan])
    rec = r.by_session()["gone/task"][0]
    assert rec.sent_ns is not None and rec.sent_ns >= r.start_ns + 80 * MS
    assert rec.parent_session_id == "gone"
    assert outcome.subagents_without_parent == 1 and outcome.subagents_started == 0
    assert outcome.subagent_notes == [
        "sub-agent 'gone/task' of 'gone': its parent is not in the run; "
        "started at its own arrival time"
    ]


async def test_a_sub_agent_whose_parent_ends_short_of_its_step_is_counted() -> None:
    """The parent's step 1 is over the context window and skipped, so it never reaches the
    step that starts the sub-agent: not started, counted with why."""
    parent = Session("main", 0.0, (Step(20, 4), Step(200, 4)))
    child = Session("main/task", 0.0, (Step(10, 2),), parent_id="main", parent_step=1)
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, max_model_len=100, overlength="skip"))
    outcome = await r.run([parent, child])
    assert [x.session_id for x in r.records] == ["main"]
    assert outcome.subagents_not_started == 1 and outcome.subagents_started == 0
    assert outcome.subagent_notes == [
        "sub-agent 'main/task' of 'main': its parent ended before step 1; not started"
    ]


async def test_nested_sub_agents_start_from_their_own_parents() -> None:
    """A sub-agent of a sub-agent waits for its parent's step, once its parent has started."""
    top = Session("a", 0.0, (Step(10, 2, tools=(ToolCall("unmapped", 100.0),)), Step(5, 2)))
    mid = Session("a/b", 0.0, (Step(10, 2, tools=(ToolCall("unmapped", 50.0),)), Step(5, 2)))
    mid = Session("a/b", 0.0, mid.steps, parent_id="a", parent_step=0)
    leaf = Session("a/b/c", 0.0, (Step(10, 2),), parent_id="a/b", parent_step=0)
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0), delay_s=0.01)
    outcome = await r.run([top, mid, leaf])
    by = r.by_session()
    assert (by["a/b"][0].sent_ns or 0) >= (by["a"][0].done_ns or 0)
    assert (by["a/b/c"][0].sent_ns or 0) >= (by["a/b"][0].done_ns or 0)
    assert outcome.subagents_started == 2


async def test_a_closed_loop_runs_a_sub_agent_beside_its_parent() -> None:
    """With one place, the sub-agent runs during its parent's tool wait, not in a place of
    its own after it; the next session waits for the parent, and the run for them all."""
    parent = Session("main", 0.0, (Step(20, 4, tools=(ToolCall("unmapped", 150.0),)), Step(10, 4)))
    child = Session("main/task", 0.0, (Step(10, 2),), parent_id="main", parent_step=0)
    r = Run(ReplayOptions(pattern="closed", concurrency=1), delay_s=0.01)
    outcome = await r.run([parent, child, _session(1)])
    by = r.by_session()
    task0 = by["main/task"][0]
    main0, main1 = by["main"]
    assert (main0.done_ns or 0) <= (task0.sent_ns or 0) < (main1.sent_ns or 0)
    assert (by["s1"][0].sent_ns or 0) >= (main1.done_ns or 0)
    assert outcome.subagents_started == 1 and outcome.requests_sent == 4


async def test_a_family_runs_on_its_parents_worker() -> None:
    """Sharded over two replays by `shard`: the sub-agent lands on the replay that runs its
    parent, though its own index would deal it to the other."""
    sessions = [
        _session(0),
        _session(1),
        Session("s0/task", 0.0, (Step(10, 2),), parent_id="s0", parent_step=0),
    ]
    assert [p.shard for p in plan_sessions(sessions, None)] == [0, 1, 0]
    assert [p.parent_in_run for p in plan_sessions(sessions, None)] == [False, False, True]
    got: dict[int, set[str]] = {}
    for k in (0, 1):
        clock = RunClock()
        records: list[RequestRecord] = []
        replayer = Replayer(
            RecordingSender(clock.now_ns),
            PromptBuilder(synthetic_token_space(1000), seed=0),
            ReplayOptions(pattern="trace", time_scale=0.0),
            clock.now_ns,
            records.append,
            tools=ReplayTools(clock.now_ns),
            owns=lambda shard, k=k: shard % 2 == k,  # type: ignore[misc]
        )
        outcome = await replayer.run(sessions)
        got[k] = {x.session_id for x in records}
        assert outcome.subagents_without_parent == 0
    assert got == {0: {"s0", "s0/task"}, 1: {"s1"}}


def test_preflight_rejects_a_parent_step_the_parent_does_not_have() -> None:
    sessions = [
        _session(0, steps=((10, 2), (10, 2))),
        Session("s0/task", 0.0, (Step(10, 2),), parent_id="s0", parent_step=2),
    ]
    with pytest.raises(ConfigError, match=r"'s0/task': parent_step 2, but its parent 's0' has 2"):
        preflight(sessions, ReplayOptions())
    itself = Session("loop", 0.0, (Step(10, 2),), parent_id="loop")
    with pytest.raises(ConfigError, match="'loop': parent_id names the session itself"):
        preflight([itself], ReplayOptions())


def test_think_time_is_never_shorter_than_recorded_on_uvloop() -> None:
    """uvloop's timers count whole milliseconds and may wake early: the pause before a step
    still lasts at least its think time on the run clock."""
    clock = RunClock()
    steps: list[StepRecord] = []
    thinks_ms = (0.3, 1.5, 2.7, 1.0, 0.9)
    session = Session("s", 0.0, tuple(Step(5, 1, think_ms=t) for t in (0.0, *thinks_ms)))
    replayer = Replayer(
        RecordingSender(clock.now_ns),
        PromptBuilder(synthetic_token_space(1000), seed=0),
        ReplayOptions(pattern="trace", time_scale=0.0),
        clock.now_ns,
        lambda _: None,
        tools=ReplayTools(clock.now_ns),
        on_step=steps.append,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(replayer.run([session]))
    got = [s.think_ns for s in sorted(steps, key=lambda s: s.step_index)][1:]
    assert all(ns >= round(ms * MS) for ns, ms in zip(got, thinks_ms, strict=True)), got


async def test_a_run_that_stops_starts_no_sub_agent_and_counts_none_as_orphaned() -> None:
    """The duration ends during the parent's tool wait: the sub-agent waiting for its step 1
    is like any session the stopped run did not start, not one its parent failed to reach."""
    parent = Session("main", 0.0, (Step(10, 2, tools=(ToolCall("unmapped", 150.0),)), Step(5, 2)))
    child = Session("main/task", 0.0, (Step(10, 2),), parent_id="main", parent_step=1)
    r = Run(ReplayOptions(pattern="trace", time_scale=0.0, duration_s=0.05))
    outcome = await r.run([parent, child])
    assert [x.session_id for x in r.records] == ["main"]
    assert outcome.subagents_started == outcome.subagents_not_started == 0
    assert outcome.subagent_notes == []
