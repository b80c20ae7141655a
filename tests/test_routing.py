"""harness.routing against real HTTP servers (the null server, which streams at a set pace and
may be stopped at will): the policies' choices, a replica taken out when its connection is
lost, and the error once none is left."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from null_server_process import NullServer
from ports import dead_url

from harness.client import ClientOptions
from harness.records import RequestRecord, RunClock
from harness.routing import Router, RoutingPlan, open_sender


def _record(i: int, session: str = "s") -> RequestRecord:
    return RequestRecord(
        request_id=f"r{i}",
        session_id=session,
        step_index=i,
        api="completions",
        prompt_tokens_expected=4,
        output_tokens_expected=3,
        scheduled_ns=0,
    )


def _router(urls: list[str], policy: str) -> Router:
    opts = ClientOptions(base_url=urls[0], model="null-model", timeout_s=20)
    sender = open_sender(opts, RoutingPlan(tuple(urls), policy), RunClock().now_ns)  # type: ignore[arg-type]
    assert isinstance(sender, Router)
    return sender


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[NullServer, NullServer]]:
    fast = NullServer(tmp_path, "--ttft-ms", "5", "--itl-ms", "1")
    slow = NullServer(tmp_path, "--ttft-ms", "400", "--itl-ms", "1")
    yield fast, slow
    fast.stop()
    slow.stop()


def test_one_server_is_sent_to_by_a_plain_client() -> None:
    opts = ClientOptions(base_url="http://127.0.0.1:1", model="m")
    assert not isinstance(open_sender(opts, None, RunClock().now_ns), Router)
    one = RoutingPlan(("http://127.0.0.1:1",))
    assert not isinstance(open_sender(opts, one, RunClock().now_ns), Router)


async def test_round_robin_takes_the_replicas_in_turn(two: tuple[NullServer, NullServer]) -> None:
    urls = [two[0].url, two[1].url]
    records = [_record(i) for i in range(6)]
    async with _router(urls, "round-robin") as router:
        for r in records:
            await router.send(r, [1, 2, 3, 4])
    assert [r.server for r in records] == urls * 3
    assert all(r.ok for r in records)


async def test_round_robin_starts_each_load_worker_on_its_own_replica(
    two: tuple[NullServer, NullServer],
) -> None:
    urls = (two[0].url, two[1].url)
    opts = ClientOptions(base_url=urls[0], model="null-model")
    starts = []
    for worker in range(3):
        router = open_sender(opts, RoutingPlan(urls), RunClock().now_ns, worker)
        assert isinstance(router, Router)
        starts.append(router.pick("s"))
    assert starts == [0, 1, 0]


async def test_least_outstanding_sends_more_to_the_replica_that_frees_up(
    two: tuple[NullServer, NullServer],
) -> None:
    """Two sessions send back to back: the fast replica (5 ms to first token) is free again
    long before the slow one (400 ms), so it gets most of the requests."""
    urls = [two[0].url, two[1].url]
    records: list[RequestRecord] = []
    async with _router(urls, "least-outstanding") as router:

        async def session(k: int) -> None:
            for i in range(5):
                record = _record(i, f"s{k}")
                records.append(record)
                await router.send(record, [1, 2, 3, 4])

        await asyncio.gather(*(session(k) for k in range(2)))
    counts = Counter(r.server for r in records)
    assert counts[two[0].url] > counts[two[1].url]
    assert all(r.ok for r in records)


async def test_session_affinity_keeps_each_session_on_one_replica_and_moves_only_the_lost_ones(
    two: tuple[NullServer, NullServer],
) -> None:
    urls = [two[0].url, two[1].url]
    sessions = [f"session-{k}" for k in range(20)]
    async with _router(urls, "session-affinity") as router:
        placed = {s: router.pick(s) for s in sessions}
        assert {router.pick(s) for s in sessions for _ in range(3)} <= {0, 1}
        assert all(router.pick(s) == placed[s] for s in sessions)
        assert set(placed.values()) == {0, 1}  # 20 sessions do not all hash to one replica
        router.take_out(0, "test")
        assert all(router.pick(s) == 1 for s in sessions)
    assert router.down == {urls[0]: "test"}


def test_session_affinity_places_by_the_replicas_places_not_their_addresses() -> None:
    """Two deployments on other ports place the same sessions on the same places, so a
    workload's split (and its prefix-cache figures) compares across runs."""
    sessions = [f"session-{k}" for k in range(50)]
    placed = []
    for ports in ((8000, 8001), (41234, 39876)):
        router = _router([f"http://127.0.0.1:{p}" for p in ports], "session-affinity")
        placed.append([router.pick(s) for s in sessions])
    assert placed[0] == placed[1]
    assert 10 < sum(k == 1 for k in placed[0]) < 40  # both places get a fair share


async def test_a_replica_whose_connection_is_lost_and_health_fails_is_taken_out(
    tmp_path: Path,
) -> None:
    live = NullServer(tmp_path)
    dead = dead_url()
    try:
        records = [_record(i) for i in range(4)]
        async with _router([dead, live.url], "round-robin") as router:
            completions = [await router.send(r, [1, 2, 3, 4]) for r in records]
            assert list(router.down) == [dead]
            assert "ClientConnectorError" in router.down[dead] and "/health: " in router.down[dead]
            # One replica is left: the loss is not the deployment's (no "unreachable" stop).
            assert not any(c.connection_lost for c in completions)
            live.stop()
            last = _record(9)
            assert (await router.send(last, [1, 2, 3, 4])).connection_lost
            lost = _record(10)
            assert (await router.send(lost, [1, 2, 3, 4])).connection_lost
    finally:
        live.stop()
    assert records[0].server == dead and not records[0].ok
    assert records[0].error is not None and "ClientConnectorError" in records[0].error
    assert [r.server for r in records[1:]] == [live.url] * 3 and all(r.ok for r in records[1:])
    assert last.server == live.url and not last.ok
    assert lost.server is None and lost.error is not None
    assert lost.error.startswith("no replica left in the routing (taken out: ")
    assert dead in lost.error and live.url in lost.error


async def test_a_replica_that_hangs_past_the_timeout_and_fails_health_is_taken_out(
    tmp_path: Path,
) -> None:
    """A stopped process (SIGSTOP) accepts connections in its backlog but never answers: its
    requests time out, /health times out too, and it is taken out; the other replica serves."""
    hung, live = NullServer(tmp_path), NullServer(tmp_path)
    opts = ClientOptions(base_url=hung.url, model="null-model", timeout_s=3)
    plan = RoutingPlan((hung.url, live.url), "round-robin")
    try:
        hung.proc.send_signal(signal.SIGSTOP)
        sender = open_sender(opts, plan, RunClock().now_ns)
        records = [_record(i) for i in range(4)]
        async with sender:
            completions = [await sender.send(r, [1, 2, 3, 4]) for r in records]
            assert isinstance(sender, Router)
            assert list(sender.down) == [hung.url]
    finally:
        hung.proc.send_signal(signal.SIGCONT)
        hung.stop()
        live.stop()
    assert records[0].server == hung.url and records[0].error == "timeout after 3 s"
    assert completions[0].timed_out and not completions[0].connection_lost
    assert "timeout after 3 s; /health: " in sender.down[hung.url]
    assert [r.server for r in records[1:]] == [live.url] * 3 and all(r.ok for r in records[1:])
