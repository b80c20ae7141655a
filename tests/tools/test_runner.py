"""Tool runners: replay waits, execute runs real kernels in a worker and records, never raises."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.records import RunClock, ToolContext
from harness.tools import file_search, limits
from harness.tools.calibrate import Calibration
from harness.tools.runner import ExecuteTools, ReplayTools, _measure
from harness.workload.model import ToolCall

MS = 1_000_000
CTX = ToolContext("s1", 2, 0, seed=3)


def _calibration() -> Calibration:
    return Calibration(
        host={},
        ms_per_unit={"parse": 0.5, "code_exec": 1.0},
        fixed_overhead_ms={"parse": 2.0, "code_exec": 20.0},
        r2={"parse": 1.0, "code_exec": 1.0},
        measured_at=datetime.now(UTC),
    )


@pytest.fixture(scope="module")
def tools() -> Iterator[ExecuteTools]:
    """One worker pool for the module (spawning a worker costs about a second)."""
    runner = ExecuteTools(_calibration(), 1, now_ns=RunClock().now_ns)
    yield runner
    runner.close()


async def test_replay_waits_the_recorded_duration() -> None:
    clock = RunClock()
    rec = await ReplayTools(clock.now_ns).run(ToolCall("web_search", 40.0, size=3.0), CTX)
    assert rec.end_ns - rec.start_ns >= 40 * MS
    assert (rec.mode, rec.status, rec.kind, rec.size) == ("replay", "ok", "web_search", 3.0)
    assert rec.cpu_user_s is None and rec.cpu_system_s is None and rec.peak_rss_bytes is None
    assert (rec.session_id, rec.step_index, rec.tool_index) == ("s1", 2, 0)


async def test_start_brings_the_worker_up(tools: ExecuteTools) -> None:
    await tools.start()
    start = time.perf_counter()
    await tools.start()
    assert time.perf_counter() - start < 2.0


def test_execute_sizes_from_calibration(tools: ExecuteTools) -> None:
    assert tools.size_for(ToolCall("parse", 12.0)) == pytest.approx(20.0)
    assert tools.size_for(ToolCall("parse", 1.0)) == 0.0
    assert tools.size_for(ToolCall("parse", 12.0, size=3.0)) == 3.0


async def test_execute_runs_the_kernel_and_measures_it(tools: ExecuteTools) -> None:
    rec = await tools.run(ToolCall("parse", 102.0), CTX)
    assert (rec.mode, rec.status, rec.error) == ("execute", "ok", None)
    assert rec.size == pytest.approx(200.0)
    assert rec.recorded_duration_ms == 102.0
    assert rec.end_ns > rec.start_ns
    assert rec.cpu_user_s is not None and rec.cpu_user_s > 0
    assert rec.cpu_system_s is not None and rec.cpu_system_s >= 0
    assert rec.peak_rss_bytes is not None and rec.peak_rss_bytes > 10 * 1024 * 1024


@pytest.mark.usefixtures("needs_bwrap")
async def test_execute_code_exec_goes_through_the_sandbox(tools: ExecuteTools) -> None:
    """The record says how the call was contained, its limits, and that none was clamped;
    a trace timeout above the maximum is clamped, and the record says so."""
    rec = await tools.run(ToolCall("code_exec", 0.0, size=20.0), CTX)
    assert rec.status == "ok", rec.error
    assert rec.cpu_user_s is not None and rec.cpu_user_s > 0
    assert rec.peak_rss_bytes is not None and rec.peak_rss_bytes > 0
    assert rec.sandbox is not None and rec.sandbox.startswith("bwrap")
    if os.geteuid() == 0:
        assert rec.sandbox.startswith("bwrap+cgroup-v") and rec.tree_cpu_from == "cgroup"
    assert rec.limits_clamped is False
    assert rec.cpu_limit_s is not None and 0 < rec.cpu_limit_s < limits.MAX_CPU_S
    assert rec.wall_limit_s is not None and rec.wall_limit_s <= limits.MAX_WALL_S
    huge = await tools.run(ToolCall("code_exec", 0.0, size=1.0, timeout_ms=20_005_000.0), CTX)
    assert huge.status == "ok", huge.error
    assert (huge.limits_clamped, huge.cpu_limit_s) == (True, limits.MAX_CPU_S)


async def test_other_kernels_record_their_wall_limit_and_no_sandbox(tools: ExecuteTools) -> None:
    rec = await tools.run(ToolCall("parse", 5.0), CTX)
    assert (rec.sandbox, rec.tree_cpu_from, rec.cpu_limit_s) == (None, None, None)
    assert (rec.wall_limit_s, rec.limits_clamped) == (limits.MIN_KERNEL_WALL_S, False)
    clamped = _measure("parse", 1.0, 0, wall_s=limits.MAX_WALL_S, wall_clamped=True).limits
    assert clamped is not None
    assert (clamped.wall_limit_s, clamped.limits_clamped) == (limits.MAX_WALL_S, True)
    replayed = await ReplayTools(RunClock().now_ns).run(ToolCall("parse", 1.0), CTX)
    assert replayed.limits_clamped is None and replayed.wall_limit_s is None


async def test_execute_records_a_failing_kernel(tools: ExecuteTools) -> None:
    rec = await tools.run(ToolCall("parse", 5.0, size=-1.0), CTX)
    assert rec.status == "failed"
    assert rec.error is not None and "ValueError" in rec.error
    assert rec.cpu_user_s is not None


async def test_execute_unknown_kind_is_a_config_error(tools: ExecuteTools) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="web_browse"):
        await tools.run(ToolCall("web_browse", 5.0), CTX)
    with pytest.raises(ConfigError, match="retrieval"):
        await tools.run(ToolCall("retrieval", 5.0), CTX)  # has a kernel, not calibrated
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ConfigError, match="summarize"):
        tools.check_kinds(["parse", "summarize"])


def test_execute_needs_a_worker() -> None:
    with pytest.raises(ConfigError, match="workers"):
        ExecuteTools(_calibration(), 0, now_ns=time.perf_counter_ns)


@pytest.mark.parametrize(("kind", "size"), [("parse", 1e7), ("file_search", 1e8)])
def test_a_kernel_past_its_wall_limit_is_stopped(kind: str, size: float) -> None:
    start = time.perf_counter()
    m = _measure(kind, size, 0, wall_s=0.3)
    assert m.status == "timeout" and m.error is not None and "0.3 s" in m.error
    assert time.perf_counter() - start < 3
    file_search.cleanup()


def test_every_kernel_call_gets_a_bounded_wall_limit() -> None:
    """The limit follows the calibrated time of the call, capped: a trace size of 1e9 KB
    of parsing gets MAX_WALL_S, not hours."""
    cal = _calibration()
    assert limits.kernel_wall_s(cal.predict_ms("parse", 1e9)) == (limits.MAX_WALL_S, True)
    assert limits.kernel_wall_s(cal.predict_ms("parse", 10))[0] == limits.MIN_KERNEL_WALL_S


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_a_killed_worker_leaves_no_temporary_folder() -> None:
    cal = Calibration(
        host={},
        ms_per_unit={"file_search": 0.1},
        fixed_overhead_ms={"file_search": 0.0},
        r2={"file_search": 1.0},
        measured_at=datetime.now(UTC),
    )
    stale = Path(tempfile.gettempdir()) / f"harness-files-{_dead_pid()}-stale"
    stale.mkdir()
    tools = ExecuteTools(cal, 1, now_ns=RunClock().now_ns)
    try:
        await tools.start()
        assert not stale.exists()  # what a killed run left is removed at start
        rec = await tools.run(ToolCall("file_search", 0.0, size=5.0), CTX)
        assert rec.status == "ok", rec.error
        scratch = tools.scratch_dir
        assert scratch is not None
        (tree,) = scratch.glob("harness-files-*")
        worker = int(tree.name.split("-")[2])
        os.kill(worker, signal.SIGKILL)
        while Path(f"/proc/{worker}").exists() and "Z" not in _state(worker):
            await asyncio.sleep(0.01)
        rec = await tools.run(ToolCall("file_search", 0.0, size=5.0), CTX)
        assert rec.status == "failed" and rec.error is not None and "died" in rec.error
        assert not tree.exists()
        rec = await tools.run(ToolCall("file_search", 0.0, size=5.0), CTX)  # a new worker
        assert rec.status == "ok", rec.error
    finally:
        tools.close()
    assert not scratch.exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def test_a_replayed_wait_is_never_shorter_than_recorded() -> None:
    """On a run clock that runs slower than the loop's timers (as uvloop's whole-millisecond
    timers can wake early), the wait sleeps again for what is left."""
    t0 = time.perf_counter_ns()

    def slow_clock() -> int:
        return t0 + (time.perf_counter_ns() - t0) // 2

    rec = asyncio.run(ReplayTools(slow_clock).run(ToolCall("web_search", 20.0), CTX))
    assert rec.end_ns - rec.start_ns >= 20_000_000
