"""How many load workers a run uses and how the load is dealt out among them."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from harness.client import ClientOptions
from harness.errors import ConfigError
from harness.replay import ReplayOptions, ReplayOutcome
from harness.run import worker_count as workers_mod
from harness.run.load import LoadPlan
from harness.run.plan import RunPlan
from harness.run.pool import merge_outcomes
from harness.run.worker_count import WORKER_TOK_S, choose_workers, expected_tok_s, share
from harness.run.worker_process import SharedTickets, WorkerSpec
from harness.workload.spec import SourceSpec, WorkloadSpec

COUNTED = {"sessions": 100, "requests": 100, "output_tokens": 25_600, "start_span_ms": 10_000}


@pytest.fixture
def eight_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_mod, "usable_cpus", lambda: (8, "8 CPUs in the affinity mask"))


def test_an_explicit_count_is_kept_or_lowered_to_the_work_there_is() -> None:
    opts = ReplayOptions(pattern="closed", concurrency=3)
    assert choose_workers(2, opts, COUNTED, server_local=True).used == 2
    lowered = choose_workers(8, opts, COUNTED, server_local=True)
    assert lowered.used == 3
    assert "lowered to 3" in lowered.reason and "concurrent sessions" in lowered.reason
    capped = choose_workers(4, ReplayOptions(max_concurrency=2), COUNTED, server_local=False)
    assert capped.used == 2 and "max_concurrency" in capped.reason


@pytest.mark.parametrize("count", [0, -1, 10_000])
def test_a_count_out_of_range_is_a_clear_error(count: int) -> None:
    with pytest.raises(ConfigError, match="--workers must be 1 to"):
        choose_workers(count, ReplayOptions(), COUNTED, server_local=False)


def test_auto_sizes_the_pool_from_the_expected_stream_rate(eight_cpus: None) -> None:
    rate = ReplayOptions(pattern="poisson", rate_per_s=500.0)  # 500 × 256 = 128k tok/s
    tok_s, how = expected_tok_s(rate, COUNTED)
    assert tok_s == 500 * 256 and "sessions/s" in how
    remote = choose_workers("auto", rate, COUNTED, server_local=False)
    assert remote.used == 7  # 7 = 8 cores less one for the parent (128k tok/s wants 7)
    local = choose_workers("auto", rate, COUNTED, server_local=True)
    assert local.used == 3 and "the server shares this host" in local.reason
    assert "capped at 3" in local.reason
    slow = choose_workers("auto", ReplayOptions(pattern="trace"), COUNTED, server_local=False)
    assert slow.used == 1  # 25,600 tokens over 10 s is far below one worker's share
    assert expected_tok_s(ReplayOptions(pattern="trace"), COUNTED)[0] == 2_560


def test_auto_without_a_rate_assumes_a_stated_speed_per_stream(eight_cpus: None) -> None:
    closed = ReplayOptions(pattern="closed", concurrency=1000)
    tok_s, how = expected_tok_s(closed, {**COUNTED, "sessions": 5000})
    assert tok_s == 1000 * workers_mod.STREAM_TOK_S and "assumed" in how
    choice = choose_workers("auto", closed, {**COUNTED, "sessions": 5000}, server_local=False)
    assert choice.used == -(-tok_s // WORKER_TOK_S) and choice.requested == "auto"


@pytest.mark.parametrize(("total", "count"), [(64, 3), (5, 5), (7, 2), (1, 1)])
def test_shares_add_up_and_differ_by_at_most_one(total: int, count: int) -> None:
    parts = [share(total, count, k) for k in range(count)]
    assert sum(parts) == total and max(parts) - min(parts) <= 1


def _spec(k: int, count: int, slots: int | None) -> WorkerSpec:
    plan = RunPlan(WorkloadSpec(name="w", source=SourceSpec(synthetic="chatbot")), Path("x"))
    load = LoadPlan(plan, ReplayOptions(), ClientOptions("http://h", "m"), "t", 0, None, 0)
    return WorkerSpec(load, k, count, None, None, slots, None, 1)


@pytest.mark.parametrize(("count", "slots"), [(3, None), (2, None), (3, 64), (4, 6)])
def test_every_session_has_exactly_one_worker(count: int, slots: int | None) -> None:
    specs = [_spec(k, count, slots) for k in range(count)]
    for ordinal in range(500):
        assert sum(s.owns(ordinal) for s in specs) == 1
    if slots:  # closed loop: a worker's sessions match its share of the concurrency
        for k, s in enumerate(specs):
            owned = sum(s.owns(i) for i in range(slots))
            assert owned == share(slots, count, k)


def test_shared_tickets_hand_out_each_number_once_up_to_the_limit() -> None:
    counter = mp.get_context("spawn").Value("q", 0)
    a, b = SharedTickets(counter, 5), SharedTickets(counter, 5)
    got = [a.take(), b.take(), a.take(), b.take(), a.take(), b.take(), a.take()]
    assert got == [0, 1, 2, 3, 4, None, None]


def test_merged_outcomes_add_counts_and_keep_the_first_reason() -> None:
    one = ReplayOutcome(requests_sent=3, sessions_started=2, first_send_ns=50, last_done_ns=90)
    two = ReplayOutcome(requests_sent=4, interrupted=True, aborted_reason="stop", first_send_ns=10)
    two.session_errors.append("session 'x': boom")
    merged = merge_outcomes([one, two])
    assert merged.requests_sent == 7 and merged.sessions_started == 2
    assert merged.interrupted and merged.aborted_reason == "stop"
    assert merged.first_send_ns == 10 and merged.last_done_ns == 90
    assert merged.session_errors == ["session 'x': boom"]
