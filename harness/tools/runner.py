"""Tool runners for agent steps: replay (a wait of the recorded duration) or execute (the real
CPU kernel in a worker process), each returning one `harness.records.ToolRecord` per call.

Records' `start_ns`/`end_ns` are on the run clock (`now_ns`) and span the whole call as the
agent waits for it (in execute mode: including waiting for a free worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import ConfigError
from harness.records import ToolContext, ToolRecord, sleep_until
from harness.tools import kernels, limits, sandbox, scratch
from harness.tools.code_exec import run_code_exec
from harness.units import MS_PER_S, NS_PER_MS
from harness.workload.model import KNOWN_TOOL_KINDS, TOOL_KINDS, WAIT_KINDS, ToolCall

if TYPE_CHECKING:
    from harness.tools.calibrate import Calibration

__all__ = [
    "KNOWN_TOOL_KINDS",
    "TOOL_KINDS",
    "WAIT_KINDS",
    "ExecuteTools",
    "ReplayTools",
    "ToolContext",
    "ToolRecord",
]


ToolStatus = Literal["ok", "failed", "timeout", "cpu_limit", "memory_limit"]
_STATUSES: dict[str, ToolStatus] = {
    "ok": "ok",
    "failed": "failed",
    "timeout": "timeout",
    "cpu_limit": "cpu_limit",
    "memory_limit": "memory_limit",
}
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _record(
    call: ToolCall,
    ctx: ToolContext,
    mode: str,
    size: float | None,
    start_ns: int,
    end_ns: int,
    **measured: Any,
) -> ToolRecord:
    """The record of one call at its place in the session, with what the mode measured."""
    return ToolRecord(
        session_id=ctx.session_id,
        step_index=ctx.step_index,
        tool_index=ctx.tool_index,
        kind=call.kind,
        mode=mode,
        size=size,
        recorded_duration_ms=call.duration_ms,
        start_ns=start_ns,
        end_ns=end_ns,
        **measured,
    )


class ReplayTools:
    """Replay-mode tools: wait each call's recorded duration, measure nothing else."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self._now_ns = now_ns

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolRecord:
        """Wait `call.duration_ms` on the run clock and record the wait; never shorter than
        recorded (`sleep_until`)."""
        start = self._now_ns()
        await sleep_until(self._now_ns, start + round(max(0.0, call.duration_ms) * NS_PER_MS))
        return _record(call, ctx, "replay", call.size, start, self._now_ns())


@dataclass(frozen=True, slots=True)
class _Measured:
    """What a worker measured for one kernel call (pickled back to the event loop)."""

    status: ToolStatus
    error: str | None
    cpu_user_s: float | None
    cpu_system_s: float | None
    peak_rss_bytes: int | None
    work_start_perf_ns: int | None = None
    limits: _CallLimits | None = None


@dataclass(frozen=True, slots=True)
class _CallLimits:
    """The limits a kernel call ran under and how it was contained (ToolRecord's fields)."""

    sandbox: str | None = None
    limits_clamped: bool | None = None
    cpu_limit_s: float | None = None
    wall_limit_s: float | None = None
    tree_cpu_from: str | None = None


def _call_limits(
    kind: str, summary: kernels.Summary, wall_s: float | None, wall_clamped: bool
) -> _CallLimits:
    """A sandboxed call's limits from its summary; another kernel's wall limit."""
    if kind != "code_exec":
        wall = wall_s if wall_s else None
        return _CallLimits(None, wall_clamped if wall is not None else None, None, wall, None)
    sandbox, cpu_from = summary.get("sandbox"), summary.get("tree_cpu_from")
    cpu, wall_limit = summary.get("cpu_limit_s"), summary.get("wall_limit_s")
    return _CallLimits(
        sandbox if isinstance(sandbox, str) else None,
        summary.get("limits_clamped") is not None if summary else None,
        float(cpu) if isinstance(cpu, int | float) else None,
        float(wall_limit) if isinstance(wall_limit, int | float) else None,
        cpu_from if isinstance(cpu_from, str) else None,
    )


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux 4.0+); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _vmhwm_bytes() -> int | None:
    """This process's VmHWM in bytes, or None where /proc does not say."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _maxrss_bytes(usage: resource.struct_rusage) -> int:
    """ru_maxrss in bytes (KiB on Linux, bytes on macOS)."""
    return usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024


def _ignore_stop(signum: int, frame: object) -> None:
    """A worker's handler for the stop signals its parent handles."""


def _worker_init(prepare_seed: int | None, scratch_dir: str | None = None) -> None:
    """Pool initializer: temporary folders under the run's scratch folder (removed with it,
    even when this worker is killed), the kernels' cached inputs for a seed and the sandbox's
    view of the interpreter built up front. Ctrl-C and SIGTERM sent to the whole process
    group are the parent's to handle: a worker carries on until the parent shuts the pool
    (a handler, not SIG_IGN, so programs the worker starts get the default again)."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, _ignore_stop)
    if scratch_dir is not None:
        tempfile.tempdir = scratch_dir
    if prepare_seed is not None:
        kernels.prepare(prepare_seed)
        sandbox.sandbox_problem()


def _worker_pid() -> int:
    """Which worker answered (start-up check)."""
    return os.getpid()


def _measure(
    kind: str,
    size: float,
    seed: int,
    timeout_s: float | None = None,
    wall_s: float | None = None,
    allow_unsandboxed: bool = False,
    wall_clamped: bool = False,
) -> _Measured:
    """Run one kernel in this (worker) process and measure its CPU and peak memory. A
    `timeout_s` is the CPU limit of a sandboxed code_exec (clamped there to the maximum);
    `wall_s` is the wall-clock limit of any other kernel (status "timeout" past it), and
    `wall_clamped` whether that was clamped to the maximum. The sandbox's limits, whether
    any was clamped, how it was contained and where its CPU figure came from are kept."""
    work_start = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes
    hwm_reset = _reset_peak_rss()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    status: ToolStatus = "ok"
    error: str | None = None
    summary: kernels.Summary = {}
    try:
        if kind == "code_exec":
            summary = run_code_exec(
                size, seed, cpu_s=timeout_s, allow_unsandboxed=allow_unsandboxed
            )
        else:
            limit = limits.wall_limit(wall_s) if wall_s else contextlib.nullcontext()
            with limit:
                summary = kernels.kernel(kind)(size, seed)
    except limits.KernelTimeout as exc:
        status, error = "timeout", str(exc)
    except Exception as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = self1.ru_utime - self0.ru_utime
    system = self1.ru_stime - self0.ru_stime
    tree_user, tree_system = summary.get("cpu_user_s"), summary.get("cpu_system_s")
    if isinstance(tree_user, float | int) and isinstance(tree_system, float | int):
        # The sandboxed tree's own figure (its cgroup's, where there is one): wait4 of bwrap
        # misses processes that the PID namespace's teardown killed.
        user, system = user + tree_user, system + tree_system
    else:
        user += kids1.ru_utime - kids0.ru_utime
        system += kids1.ru_stime - kids0.ru_stime
    peak: int | None = None
    child_status = summary.get("status")
    if isinstance(child_status, str):
        status = _STATUSES.get(child_status, "failed")
        err = summary.get("error")
        error = str(err) if err is not None else None
        rss = summary.get("peak_rss_bytes")
        peak = rss if isinstance(rss, int) else None
    elif hwm_reset:
        peak = _vmhwm_bytes()
    elif _maxrss_bytes(self1) > _maxrss_bytes(self0):
        peak = _maxrss_bytes(self1)
    bounds = _call_limits(kind, summary, wall_s, wall_clamped)
    return _Measured(status, error, user, system, peak, work_start, bounds)


class ExecuteTools:
    """Execute-mode tools: each call runs its real kernel in a worker process.

    A call's size is `call.size` when the trace gives one, else the calibrated equivalent of
    its recorded duration on this host: (duration_ms - fixed_overhead_ms) / ms_per_unit.
    `prepare_seed` builds the kernels' cached inputs in each worker as it starts, so the
    first calls don't pay for generating them; `start()` (or `async with`) brings the workers
    up before the run. Workers are spawned, not forked, processes: a script that uses this
    needs the `if __name__ == "__main__":` guard. A cancelled call's kernel still finishes in
    its worker.

    Measured per call: CPU user/system seconds of the worker for the call (getrusage deltas)
    plus, for `code_exec`, those of the sandboxed process tree (its cgroup's CPU time where
    there is one, else wait4's), for other kinds those of any child the worker reaped.
    Every kernel has a wall-clock limit (`limits.kernel_wall_s` of its calibrated time, at
    most `limits.MAX_WALL_S`; code_exec's is the sandbox's). Temporary folders live in one
    scratch folder per ExecuteTools, removed on close, and those of a worker that died are
    removed when its death is seen; `allow_unsandboxed` lets code_exec run as root without
    bubblewrap (see `sandbox.require_sandbox`).
    `peak_rss_bytes` is, for `code_exec`, the sandboxed program's peak RSS;
    for the other kinds, the worker's peak RSS during the call (Linux VmHWM, reset through
    /proc/self/clear_refs before the call; includes the worker's baseline and its cached
    inputs), else the worker's lifetime ru_maxrss where that rose during the call; None
    where neither is known.
    """

    def __init__(
        self,
        calibration: Calibration,
        workers: int = 1,
        *,
        now_ns: Callable[[], int],
        prepare_seed: int | None = None,
        allow_unsandboxed: bool = False,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"tools.workers must be >= 1, got {workers}")
        self._calibration = calibration
        self._workers = workers
        self._now_ns = now_ns
        self._waits = ReplayTools(now_ns)  # remote-call kinds are waits
        self._prepare_seed = prepare_seed
        self._allow_unsandboxed = allow_unsandboxed
        self._pool: ProcessPoolExecutor | None = None
        self._scratch: Path | None = None

    @property
    def scratch_dir(self) -> Path | None:
        """The folder holding the workers' temporary folders (None before the first start)."""
        return self._scratch

    def _executor(self) -> ProcessPoolExecutor:
        """The worker pool, started on first use (and again after a worker died)."""
        if self._scratch is None:
            scratch.remove_dead()  # what killed runs left behind
            self._scratch = scratch.make_dir("tools")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self._prepare_seed, str(self._scratch)),
            )
        return self._pool

    async def start(self) -> None:
        """Start every worker and wait until each is ready (its cached inputs built, where
        `prepare_seed` is set), so that no call's time includes a worker's start."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        ready: set[int] = set()
        while len(ready) < self._workers:
            pings = [loop.run_in_executor(pool, _worker_pid) for _ in range(self._workers)]
            ready.update(await asyncio.gather(*pings))
            if len(ready) < self._workers:
                await asyncio.sleep(0.05)

    def check_kinds(self, kinds: set[str] | list[str] | tuple[str, ...]) -> None:
        """ConfigError naming the first kind that has no kernel or no calibration."""
        for kind in kinds:
            if kind in WAIT_KINDS:
                continue
            kernels.kernel(kind)
            if kind not in self._calibration.ms_per_unit:
                raise ConfigError(f"tool kind {kind!r} is not in the calibration")

    def size_for(self, call: ToolCall) -> float:
        """The work size of a call: its own size, else its duration turned into work units."""
        kernels.kernel(call.kind)
        if call.size is not None:
            return call.size
        ms_per_unit = self._calibration.ms_per_unit.get(call.kind)
        if ms_per_unit is None:
            raise ConfigError(f"tool kind {call.kind!r} is not in the calibration")
        fixed = max(0.0, self._calibration.fixed_overhead_ms.get(call.kind, 0.0))
        return max(0.0, call.duration_ms - fixed) / ms_per_unit

    async def run(self, call: ToolCall, ctx: ToolContext) -> ToolRecord:
        """Run the call's kernel off the event loop; failures are recorded, not raised.
        Remote-call kinds (WAIT_KINDS) are waits of their recorded duration."""
        if call.kind in WAIT_KINDS:
            return await self._waits.run(call, ctx)
        size = self.size_for(call)
        loop = asyncio.get_running_loop()
        pool = self._executor()
        timeout_s = call.timeout_ms / MS_PER_S if call.timeout_ms is not None else None
        known = call.kind in self._calibration.ms_per_unit
        predicted_ms = self._calibration.predict_ms(call.kind, size) if known else None
        wall_s, wall_clamped = limits.kernel_wall_s(predicted_ms)
        args = (call.kind, size, ctx.seed, timeout_s, wall_s, self._allow_unsandboxed, wall_clamped)
        start = self._now_ns()
        try:
            m = await loop.run_in_executor(pool, _measure, *args)
        except BrokenProcessPool as exc:
            if self._pool is pool:
                self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            if self._scratch is not None:
                scratch.remove_dead(self._scratch)  # the dead worker's temporary folders
            m = _Measured("failed", f"worker process died: {exc}", None, None, None)
        end = self._now_ns()
        lim = m.limits or _CallLimits()
        work_start: int | None = None
        if m.work_start_perf_ns is not None:
            # The run clock is perf_counter_ns minus an anchor; find the anchor here.
            work_start = m.work_start_perf_ns + (self._now_ns() - time.perf_counter_ns())
        return _record(
            call,
            ctx,
            "execute",
            size,
            start,
            end,
            cpu_user_s=m.cpu_user_s,
            cpu_system_s=m.cpu_system_s,
            peak_rss_bytes=m.peak_rss_bytes,
            status=m.status,
            error=m.error,
            work_start_ns=work_start,
            sandbox=lim.sandbox,
            limits_clamped=lim.limits_clamped,
            cpu_limit_s=lim.cpu_limit_s,
            wall_limit_s=lim.wall_limit_s,
            tree_cpu_from=lim.tree_cpu_from,
        )

    def close(self) -> None:
        """Stop the workers, waiting for calls in flight, and remove the scratch folder."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    async def aclose(self) -> None:
        """Stop the workers without blocking the event loop."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> ExecuteTools:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
