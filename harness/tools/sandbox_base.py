"""What both sandboxes share: the result, the limits after clamping, how an end is
classified, and the small process and file helpers they use."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Literal

from harness.errors import ConfigError
from harness.tools import limits

SandboxStatus = Literal["ok", "failed", "timeout", "cpu_limit", "memory_limit"]
Backend = Literal["bwrap", "rlimits"]
MEMORY_ERROR_EXIT = 97
"""Exit status the child's prelude uses when the program raises MemoryError."""
OUTPUT_TAIL_BYTES = 64 * 1024
NOFILE_LIMIT = 32
NPROC_LIMIT = 64
FSIZE_LIMIT_BYTES = 16 * 1024 * 1024
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
POLL_S = 0.005


class SandboxUnavailable(ConfigError):
    """The sandbox cannot run here and running without it was not allowed."""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """How a sandboxed program ended, with its measured wall, CPU and memory use, and which
    limits were in force and how (`enforced`: limit -> mechanism; `clamped`: limits asked
    for above the fixed maxima; `limits`: the values applied)."""

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
    backend: Backend = "rlimits"
    host_uid: int | None = None
    limits: dict[str, float] = field(default_factory=dict)
    enforced: dict[str, str] = field(default_factory=dict)
    clamped: tuple[str, ...] = ()
    cpu_source: Literal["cgroup", "wait4"] = "wait4"
    tree_memory_peak_bytes: int | None = None
    tree_processes_peak: int | None = None
    cgroup: str | None = None
    """Which cgroup versions held the call's whole-tree limits ("v1", "v2", "v1+v2"), or None
    where none did (`enforced["cgroup"]` then says why)."""

    @property
    def containment(self) -> str:
        """How the call was contained: the backend and, where one held the whole-tree
        limits, the cgroup ("bwrap+cgroup-v2", "bwrap+cgroup-v1", "bwrap", "rlimits")."""
        return f"{self.backend}+cgroup-{self.cgroup}" if self.cgroup else self.backend


def prelude(program_path: str) -> str:
    """The interpreter's first code in either sandbox (`python -c PRELUDE <report fd>`):
    reports "S" to the report fd when the program starts and "E <VmHWM kB>" when it ends
    (read by `sandbox_pipes.parse_report`), runs the program at `program_path` as __main__,
    and exits MEMORY_ERROR_EXIT on a MemoryError."""
    return f"""\
import os, sys
_fd = int(sys.argv[1])
os.set_inheritable(_fd, False)
sys.argv = ["main.py"]
os.write(_fd, b"S\\n")
def _end():
    hwm = "-"
    try:
        with open("/proc/self/status") as f:
            hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
    except Exception:
        pass
    try:
        os.write(_fd, ("E " + hwm + "\\n").encode())
    except Exception:
        pass
try:
    with open({program_path!r}, "rb") as f:
        src = f.read()
    exec(compile(src, "main.py", "exec"), {{"__name__": "__main__"}})
except MemoryError:
    try:
        _end(); sys.stderr.write("MemoryError\\n"); sys.stdout.flush(); sys.stderr.flush()
    finally:
        os._exit({MEMORY_ERROR_EXIT})
finally:
    _end()
"""


@cache
def libc() -> ctypes.CDLL | None:
    """libc, loaded in the parent so that a forked child only calls into it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc's
    except OSError:
        return None


@cache
def libc_unshare() -> Callable[[int], int] | None:
    """libc's unshare(2)."""
    fn = getattr(libc(), "unshare", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    unshare: Callable[[int], int] = fn
    return unshare


@cache
def libc_mount() -> Callable[[bytes | None, bytes, bytes | None, int, bytes | None], int] | None:
    """libc's mount(2)."""
    fn = getattr(libc(), "mount", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
    fn.argtypes += [ctypes.c_char_p]
    fn.restype = ctypes.c_int
    mount: Callable[[bytes | None, bytes, bytes | None, int, bytes | None], int] = fn
    return mount


def close_quietly(fd: int) -> None:
    """Close `fd`, ignoring one already closed."""
    with contextlib.suppress(OSError):
        os.close(fd)


def is_root() -> bool:
    return os.geteuid() == 0


def wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait until `pid` has exited, without reaping it; False when the timeout came first."""
    if hasattr(os, "pidfd_open"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                return poll_fd(fd, timeout_s)
            finally:
                os.close(fd)
    deadline = time.monotonic() + timeout_s
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def poll_fd(fd: int, timeout_s: float) -> bool:
    """Whether `fd` (a pidfd or pipe) became readable within `timeout_s`."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))


def tail(f: IO[bytes] | Path) -> str:
    """The last OUTPUT_TAIL_BYTES of a file, decoded leniently."""
    try:
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(f.open("rb")) if isinstance(f, Path) else f
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - OUTPUT_TAIL_BYTES))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def rss_now_bytes() -> int | None:
    """This process's resident set size now (Linux), the most a forked child inherits."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def maxrss_peak(maxrss: int, parent_rss: int | None) -> int | None:
    """wait4's ru_maxrss where it exceeds the parent's RSS at fork (Linux carries the forked
    copy's high-water mark across exec, so a smaller figure may be the parent's)."""
    maxrss_bytes = maxrss if sys.platform == "darwin" else maxrss * 1024
    if maxrss_bytes > 0 and parent_rss is not None and maxrss_bytes > parent_rss:
        return maxrss_bytes
    return None


def classify(
    code: int | None,
    sig: int | None,
    timed_out: bool,
    cpu_s: float,
    cpu_soft: int,
    *,
    cpu_killed: bool = False,
    oom_killed: bool = False,
) -> SandboxStatus:
    """Map how the child ended onto a sandbox status."""
    if timed_out:
        return "timeout"
    if cpu_killed or sig == signal.SIGXCPU:
        return "cpu_limit"
    if oom_killed or code == MEMORY_ERROR_EXIT:
        return "memory_limit"
    if sig == signal.SIGKILL and cpu_s >= 0.9 * cpu_soft:  # the kernel kills at whole ticks
        return "cpu_limit"
    return "ok" if code == 0 else "failed"


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits one call runs under, after clamping."""

    cpu_s: float
    wall_s: float
    memory_bytes: int
    clamped: tuple[str, ...]

    @property
    def cpu_soft(self) -> int:
        return max(1, math.ceil(self.cpu_s))


def limits_for(cpu_s: float, memory_bytes: int, wall_s: float) -> Limits:
    """Validate and clamp the requested limits to the fixed maxima."""
    if not (cpu_s > 0 and wall_s > 0 and memory_bytes > 0):
        raise ValueError("sandbox limits must be positive")
    cpu, cpu_clamped = limits.clamp(cpu_s, limits.MAX_CPU_S)
    wall, wall_clamped = limits.clamp(wall_s, limits.MAX_WALL_S)
    memory, memory_clamped = limits.clamp(memory_bytes, limits.MAX_MEMORY_BYTES)
    named = (("cpu_s", cpu_clamped), ("wall_s", wall_clamped), ("memory_bytes", memory_clamped))
    return Limits(cpu, wall, int(memory), tuple(name for name, was in named if was))


def rlimits(lim: Limits, nproc: int, cpu_grace_s: int = 1) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) of every per-process limit: SIGXCPU at the CPU limit, SIGKILL
    `cpu_grace_s` later (0 where the program is a PID namespace's init, which ignores
    SIGXCPU)."""
    return [
        (resource.RLIMIT_CPU, lim.cpu_soft, lim.cpu_soft + cpu_grace_s),
        (resource.RLIMIT_AS, lim.memory_bytes, lim.memory_bytes),
        (resource.RLIMIT_NOFILE, NOFILE_LIMIT, NOFILE_LIMIT),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_FSIZE, FSIZE_LIMIT_BYTES, FSIZE_LIMIT_BYTES),
        (resource.RLIMIT_CORE, 0, 0),
    ]
