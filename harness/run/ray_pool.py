"""The driver's side of a run whose load workers are Ray actors (`--ray`): how many go where,
each node's clock anchored against the driver's, and the actors' records journalled as they
arrive, with the same accounting as local worker processes (PoolRecords).

Ray itself is imported only by harness.run.ray_cluster, and only when a run asks for it:
without Ray installed, `--ray` says how to install it."""

from __future__ import annotations

import secrets
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from harness import __version__
from harness.errors import ClusterError, ConfigError, HarnessError
from harness.replay import ReplayOptions, ReplayOutcome
from harness.results import RunWriter
from harness.run.live import LiveFeed
from harness.run.load import LoadPlan
from harness.run.plan import RayChoice
from harness.run.pool import STOP_GRACE_S, PoolRecords, worker_specs
from harness.run.stop_signals import StopSignals
from harness.run.worker_count import WorkerChoice, choose_workers, share
from harness.run.worker_process import WorkerSpec

INSTALL_HINT = "--ray needs Ray, an optional extra: pip install 'harness[ray]'"

READY_TIMEOUT_S = 180.0
"""How long actors may take to be ready (imports, tokenizer) once placed."""

START_DELAY_NS = 250_000_000
"""The start instant is this far ahead of the moment every actor is ready: the release
reaches every actor over the network before it."""

POLL_S = 0.1
"""How long one poll of the actors waits for a message."""


class Shards(Protocol):
    """The run's actors as the driver uses them (harness.run.ray_cluster.RayShards)."""

    count: int
    names: list[str]
    nodes: list[dict[str, Any]]

    def clock_samples(self, k: int) -> list[tuple[int, int, int, int, int, int]]: ...

    def begin(self, k: int, spec: WorkerSpec) -> None: ...

    def release(self, start_ns: int, live: set[int]) -> dict[int, str]: ...

    def stop(self, live: set[int]) -> None: ...

    def poll(self, live: set[int], timeout_s: float) -> list[tuple[int, list[Any] | str]]: ...

    def kill(self, k: int) -> None: ...

    def close(self) -> None: ...


class Cluster(Protocol):
    """A Ray cluster open for a run (harness.run.ray_cluster.RayCluster)."""

    address: str

    def __enter__(self) -> Cluster: ...

    def __exit__(self, *exc: object) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def nodes(self) -> list[dict[str, Any]]: ...

    def place(self, count: int, cores: int, one_per_node: bool, run_id: str) -> Shards: ...


def require_ray() -> None:
    """ConfigError with the install hint where Ray cannot be imported."""
    try:
        import harness.run.ray_cluster  # noqa: F401
    except ImportError as err:
        if (err.name or "").split(".")[0] != "ray":
            raise
        raise ConfigError(INSTALL_HINT) from None


def open_cluster(choice: RayChoice) -> AbstractContextManager[Cluster]:
    """The cluster `choice` names, connected on entry (ClusterError where it is unreachable,
    ConfigError with the install hint where Ray is not installed)."""
    require_ray()
    from harness.run.ray_cluster import RayCluster

    return RayCluster(choice.address)


@dataclass(frozen=True)
class ClockAnchor:
    """A node's clocks against the driver's, from the round trip that took least time: the
    node's reading fell between the driver's two, so it is off their midpoint by at most
    half the round trip."""

    monotonic_offset_ns: int
    """The node's monotonic clock minus the driver's: its records are put on the driver's
    run clock by this."""
    wall_skew_ns: int
    """The node's wall clock minus the driver's (what NTP leaves between them)."""
    uncertainty_ns: int
    """Half the shortest round trip: each figure is within this of the truth."""
    round_trips: int

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `clock` block of a node."""
        return {
            "monotonic_offset_ns": self.monotonic_offset_ns,
            "wall_skew_ns": self.wall_skew_ns,
            "uncertainty_ns": self.uncertainty_ns,
            "round_trips": self.round_trips,
            "note": "node clock minus the driver's, from the shortest of the round trips "
            "(NTP-style midpoint); the node's record times are converted to the driver's run "
            "clock by monotonic_offset_ns",
        }


def clock_anchor(samples: list[tuple[int, int, int, int, int, int]]) -> ClockAnchor:
    """The anchor from (driver perf, wall, node perf, wall, driver perf, wall) round trips."""
    best = min(samples, key=lambda s: s[4] - s[0])
    before_perf, before_wall, perf, wall, after_perf, after_wall = best
    return ClockAnchor(
        monotonic_offset_ns=perf - (before_perf + after_perf) // 2,
        wall_skew_ns=wall - (before_wall + after_wall) // 2,
        uncertainty_ns=(after_perf - before_perf + 1) // 2,
        round_trips=len(samples),
    )


def ray_workers(
    choice: RayChoice,
    cluster: Cluster,
    requested: int | Literal["auto"],
    opts: ReplayOptions,
    counted: dict[str, Any],
) -> WorkerChoice:
    """How many actors the placement asks for on this cluster, lowered where the run has
    less work than that (summary.workers says why)."""
    nodes = cluster.nodes()
    if choice.placement == "per-node":
        count, how = len(nodes), f"one per node ({len(nodes)} alive)"
    elif choice.placement == "per-cores":
        cpus = sum(n["cpus"] for n in nodes)
        count = cpus // choice.cores
        how = f"one per {choice.cores} CPUs of the cluster's {cpus}"
        if count < 1:
            raise ClusterError(
                f"--ray-placement per-cores:{choice.cores}: the cluster has {cpus} CPUs"
            )
    elif requested == "auto":
        count, how = len(nodes), f"auto: one per node ({len(nodes)} alive)"
    else:
        plural = "" if len(nodes) == 1 else "s"
        count, how = requested, f"{requested} asked, spread over {len(nodes)} node{plural}"
    picked = choose_workers(max(1, count), opts, counted, server_local=False)
    return WorkerChoice(requested, picked.used, f"Ray actors, {how}; {picked.reason}")


@dataclass
class Placed:
    """The run's actors placed, and what the manifest says of them."""

    shards: Shards
    anchors: list[ClockAnchor]
    """Each actor's, taken from its node's best: actors on one node share its clock."""
    manifest: dict[str, Any]


def place(cluster: Cluster, choice: RayChoice, count: int, say: Any) -> Placed:
    """Place `count` actors, check they run this harness version, and anchor each node's
    clock; ClusterError (before any run directory) where that fails."""
    one_per_node = choice.placement == "per-node"
    cores = choice.cores if choice.placement == "per-cores" else 1
    shards = cluster.place(count, cores, one_per_node, secrets.token_hex(4))
    try:
        versions = {n["harness_version"] for n in shards.nodes}
        if versions != {__version__}:
            raise ClusterError(
                f"the Ray cluster's nodes run harness {', '.join(sorted(versions))}, this "
                f"driver {__version__}: install the same harness on every node"
            )
        measured = [clock_anchor(shards.clock_samples(k)) for k in range(count)]
    except BaseException:
        shards.close()
        raise
    by_node: dict[str, list[int]] = {}
    for k, node in enumerate(shards.nodes):
        by_node.setdefault(node["node_id"], []).append(k)
    anchors = list(measured)
    nodes = []
    for node_id, workers in by_node.items():
        best = min((measured[k] for k in workers), key=lambda a: a.uncertainty_ns)
        for k in workers:
            anchors[k] = best
        first = shards.nodes[workers[0]]
        nodes.append(
            {
                "node_id": node_id,
                "ip": first["ip"],
                "workers": workers,
                "actors": [shards.names[k] for k in workers],
                "actor_pids": [shards.nodes[k]["pid"] for k in workers],
                "clock": best.to_dict(),
                "host": first["host"],
                "gpu": first["gpu"],
            }
        )
    say(
        f"load: {count} Ray actors on {len(nodes)} nodes "
        f"(clock uncertainty ≤ {max(a.uncertainty_ns for a in anchors) / 1e6:.2f} ms)"
    )
    manifest = cluster.describe() | {
        "placement": choice.placement,
        "cores_per_worker": cores,
        "nodes": nodes,
    }
    return Placed(shards, anchors, manifest)


class RayPool(PoolRecords):
    """The run's load workers as Ray actors; the same face as the local WorkerPool."""

    def __init__(self, load: LoadPlan, writer: RunWriter, placed: Placed) -> None:
        shards = placed.shards
        super().__init__(writer, shards.count)
        self.load = load
        self._shards = shards
        warmup = load.replay.warmup_requests
        self._specs = [
            # Each actor numbers its own requests: its share of the warm-up is its first ones.
            replace(
                spec,
                load=replace(
                    load,
                    anchor_perf_ns=load.anchor_perf_ns + anchor.monotonic_offset_ns,
                    replay=replace(
                        load.replay, warmup_requests=share(warmup, shards.count, spec.index)
                    ),
                ),
            )
            for spec, anchor in zip(
                worker_specs(load, shards.count, parent_pid=0), placed.anchors, strict=True
            )
        ]
        self._stop_asked = False

    def _live(self) -> set[int]:
        return {k for k in range(self.count) if not self._ended[k]}

    def _lost(self, k: int, why: str) -> None:
        self._worker_failed(k, f"load worker {k} ({self._shards.names[k]}) lost: {why}")

    def _pump(self, timeout_s: float) -> None:
        for k, got in self._shards.poll(self._live(), timeout_s):
            if isinstance(got, str):
                self._lost(k, got)
                continue
            for msg in got:
                self._handle(msg)

    def start(self) -> None:
        """Start every actor's replay and wait until each is ready to send."""
        for k, spec in enumerate(self._specs):
            self._shards.begin(k, spec)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(k in self._ready or self._ended[k] for k in range(self.count)):
            self._pump(0.2)
            if time.monotonic() > deadline:
                raise HarnessError(f"Ray load workers not ready after {READY_TIMEOUT_S:g} s")
        if not self._ready - {k for k in range(self.count) if self._ended[k]}:
            raise HarnessError("no Ray load worker started: " + "; ".join(self.worker_errors))

    def run(self, feed: LiveFeed, signals: StopSignals) -> ReplayOutcome:
        """Release the actors at one instant and journal their records until all end."""
        self._feed = feed
        clock = self.load.clock()
        lost = self._shards.release(clock.now_ns() + START_DELAY_NS, self._live())
        for k, why in lost.items():
            self._lost(k, why)
        stop_at: float | None = None
        with signals.replay(self.stop):
            while not all(self._ended):
                if self._stop_asked and stop_at is None:
                    self._shards.stop(self._live())
                    stop_at = time.monotonic() + STOP_GRACE_S
                if stop_at is not None and time.monotonic() > stop_at:
                    for k in self._live():
                        self._shards.kill(k)
                        self._worker_failed(
                            k, f"load worker {k} did not stop within the grace period after a stop"
                        )
                self._pump(POLL_S)
        return self.outcome

    def stop(self) -> None:
        """Ask every actor to stop (from the stop-signal handler: it only sets a flag)."""
        self._stop_asked = True

    def close(self) -> None:
        """No actor outlives the run."""
        self._shards.close()
