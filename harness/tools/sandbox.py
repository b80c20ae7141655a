"""Run harness-generated Python in a resource-limited child process, measured exactly.

The child is `python -I -S` (isolated mode, no site packages) in its own session and process
group, in a fresh temporary working directory that is removed afterwards in all cases, with a
clean environment and these limits set before exec: RLIMIT_CPU (whole seconds, rounded up),
RLIMIT_AS, RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_FSIZE and no core files. Network isolation:
the child enters a new network namespace (`unshare(CLONE_NEWNET)`, or a user plus network
namespace where that is refused) through libc, so it sees only a loopback device that is
down; where neither is allowed (not Linux, no privileges) isolation is best-effort (no proxy
variables in the environment) and `SandboxResult.network_isolated` says so. A wall-clock
limit kills the whole process group. CPU user/system seconds come from the child's
`os.wait4` rusage. Peak RSS is the program interpreter's own VmHWM, which a prelude writes
when the program ends (wait4's ru_maxrss is not used directly: on Linux it includes the
parent's RSS copied at fork); for a program killed by a signal it is ru_maxrss where that
provably exceeds what the fork copied, else None.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

SandboxStatus = Literal["ok", "failed", "timeout", "cpu_limit", "memory_limit"]

MEMORY_ERROR_EXIT = 97
"""Exit status the child's prelude uses when the program raises MemoryError."""

OUTPUT_TAIL_BYTES = 64 * 1024
NOFILE_LIMIT = 32
NPROC_LIMIT = 64
FSIZE_LIMIT_BYTES = 16 * 1024 * 1024
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_POLL_S = 0.005

PEAK_FILE = ".peak_rss_kib"
_PRELUDE = f"""\
import os, sys
sys.argv = ["main.py"]
_peak_path = os.path.join(os.getcwd(), {PEAK_FILE!r})
def _peak():
    try:
        with open("/proc/self/status") as f:
            hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")]
        with open(_peak_path, "w") as f:
            f.write(hwm[0])
    except Exception:
        pass
try:
    with open("main.py", "rb") as f:
        src = f.read()
    exec(compile(src, "main.py", "exec"), {{"__name__": "__main__"}})
except MemoryError:
    try:
        _peak(); sys.stderr.write("MemoryError\\n"); sys.stdout.flush(); sys.stderr.flush()
    finally:
        os._exit({MEMORY_ERROR_EXIT})
finally:
    _peak()
"""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How a sandboxed program ended, with its measured wall, CPU and memory use."""

    status: SandboxStatus
    exit_code: int | None
    signal: int | None
    wall_s: float
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_bytes: int | None
    stdout: str
    stderr: str
    network_isolated: bool


@cache
def _libc_unshare() -> Callable[[int], int] | None:
    """libc's unshare(2), loaded in the parent so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    fn = getattr(libc, "unshare", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    unshare: Callable[[int], int] = fn
    return unshare


def _child_setup(
    cpu_s: float, memory_bytes: int, report_fd: int, isolate: bool
) -> Callable[[], None]:
    """The preexec function: enter a network namespace, set limits, report isolation."""
    unshare = _libc_unshare() if isolate else None
    cpu_soft = max(1, math.ceil(cpu_s))

    def setup() -> None:
        isolated = False
        if unshare is not None:
            isolated = unshare(_CLONE_NEWNET) == 0 or unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0
        limits = [
            (resource.RLIMIT_CPU, cpu_soft, cpu_soft + 1),
            (resource.RLIMIT_AS, memory_bytes, memory_bytes),
            (resource.RLIMIT_NOFILE, NOFILE_LIMIT, NOFILE_LIMIT),
            (resource.RLIMIT_NPROC, NPROC_LIMIT, NPROC_LIMIT),
            (resource.RLIMIT_FSIZE, FSIZE_LIMIT_BYTES, FSIZE_LIMIT_BYTES),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        for res, soft, hard in limits:
            resource.setrlimit(res, (soft, hard))
        os.write(report_fd, b"1" if isolated else b"0")

    return setup


def _clean_env(workdir: str) -> dict[str, str]:
    """A minimal environment: no proxies, no Python variables, home and temp in the workdir."""
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
    }


def _wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited, without reaping it; False when the timeout came first."""
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))
            finally:
                os.close(fd)
    deadline = time.monotonic() + timeout_s
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _kill_group(pgid: int) -> None:
    """SIGKILL a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path) -> str:
    """The last OUTPUT_TAIL_BYTES of a file, decoded leniently."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - OUTPUT_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _rss_now_bytes() -> int | None:
    """This process's resident set size now (Linux), the most a forked child inherits."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peak_rss_bytes(workdir: Path, maxrss: int, parent_rss: int | None) -> int | None:
    """The program's peak RSS: what its interpreter reported (VmHWM at exit), else wait4's
    ru_maxrss where that exceeds the parent's RSS at fork (Linux carries the forked copy's
    high-water mark across exec, so a smaller figure may be the parent's, not the child's)."""
    try:
        return int((workdir / PEAK_FILE).read_text().strip()) * 1024
    except (OSError, ValueError):
        pass
    maxrss_bytes = maxrss if sys.platform == "darwin" else maxrss * 1024
    if maxrss_bytes > 0 and parent_rss is not None and maxrss_bytes > parent_rss:
        return maxrss_bytes
    return None


def _classify(
    code: int | None, sig: int | None, timed_out: bool, cpu_s: float, cpu_soft: int
) -> SandboxStatus:
    """Map how the child ended onto a sandbox status."""
    if timed_out:
        return "timeout"
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= cpu_soft):
        return "cpu_limit"
    if code == MEMORY_ERROR_EXIT:
        return "memory_limit"
    return "ok" if code == 0 else "failed"


def run_sandboxed(
    code: str,
    *,
    cpu_s: float,
    memory_bytes: int,
    wall_s: float,
    isolate_network: bool = True,
) -> SandboxResult:
    """Run Python source `code` in a limited child; never hangs past `wall_s`, never raises
    for the program's own failures (they are in the status)."""
    if cpu_s <= 0 or wall_s <= 0 or memory_bytes <= 0:
        raise ValueError("sandbox limits must be positive")
    workdir = tempfile.mkdtemp(prefix="harness-sandbox-")
    pid: int | None = None
    try:
        work = Path(workdir)
        (work / "main.py").write_text(code, encoding="utf-8")
        out_path, err_path = work / ".stdout", work / ".stderr"
        read_fd, write_fd = os.pipe()
        parent_rss = _rss_now_bytes()
        start = time.perf_counter()
        try:
            with out_path.open("wb") as out, err_path.open("wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _PRELUDE],
                    cwd=workdir,
                    env=_clean_env(workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    close_fds=True,
                    start_new_session=True,
                    preexec_fn=_child_setup(cpu_s, memory_bytes, write_fd, isolate_network),
                )
            pid = proc.pid
            os.close(write_fd)
            write_fd = -1
            isolated = os.read(read_fd, 1) == b"1"
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        timed_out = not _wait_exited(pid, wall_s)
        _kill_group(pid)
        _, wstatus, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(wstatus)
        pid = None
        exit_code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None
        sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
        cpu_total = usage.ru_utime + usage.ru_stime
        status = _classify(exit_code, sig, timed_out, cpu_total, max(1, math.ceil(cpu_s)))
        return SandboxResult(
            status=status,
            exit_code=exit_code,
            signal=sig,
            wall_s=wall,
            cpu_user_s=usage.ru_utime,
            cpu_system_s=usage.ru_stime,
            peak_rss_bytes=_peak_rss_bytes(work, usage.ru_maxrss, parent_rss),
            stdout=_tail(out_path),
            stderr=_tail(err_path),
            network_isolated=isolated,
        )
    finally:
        if pid is not None:
            _kill_group(pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        shutil.rmtree(workdir, ignore_errors=True)
