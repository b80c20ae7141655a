"""Host CPU and memory inventory and per-sample CPU load through psutil (its only importer)."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


def _cpu_model() -> str | None:
    """CPU model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def host_inventory() -> dict[str, Any]:
    """What the host is: CPU model, cores, memory, OS, Python."""
    vm = psutil.virtual_memory()
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "memory_total_bytes": int(vm.total),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


@dataclass(slots=True, frozen=True)
class CpuSample:
    """Host CPU load and the CPU time and memory of the harness and of the server's process tree.

    Server fields are None when no server pid was given or it could not be read; the
    server's seconds are summed over the processes alive now, so they drop when a child exits."""

    system_cpu_pct: float | None
    per_core_pct: list[float] | None
    harness_cpu_user_s: float
    harness_cpu_system_s: float
    harness_rss_bytes: int
    server_cpu_user_s: float | None
    server_cpu_system_s: float | None
    server_rss_bytes: int | None
    server_processes: int | None


def _busy_and_total(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds from one cpu_times tuple, counted the way psutil does."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return busy, total


def _percent(before: Sequence[Any], after: Sequence[Any]) -> float | None:
    """Busy % of the given cores together between two lists of cpu_times tuples (the kernel's
    all-CPU line is the sum of the per-core lines); None if no time passed."""
    if len(before) != len(after) or not after:
        return None
    b0 = t0 = b1 = t1 = 0.0
    for x, y in zip(before, after, strict=True):
        bx, tx = _busy_and_total(x)
        by, ty = _busy_and_total(y)
        b0, t0, b1, t1 = b0 + bx, t0 + tx, b1 + by, t1 + ty
    if t1 - t0 <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * (b1 - b0) / (t1 - t0)))


def process_tree(pid: int) -> frozenset[int] | None:
    """The pids of process `pid` and all its descendants now (vLLM's workers are children of
    the server); None where the process is gone or may not be read."""
    try:
        root = psutil.Process(pid)
        return frozenset([pid, *(c.pid for c in root.children(recursive=True))])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def process_env(pid: int, name: str) -> tuple[bool, str | None]:
    """(readable, value) of environment variable `name` of process `pid`, as it started:
    (True, None) where it is unset, (False, None) where the environment cannot be read."""
    try:
        return True, psutil.Process(pid).environ().get(name)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False, None


TREE_REFRESH_S = 2.0
"""How often the server's process tree is listed again (new or exited children)."""


class CpuReader:
    """Reads host CPU % (system and per core) with its own baseline, and per-process CPU/RSS."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.problems: list[str] = []
        self._me = psutil.Process()
        self._last_cores = psutil.cpu_times(percpu=True)
        self._server: psutil.Process | None = None
        self._tree: list[psutil.Process] = []
        self._tree_until = 0.0

    def _server_tree(self, pid: int) -> list[psutil.Process]:
        """The server process and its children (recursive); [] once it is gone. Listing the
        children scans /proc, so the list is refreshed every TREE_REFRESH_S, not per sample."""
        now = time.monotonic()
        if self._server is not None and self._server.pid == pid and now < self._tree_until:
            return self._tree  # a process gone since the listing fails its read and is skipped
        try:
            if self._server is None or self._server.pid != pid:
                self._server = psutil.Process(pid)
            self._tree = [self._server, *self._server.children(recursive=True)]
            self._tree_until = now + TREE_REFRESH_S
            return self._tree
        except (psutil.NoSuchProcess, psutil.AccessDenied) as err:
            self._report(f"server process {pid}: {type(err).__name__}")
            self._server = None
            self._tree = []
            return []

    def _report(self, problem: str) -> None:
        """Record a problem once."""
        if problem not in self.problems:
            self.problems.append(problem)

    def read(self, server_pid: int | None = None) -> CpuSample:
        """Load since the previous read, and the processes' cumulative CPU seconds and RSS now."""
        cores = psutil.cpu_times(percpu=True)  # one /proc/stat read serves both figures
        system_pct = _percent(self._last_cores, cores)
        per_core = [_percent([a], [b]) for a, b in zip(self._last_cores, cores, strict=False)]
        self._last_cores = cores
        with self._me.oneshot():
            me_times = self._me.cpu_times()
            me_rss = self._me.memory_info().rss
        pid = server_pid if server_pid is not None else self.server_pid
        s_user: float | None = None
        s_sys: float | None = None
        s_rss: int | None = None
        s_n: int | None = None
        if pid is not None:
            procs = self._server_tree(pid)
            if procs:
                s_user, s_sys, s_rss, s_n = 0.0, 0.0, 0, 0
                for proc in procs:
                    try:
                        with proc.oneshot():
                            t = proc.cpu_times()
                            rss = proc.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.ZombieProcess):
                        continue  # exited between listing and reading
                    except psutil.AccessDenied:
                        self._report(f"server process {proc.pid}: AccessDenied")
                        continue
                    if not rss:
                        continue  # a zombie: exited, not yet reaped
                    s_user += t.user
                    s_sys += t.system
                    s_rss += rss
                    s_n += 1
                if not s_n:  # the whole tree is gone: unavailable, not zero; list it again
                    s_user = s_sys = s_rss = s_n = None
                    self._tree_until = 0.0
                    self._server_tree(pid)
        return CpuSample(
            system_cpu_pct=system_pct,
            per_core_pct=None if any(p is None for p in per_core) else [p or 0.0 for p in per_core],
            harness_cpu_user_s=me_times.user,
            harness_cpu_system_s=me_times.system,
            harness_rss_bytes=int(me_rss),
            server_cpu_user_s=s_user,
            server_cpu_system_s=s_sys,
            server_rss_bytes=s_rss,
            server_processes=s_n,
        )
