"""Routing a run's requests over several replicas of one deployment (`--server` repeated).

Each load worker routes its own requests: `round-robin` takes the replicas in turn,
`least-outstanding` the one with the fewest of this worker's requests in flight, and
`session-affinity` keeps a session (a conversation, an agent session) on one replica, as a
prefix-cache-aware router would, by rendezvous hashing of its id against each replica's place
in the list: a replica taken out moves only its own sessions, and the same workload on the same
number of replicas is placed the same way whatever their addresses, so runs compare. A replica
whose connection is lost or whose request timed out, and whose /health then does not answer
either, is taken out of this worker's routing for the rest of the run; its failed requests stay
recorded as failed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from harness.client import Client, ClientOptions, Completion
from harness.records import RequestRecord
from harness.server import health_problem
from harness.workload.spec import RoutingPolicy


@dataclass(frozen=True)
class RoutingPlan:
    """The replicas' base URLs (in the order given) and how requests are spread over them."""

    urls: tuple[str, ...]
    policy: RoutingPolicy = "round-robin"
    headers: tuple[tuple[tuple[str, str], ...], ...] = ()
    """Each replica's HTTP headers (its API key or URL credentials); empty: the run's."""


HEALTH_TIMEOUT_S = 2.0
"""How long a replica whose connection was lost, or whose request timed out, has to answer
/health to stay in."""


def _weight(session_id: str, replica: int) -> bytes:
    """The rendezvous weight of a session on the replica at place `replica` (the highest
    weight wins). The place, not the URL: a port chosen at start must not move sessions."""
    return hashlib.blake2b(f"{replica}\0{session_id}".encode(), digest_size=8).digest()


class Router:
    """A RequestSender over one Client per replica; every record names the replica it went to.
    `down` holds each replica taken out and why."""

    def __init__(
        self,
        opts: ClientOptions,
        plan: RoutingPlan,
        now_ns: Callable[[], int],
        worker: int = 0,
    ) -> None:
        """`worker` is the load worker's index: round-robin starts on its replica, so the
        workers' first requests are spread too."""
        self.plan = plan
        self._headers = plan.headers or (opts.headers,) * len(plan.urls)
        self._clients = [
            Client(replace(opts, base_url=url, headers=h), now_ns)
            for url, h in zip(plan.urls, self._headers, strict=True)
        ]
        self._in_flight = [0] * len(plan.urls)
        self._live = list(range(len(plan.urls)))
        self._turn = worker
        self._now_ns = now_ns
        self._probes: dict[int, asyncio.Future[str | None]] = {}
        self.down: dict[str, str] = {}

    async def __aenter__(self) -> Router:
        for client in self._clients:
            await client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for probe in self._probes.values():
            probe.cancel()
        for client in self._clients:
            await client.__aexit__(*exc)

    async def _health(self, k: int) -> str | None:
        """Why replica `k`'s /health does not answer, or None: one probe at a time per
        replica, shared by every request that failed on it meanwhile (a replica whose many
        requests time out together gets one probe, not one each)."""
        probe = self._probes.get(k)
        if probe is None or probe.done():
            url, headers = self.plan.urls[k], dict(self._headers[k])
            probe = self._probes[k] = asyncio.ensure_future(
                health_problem(url, headers, HEALTH_TIMEOUT_S)
            )
        return await asyncio.shield(probe)

    def pick(self, session_id: str) -> int | None:
        """The replica (index) the next request of `session_id` goes to; None: none is left."""
        live = self._live
        if not live:
            return None
        policy = self.plan.policy
        if policy == "session-affinity":
            return max(live, key=lambda k: _weight(session_id, k))
        if policy == "least-outstanding":
            # Ties go round in turn, so an idle start does not send everything to the first.
            n = len(self.plan.urls)
            return min(live, key=lambda k: (self._in_flight[k], (k - self._turn) % n))
        k = live[self._turn % len(live)]
        self._turn += 1
        return k

    def take_out(self, k: int, reason: str) -> None:
        """Take replica `k` out of the routing for the rest of the run."""
        if k in self._live:
            self._live.remove(k)
            self.down[self.plan.urls[k]] = reason

    async def send(self, record: RequestRecord, prompt: list[int] | str) -> Completion:
        """Send one request to the replica the policy picks; never raises for request failures."""
        k = self.pick(record.session_id)
        if k is None:
            record.sent_ns = record.done_ns = self._now_ns()
            downs = "; ".join(f"{url}: {why}" for url, why in self.down.items())
            record.error = f"no replica left in the routing (taken out: {downs})"
            return Completion(None, connection_lost=True)
        self._in_flight[k] += 1
        if self.plan.policy == "least-outstanding":
            self._turn += 1
        try:
            completion = await self._clients[k].send(record, prompt)
        finally:
            self._in_flight[k] -= 1
        if not (completion.connection_lost or completion.timed_out):
            return completion
        if k in self._live:
            why = await self._health(k)
            if why is not None:
                self.take_out(k, f"{record.error}; /health: {why}")
        # The deployment is gone only when no replica is left: until then, a lost replica's
        # failures do not count toward the run's "server unreachable" stop.
        return replace(completion, connection_lost=not self._live)


def open_sender(
    opts: ClientOptions,
    routing: RoutingPlan | None,
    now_ns: Callable[[], int],
    worker: int = 0,
) -> Client | Router:
    """The load worker's sender: one Client for one server, a Router over several replicas."""
    if routing is None or len(routing.urls) < 2:
        return Client(opts, now_ns)
    return Router(opts, routing, now_ns, worker)
