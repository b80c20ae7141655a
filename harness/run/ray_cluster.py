"""Ray, and the only module that imports it: connecting to a cluster, placing load workers on
its nodes as actors through a placement group, and the actor that runs a worker's replay.

An actor runs what a worker process runs (`replay_shard` on its WorkerSpec); it differs only
in how it is started and in how its messages come back: the driver polls each actor for the
batches it queued. Ray's errors become ClusterError here, or a lost worker's reason."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import time
import traceback
from dataclasses import replace
from typing import Any

import ray
import ray.exceptions
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from harness import __version__
from harness.errors import ClusterError
from harness.replay import error_text
from harness.run.worker_process import Shared, WorkerSpec, replay_shard
from harness.telemetry.cpu import host_inventory
from harness.telemetry.gpu import gpu_inventory

NAMESPACE = "harness"
"""The Ray namespace of the run's actors (named harness-load-<run>-<k>)."""

CONNECT_TIMEOUT_S = 5.0
"""How long a cluster address may take to accept a TCP connection before ray.init is tried
(ray.init itself retries an unreachable address for minutes)."""

PLACE_TIMEOUT_S = 60.0
"""How long the cluster may take to find room for the run's actors."""

LOCAL_OBJECT_STORE_BYTES = 200_000_000
"""Object store of a cluster started for the run (`--ray local`): records are small."""

TAKE_WAIT_S = 0.05
"""How long an actor holds the driver's poll open waiting for a message."""

CLOCK_ROUND_TRIPS = 8
"""Round trips per actor to anchor its clock against the driver's; the shortest one counts."""

ACTOR_THREADS = 4
"""Calls an actor serves at once: its replay, the driver's poll, release or stop, clock."""


class _ShardActor:
    """One load worker as a Ray actor: its replay runs in one of the actor's threads while
    the driver's polls take the messages it queued."""

    def __init__(self) -> None:
        self._shared = Shared.in_process()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()

    def put(self, message: tuple[Any, ...]) -> None:
        """Queue one message for the driver's next poll (the worker's Messages)."""
        self._queue.put(message)

    def clock(self) -> tuple[int, int]:
        """This node's monotonic and wall clocks now, in nanoseconds."""
        return time.perf_counter_ns(), time.time_ns()

    def node(self) -> dict[str, Any]:
        """Where this actor runs and what that node is."""
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "pid": os.getpid(),
            "harness_version": __version__,
            "host": host_inventory(),
            "gpu": gpu_inventory(),
        }

    def run(self, spec: WorkerSpec) -> None:
        """Replay the worker's shard; a failure is its last message."""
        # The actor's parent is its node's raylet: the worker stops by itself if that goes.
        spec = replace(
            spec, parent_pid=os.getppid(), parent_name="its Ray node's raylet (the node was lost)"
        )
        try:
            replay_shard(spec, self._shared, self)
        except BaseException as err:  # the driver records it
            detail = traceback.format_exc(limit=3).strip().splitlines()[-1]
            self._queue.put(("failed", spec.index, f"{error_text(err)} ({detail})"))

    def take(self, wait_s: float) -> list[tuple[Any, ...]]:
        """The messages queued so far, waiting up to `wait_s` for the first one."""
        try:
            messages = [self._queue.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages

    def release(self, start_ns: int) -> None:
        """Start the replay at `start_ns` on the run clock."""
        self._shared.start_ns.value = start_ns

    def stop(self) -> None:
        """Stop the replay (the driver was told to stop)."""
        self._shared.stop.value = 1


_Remote = ray.remote(_ShardActor)


def _address_problem(address: str) -> str | None:
    """Why `address` (HOST:PORT or ray://HOST:PORT) takes no TCP connection, or None."""
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        return f"{address!r} is not HOST:PORT"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
            return None
    except OSError as err:
        return err.strerror or str(err) or type(err).__name__


def _auto_address() -> str | None:
    """The address `auto` stands for (RAY_ADDRESS, else the cluster `ray start` left on
    this host), or None where Ray finds none."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except (ImportError, AttributeError, ConnectionError, ValueError):
        return None


def lost_reason(err: BaseException) -> str:
    """One line for why an actor's call came back without an answer."""
    kinds: list[tuple[type[BaseException], str]] = [
        (ray.exceptions.ActorDiedError, "its Ray actor died"),
        (ray.exceptions.ActorUnavailableError, "its Ray actor became unreachable"),
        (ray.exceptions.NodeDiedError, "its Ray node died"),
        (ray.exceptions.RayActorError, "its Ray actor was lost"),
        (ray.exceptions.RayTaskError, "its Ray actor's call failed"),
    ]
    what = next((text for kind, text in kinds if isinstance(err, kind)), "Ray error")
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return f"{what} ({type(err).__name__}: {first[:300]})"


class RayCluster:
    """A connection to a Ray cluster for one run (or a cluster started for it: `local`), as
    a context manager; placing actors needs it open."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._ours = False

    def __enter__(self) -> RayCluster:
        if ray.is_initialized():
            return self  # a caller's connection (a sweep's, a test's): not ours to close
        address: str | None = self.address
        if address == "auto":
            address = _auto_address()
            if address is None:
                raise ClusterError(
                    "--ray auto: no Ray cluster found (set RAY_ADDRESS, start one with "
                    "`ray start --head`, or use --ray local)"
                )
        if address != "local":
            assert address is not None
            problem = _address_problem(address)
            if problem is not None:
                raise ClusterError(f"--ray {self.address}: Ray cluster unreachable: {problem}")
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
        if address == "local":
            kwargs |= {
                "include_dashboard": False,
                "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
            }
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            raise ClusterError(f"--ray {self.address}: {error_text(err)}") from None
        self._ours = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ours:
            ray.shutdown()
            self._ours = False

    def describe(self) -> dict[str, Any]:
        """The cluster for the manifest: what was asked and what it came to, Ray's version,
        the nodes alive."""
        return {
            "address": self.address,
            "gcs_address": ray.get_runtime_context().gcs_address,
            "ray_version": ray.__version__,
            "nodes_alive": len(self.nodes()),
        }

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's alive nodes: id, address and CPUs."""
        return [
            {
                "node_id": n["NodeID"],
                "ip": n["NodeManagerAddress"],
                "cpus": int(n.get("Resources", {}).get("CPU", 0)),
            }
            for n in ray.nodes()  # type: ignore[no-untyped-call]
            if n.get("Alive")
        ]

    def place(self, count: int, cores: int, one_per_node: bool, run_id: str) -> RayShards:
        """`count` actors holding `cores` CPUs each, one per node or spread over the nodes
        (ClusterError where the cluster has no room for them in PLACE_TIMEOUT_S)."""
        strategy = "STRICT_SPREAD" if one_per_node else "SPREAD"
        group = placement_group([{"CPU": float(cores)}] * count, strategy=strategy)
        try:
            ray.get(group.ready(), timeout=PLACE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            remove_placement_group(group)
            nodes = self.nodes()
            cpus = sum(n["cpus"] for n in nodes)
            raise ClusterError(
                f"the Ray cluster ({len(nodes)} nodes, {cpus} CPUs) found no room for {count} "
                f"load workers of {cores} CPUs each ({strategy}) in {PLACE_TIMEOUT_S:g} s: ask "
                "fewer --workers or a smaller --ray-placement"
            ) from None
        names = [f"harness-load-{run_id}-{k}" for k in range(count)]
        actors: list[Any] = [
            _Remote.options(
                num_cpus=cores,
                max_concurrency=ACTOR_THREADS,
                max_restarts=0,
                name=name,
                namespace=NAMESPACE,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, placement_group_bundle_index=k
                ),
            ).remote()
            for k, name in enumerate(names)
        ]
        shards = RayShards(group, actors, names)
        try:
            shards.nodes = [
                dict(n, actor=name)
                for n, name in zip(
                    ray.get([a.node.remote() for a in actors], timeout=PLACE_TIMEOUT_S),
                    names,
                    strict=True,
                )
            ]
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as err:
            shards.close()
            raise ClusterError(f"the run's Ray actors did not start: {lost_reason(err)}") from None
        return shards


class RayShards:
    """The run's actors: their clocks, their replays, the driver's polls of their messages."""

    def __init__(self, group: PlacementGroup, actors: list[Any], names: list[str]) -> None:
        self._group = group
        self._actors = actors
        self.names = names
        self.count = len(actors)
        self.nodes: list[dict[str, Any]] = []
        """Each actor's node (node(), and the actor's name), in worker order."""
        self._takes: dict[Any, int] = {}
        self._busy: set[int] = set()

    def clock_samples(self, k: int) -> list[tuple[int, int, int, int, int, int]]:
        """CLOCK_ROUND_TRIPS readings of actor k's clocks between two of the driver's:
        (driver perf before, wall before, actor perf, actor wall, driver perf, wall after)."""
        samples = []
        actor = self._actors[k]
        for _ in range(CLOCK_ROUND_TRIPS):
            before_perf, before_wall = time.perf_counter_ns(), time.time_ns()
            try:
                perf, wall = ray.get(actor.clock.remote(), timeout=PLACE_TIMEOUT_S)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as err:
                raise ClusterError(
                    f"the clock of Ray actor {self.names[k]} could not be read: {lost_reason(err)}"
                ) from None
            after_perf, after_wall = time.perf_counter_ns(), time.time_ns()
            samples.append((before_perf, before_wall, perf, wall, after_perf, after_wall))
        return samples

    def begin(self, k: int, spec: WorkerSpec) -> None:
        """Start actor k's replay (it says ready, then waits for the release)."""
        self._actors[k].run.remote(spec)

    def release(self, start_ns: int, live: set[int]) -> dict[int, str]:
        """Give the live actors their start instant on the run clock; why each one that did
        not take it is lost."""
        calls = {k: self._actors[k].release.remote(start_ns) for k in sorted(live)}
        lost: dict[int, str] = {}
        for k, ref in calls.items():
            try:
                ray.get(ref, timeout=PLACE_TIMEOUT_S)
            except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as err:
                lost[k] = lost_reason(err)
        return lost

    def stop(self, live: set[int]) -> None:
        """Ask the live actors to stop (not waiting for them)."""
        for k in live:
            self._actors[k].stop.remote()

    def poll(self, live: set[int], timeout_s: float) -> list[tuple[int, list[Any] | str]]:
        """What the live actors sent within `timeout_s`: their messages, or (a str) why an
        actor is lost."""
        for k in live - self._busy:
            self._takes[self._actors[k].take.remote(TAKE_WAIT_S)] = k
            self._busy.add(k)
        refs = [ref for ref, k in self._takes.items() if k in live]
        if not refs:
            return []
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        got: list[tuple[int, list[Any] | str]] = []
        for ref in ready:
            k = self._takes.pop(ref)
            self._busy.discard(k)
            try:
                got.append((k, ray.get(ref)))
            except ray.exceptions.RayError as err:
                got.append((k, lost_reason(err)))
        return got

    def kill(self, k: int) -> None:
        """End actor k at once."""
        with contextlib.suppress(ray.exceptions.RayError):
            ray.kill(self._actors[k], no_restart=True)

    def close(self) -> None:
        """No actor outlives the run; its placement group goes with it."""
        for actor in self._actors:
            with contextlib.suppress(ray.exceptions.RayError):
                ray.kill(actor, no_restart=True)
        with contextlib.suppress(ray.exceptions.RayError):
            remove_placement_group(self._group)
