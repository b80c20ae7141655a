"""Sweeps of several hardware generations (`harness sweep --generation NAME=URL ...`): one
`harness sweep` child process per generation's server, all at the same time on one Ray
cluster (its CPUs split between them) or one after the other without Ray. Each child writes
an ordinary sweep directory OUT/NAME; OUT/generations.json records how they ran, and
`harness compare` of the directories is written into OUT/comparison."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Literal

from harness.errors import ConfigError
from harness.redact import redact
from harness.results import write_run_file
from harness.run.plan import RayChoice
from harness.run.ray_pool import Cluster, open_cluster
from harness.run.stop_signals import STOP_SIGNALS
from harness.run.worker_count import share

GENERATIONS_FILE = "generations.json"
GENERATIONS_KIND = "harness-generations"
SCHEMA_VERSION = 2
"""2: each generation lists its `servers` (one, or its replicas) where 1 had one `url`."""
COMPARISON_DIR = "comparison"
"""Where the comparison of the generations' sweeps goes, beside their directories."""
CAPACITY_FILE = "capacity.json"
"""A finished or stopped sweep's file (harness.capacity.CAPACITY_FILE; not imported: the
capacity module sits above the run layer)."""


@dataclass(frozen=True)
class Generation:
    """One hardware generation: its label (a folder name) and its attached server, or its
    replicas (one deployment's, routed by the sweep's --routing)."""

    name: str
    urls: tuple[str, ...]
    """As given, credentials included: only the child's --server options get them."""
    shown_urls: tuple[str, ...]
    """The URLs without credentials, for the console and generations.json."""


@dataclass(frozen=True)
class GenerationsPlan:
    """The generations' sweeps: the servers, the sweep's own options and where they go."""

    generations: tuple[Generation, ...]
    out: Path
    sweep_args: tuple[str, ...]
    """The sweep's command line after `sweep`, without --generation, --out, --ray and
    --workers (each child gets its own)."""
    ray: RayChoice | None
    """The one cluster every generation's load workers share; None: one after the other."""
    workers: int | Literal["auto"] | None
    """--workers as asked (None: the workload's)."""
    command: tuple[str, ...] = ()
    """The command line as typed, for the record (credentials redacted there)."""
    python: str = sys.executable


@dataclass(frozen=True)
class ClusterShare:
    """What one generation's sweep may hold of the cluster: its load workers (one CPU each)."""

    workers: int
    cpus: int
    note: str


def split_cluster(
    nodes: Sequence[dict[str, Any]],
    count: int,
    choice: RayChoice,
    asked: int | Literal["auto"] | None,
) -> list[ClusterShare]:
    """Each of `count` sweeps' share of the cluster's CPUs, so that sweeps running at once
    never wait on each other for room (ConfigError where the cluster has too few CPUs)."""
    cpus = sum(int(n["cpus"]) for n in nodes)
    if choice.placement == "per-cores":
        raise ConfigError(
            f"--ray-placement per-cores:{choice.cores} gives one sweep every CPU of the cluster: "
            "with --generation use spread (the default) or per-node, and each generation's "
            "sweep gets its share of the CPUs"
        )
    if choice.placement == "per-node":
        fewest = min((int(n["cpus"]) for n in nodes), default=0)
        if fewest < count:
            raise ConfigError(
                f"--ray-placement per-node with {count} --generation sweeps at once needs "
                f"{count} CPUs on every node; the smallest of the cluster's {len(nodes)} nodes "
                f"has {fewest}: use spread (the default)"
            )
        note = f"one per node ({len(nodes)} nodes), {count} sweeps at once"
        return [ClusterShare(len(nodes), len(nodes), note) for _ in range(count)]
    if cpus < count:
        raise ConfigError(
            f"--ray: the cluster has {cpus} CPUs, too few for {count} --generation sweeps at "
            "once (one load worker each): leave out --ray to run them one after the other"
        )
    wanted = asked if isinstance(asked, int) else len(nodes)
    plural = "" if len(nodes) == 1 else "s"
    how = (
        f"--workers {asked}"
        if isinstance(asked, int)
        else f"one per node ({len(nodes)} node{plural})"
    )
    shares = []
    for i in range(count):
        cpus_i = share(cpus, count, i)
        workers = max(1, min(wanted, cpus_i))
        lowered = f", lowered to its {cpus_i} CPUs" if workers < wanted else ""
        note = f"{how}{lowered}; {cpus_i} of the cluster's {cpus} CPUs for this sweep"
        shares.append(ClusterShare(workers, cpus_i, note))
    return shares


@dataclass
class _Child:
    """One generation's sweep as a child process."""

    generation: Generation
    argv: list[str]
    share: ClusterShare | None
    proc: subprocess.Popen[str] | None = None
    reader: threading.Thread | None = None
    started_at: str | None = None
    start_s: float | None = None
    wall_s: float | None = None
    exit_code: int | None = None

    def record(self, out: Path) -> dict[str, Any]:
        """The generation's entry in generations.json."""
        return {
            "name": self.generation.name,
            "servers": list(self.generation.shown_urls),
            "dir": str(out / self.generation.name),
            "started_at": self.started_at,
            "exit_code": self.exit_code,
            "wall_s": None if self.wall_s is None else round(self.wall_s, 3),
            "ray_workers": None if self.share is None else self.share.workers,
            "ray_cpus": None if self.share is None else self.share.cpus,
            "ray_note": None if self.share is None else self.share.note,
        }


@dataclass
class GenerationsOutcome:
    """How the generations' sweeps ended: the record written, the worst exit code."""

    exit_code: int
    record: dict[str, Any]
    compared: list[str] = field(default_factory=list)
    """The sweep directories the comparison covers (empty: no comparison)."""
    compare_command: list[str] = field(default_factory=list)


def _exit_code(returncode: int) -> int:
    """A child's exit status as a shell reports it (a signalled child: 128 + the signal)."""
    return 128 - returncode if returncode < 0 else returncode


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Output:
    """Each child's lines on this process's stdout, prefixed with its generation's name, one
    whole line at a time."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._lock = threading.RLock()  # re-entered by a stop signal's note in the main thread

    def line(self, prefix: str, text: str) -> None:
        with self._lock:
            self._say(f"{prefix} {text}")

    def follow(self, prefix: str, stream: IO[str]) -> threading.Thread:
        def pump() -> None:
            for text in stream:
                self.line(prefix, text.rstrip("\n"))

        thread = threading.Thread(target=pump, name=f"output {prefix}", daemon=True)
        thread.start()
        return thread


class _Forward:
    """SIGINT and SIGTERM passed on to the running children (each in a session of its own,
    so a terminal's Ctrl-C reaches them only through here): each stops as a sweep stopped by
    the signal does, keeping what it measured; no child is started after one."""

    def __init__(self, running: Callable[[], list[_Child]], say: Callable[[str], None]) -> None:
        self.signum: int | None = None
        self._running = running
        self._say = say

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        children = self._running()
        names = ", ".join(c.generation.name for c in children) or "none running"
        self._say(f"{signal.Signals(signum).name}: passed on to the sweeps ({names})")
        for child in children:
            if child.proc is not None:
                with suppress(ProcessLookupError):
                    os.kill(child.proc.pid, signum)

    def __enter__(self) -> _Forward:
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        except ValueError:  # not the main thread: the signals stay as they were
            self._previous = {}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def child_argv(
    plan: GenerationsPlan, generation: Generation, share: ClusterShare | None, address: str | None
) -> list[str]:
    """The `harness sweep` command line of one generation: the sweep's own options, its
    server, its directory and, on Ray, the shared cluster and its worker count."""
    argv = [plan.python, "-m", "harness", "sweep", *plan.sweep_args]
    for url in generation.urls:
        argv += ["--server", url]
    argv += ["--out", str(plan.out / generation.name)]
    if share is not None and address is not None:
        argv += ["--ray", address, "--workers", str(share.workers)]
    elif plan.workers is not None:
        argv += ["--workers", str(plan.workers)]
    return argv


def _start(child: _Child, output: _Output, env: dict[str, str]) -> None:
    child.started_at = _now()
    child.start_s = time.monotonic()
    child.proc = subprocess.Popen(
        child.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
        start_new_session=True,
    )
    assert child.proc.stdout is not None
    child.reader = output.follow(f"[{child.generation.name}]", child.proc.stdout)


def _wait(child: _Child, output: _Output) -> None:
    assert child.proc is not None and child.start_s is not None
    child.exit_code = _exit_code(child.proc.wait())
    if child.reader is not None:
        child.reader.join()
    child.wall_s = time.monotonic() - child.start_s
    name = child.generation.name
    if child.exit_code == 0:
        output.line(f"[{name}]", f"sweep finished in {child.wall_s:.1f} s")
    else:
        output.line(f"[{name}]", f"sweep exited {child.exit_code} after {child.wall_s:.1f} s")


def _cluster(plan: GenerationsPlan) -> AbstractContextManager[Cluster | None]:
    return open_cluster(plan.ray) if plan.ray is not None else nullcontext()


def _handed_address(choice: RayChoice, cluster: Cluster) -> str:
    """The address the children connect to: the cluster this process found or started
    (`auto`, `local`: its GCS address), else the one given."""
    if choice.address in ("auto", "local"):
        return str(cluster.describe()["gcs_address"])
    return choice.address


def _cluster_shares(
    plan: GenerationsPlan, choice: RayChoice, cluster: Cluster
) -> tuple[list[ClusterShare | None], str, dict[str, Any]]:
    """Each sweep's share of the cluster, the address the children connect to, and the
    cluster for generations.json."""
    nodes = cluster.nodes()
    shares: list[ClusterShare | None] = list(
        split_cluster(nodes, len(plan.generations), choice, plan.workers)
    )
    address = _handed_address(choice, cluster)
    record = {
        "address": choice.address,
        "cluster_address": address,
        "placement": choice.placement,
        "nodes": len(nodes),
        "cpus": sum(int(n["cpus"]) for n in nodes),
    }
    return shares, address, record


def run_generations(plan: GenerationsPlan, say: Callable[[str], None]) -> GenerationsOutcome:
    """Run every generation's sweep (at once on the plan's Ray cluster, else one after the
    other); the outcome holds the worst child's exit code and the sweeps to compare."""
    output = _Output(say)
    open_s = time.monotonic()
    with _cluster(plan) as cluster:
        # Taken once the cluster is open: a cluster Ray started here set its authentication
        # mode in this process's environment, and the children's drivers need the same.
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        shares: list[ClusterShare | None] = [None] * len(plan.generations)
        address: str | None = None
        ray_record: dict[str, Any] | None = None
        if plan.ray is not None and cluster is not None:
            shares, address, ray_record = _cluster_shares(plan, plan.ray, cluster)
            ray_record["connect_s"] = round(time.monotonic() - open_s, 3)
        children = [
            _Child(g, child_argv(plan, g, s, address), s)
            for g, s in zip(plan.generations, shares, strict=True)
        ]
        parallel = plan.ray is not None
        plan.out.mkdir(parents=True, exist_ok=True)  # once the cluster is known to have room
        record: dict[str, Any] = {
            "kind": GENERATIONS_KIND,
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "parallel": parallel,
            "started_at": _now(),
            "wall_s": None,
            "ray": ray_record,
            "command": [redact(a) for a in plan.command],
            "generations": [],
            "comparison": None,
        }

        def write() -> None:
            record["generations"] = [c.record(plan.out) for c in children]
            write_run_file(plan.out, GENERATIONS_FILE, json.dumps(record, indent=2) + "\n")

        write()
        for child, s in zip(children, shares, strict=True):
            where = "" if s is None else f" on Ray ({s.note})"
            shown = " + ".join(child.generation.shown_urls)
            output.line(f"[{child.generation.name}]", f"{shown}{where}")
        start_s = time.monotonic()

        def running() -> list[_Child]:
            return [c for c in children if c.proc is not None and c.exit_code is None]

        with _Forward(running, lambda text: output.line("[generations]", text)) as forward:
            try:
                for child in children:
                    if forward.signum is not None:
                        break  # no sweep starts after a stop signal
                    _start(child, output, env)
                    if not parallel:
                        _wait(child, output)
                for child in running():
                    _wait(child, output)
            except BaseException:
                # This process failed: no sweep outlives it; each stops as on SIGTERM.
                record["status"] = "failed"
                for child in running():
                    assert child.proc is not None
                    with suppress(ProcessLookupError):
                        os.kill(child.proc.pid, signal.SIGTERM)
                    child.exit_code = _exit_code(child.proc.wait())
                write()
                raise
        record["wall_s"] = round(time.monotonic() - start_s, 3)
        record["status"] = "interrupted" if forward.signum is not None else "finished"
        write()
    codes = [c.exit_code for c in children if c.exit_code is not None]
    if forward.signum is not None:
        codes.append(128 + forward.signum)
    outcome = GenerationsOutcome(max(codes, default=0), record)
    done = [c for c in children if _measured(plan.out / c.generation.name)]
    if len(done) >= 2:
        outcome.compared = [str(plan.out / c.generation.name) for c in done]
        outcome.compare_command = [
            "harness",
            "compare",
            *outcome.compared,
            "--out",
            str(plan.out / COMPARISON_DIR),
        ]
    return outcome


def _measured(sweep_dir: Path) -> bool:
    """Whether a generation's sweep left a capacity.json with at least one load point."""
    try:
        doc = json.loads((sweep_dir / CAPACITY_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and bool(doc.get("points"))


def run_comparison(
    plan: GenerationsPlan, outcome: GenerationsOutcome, say: Callable[[str], None]
) -> int | None:
    """`harness compare` of the sweep directories into OUT/comparison, as a child whose lines
    are prefixed `[compare]`; its exit code (recorded), or None where there is nothing to
    compare."""
    if not outcome.compare_command:
        return None
    output = _Output(say)
    argv = [plan.python, "-m", "harness", *outcome.compare_command[1:]]
    done = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert done.stdout is not None
    output.follow("[compare]", done.stdout).join()
    code = _exit_code(done.wait())
    outcome.record["comparison"] = {
        "dir": str(plan.out / COMPARISON_DIR),
        "sweeps": outcome.compared,
        "exit_code": code,
    }
    write_run_file(plan.out, GENERATIONS_FILE, json.dumps(outcome.record, indent=2) + "\n")
    return code
