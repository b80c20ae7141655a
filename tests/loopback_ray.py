"""A real Ray cluster on loopback for the test session: a head node and worker nodes, each a
`ray start --block` process group of its own, torn down (TERM, then KILL) on every exit path.

Ray's socket paths have a length limit, so its temporary folders are short paths under /tmp
(a CI checkout's own path may be long)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ports import free_port

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
OBJECT_STORE_BYTES = 100_000_000
START_TIMEOUT_S = 120.0
CLUSTER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
"""Of the nodes and of every driver that talks to them (a token a `--ray local` run left in
~/.ray would otherwise turn token authentication on for one side only)."""


def _env() -> dict[str, str]:
    """The nodes' environment: this checkout first on the path, so actors import its code."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **CLUSTER_ENV)


def _node(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                str(RAY),
                "start",
                "--block",
                "--num-cpus",
                "1",
                "--object-store-memory",
                str(OBJECT_STORE_BYTES),
                "--dashboard-agent-listen-port",
                str(free_port()),
                "--disable-usage-stats",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,  # its own group: raylet, GCS and workers go with it
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # A node drains for 30 s on SIGTERM: a test cluster has nothing to keep.
    for sig, wait_s in ((signal.SIGKILL, 10.0),):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                proc.wait(timeout=5)
                return
            proc.poll()
            time.sleep(0.2)


def join_node(address: str, log: Path) -> subprocess.Popen[bytes]:
    """One more one-CPU node joined to the cluster at `address`, a process group of its own:
    `stop_node` of it is the node's loss (its raylet and GCS client; an actor's worker process,
    which Ray starts in a session of its own, outlives it until it sees its raylet gone)."""
    return _node(["--address", address, "--node-ip-address", "127.0.0.1"], log)


def stop_node(proc: subprocess.Popen[bytes]) -> None:
    """Kill a node's whole process group at once (safe to call twice)."""
    _stop(proc)


def wait_alive(address: str, nodes: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until exactly `nodes` nodes of the cluster are alive (a lost one counted out)."""
    deadline = time.monotonic() + timeout_s
    while (alive := alive_nodes(address)) != nodes:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster at {address} has {alive} nodes alive, not {nodes}")
        time.sleep(1)


def alive_nodes(address: str) -> int:
    """How many nodes the cluster at `address` has alive (from a driver of its own)."""
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR', "
        "log_to_driver=False); print(sum(1 for n in ray.nodes() if n['Alive']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) if done.returncode == 0 and lines and lines[-1].isdigit() else 0


def named_actors(address: str, namespace: str) -> list[str]:
    """The names of the live named actors in `namespace`, from a driver of its own."""
    code = (
        f"import ray; ray.init(address={address!r}, namespace={namespace!r}, "
        "logging_level='ERROR', log_to_driver=False); "
        "print('\\n'.join(ray.util.list_named_actors()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if line.startswith("harness-")]


@contextmanager
def loopback_cluster(nodes: int = 2) -> Iterator[str]:
    """A cluster of `nodes` one-CPU nodes on 127.0.0.1; yields its address HOST:PORT."""
    root = Path(f"/tmp/ray-{os.getpid()}")
    root.mkdir(exist_ok=True)
    port = free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            _node(
                [
                    "--head",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--include-dashboard=false",
                    "--temp-dir",
                    str(root / "h"),
                ],
                root / "head.log",
            )
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while alive_nodes(address) < 1:
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError(f"Ray head did not start: see {root / 'head.log'}")
            time.sleep(1)
        for k in range(1, nodes):
            procs.append(join_node(address, root / f"node{k}.log"))
        while alive_nodes(address) < nodes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"Ray nodes did not join: see the logs in {root}")
            time.sleep(1)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(root, ignore_errors=True)
