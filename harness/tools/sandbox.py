"""Run harness-generated Python in a sandbox, measured exactly.

The sandbox is bubblewrap (`bwrap`, Debian's `bubblewrap`, the one Flatpak uses): the program
runs as `python -I -S -X utf8` in new user, PID, mount, network, IPC, UTS and cgroup
namespaces, with `--die-with-parent` and `--new-session`, a clean environment (no variable
of the harness's, where an API key may live), uid 65534 inside, and on the host an
unprivileged uid of its own (`SANDBOX_UID_BASE` + this process's pid modulo 2**22, so
concurrent workers never share a process count): when the harness is root the child drops to
it before exec'ing bwrap, because neither RLIMIT_NPROC nor a user namespace mapped to uid 0
would bind root. It sees only what Python needs, read-only (see `sandbox_view`), a new /proc,
a minimal /dev, and a size-limited tmpfs on /tmp (its working directory and HOME) and on
/dev/shm; nothing of the host's /tmp, /run, /etc, /root or checkout, no network at all.

Limits, set by the harness within the fixed maxima of `limits` (a larger request is clamped
and reported in `SandboxResult.clamped`): memory and process count of the whole tree by a
per-call cgroup where one can be made (`cgroups`), else per process (RLIMIT_AS, RLIMIT_NPROC
of the unprivileged uid); CPU of the whole tree by polling the cgroup's CPU time, with
RLIMIT_CPU per process as a backstop; RLIMIT_NOFILE, RLIMIT_FSIZE (which also caps stdout and
stderr), no core files; a wall-clock limit. `SandboxResult.enforced` says how each limit was
in force. Afterwards the whole tree is killed (the PID namespace's init, so every process in
the namespace, and the cgroup until empty): a `setsid` double-fork child does not outlive the
call. CPU seconds are the cgroup's for the whole tree, else wait4's (which misses processes
the namespace's teardown killed after a timeout). Peak RSS is the program interpreter's own
VmHWM, which a prelude reports when the program ends, else wait4's ru_maxrss where that
provably exceeds what the fork copied, else None; the tree's peak memory charge is reported
apart where the cgroup keeps it.

Without a usable bwrap the old child-process sandbox runs (rlimits, a network namespace where
allowed; `backend` = "rlimits"), but as root only when the caller allows it explicitly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Literal

from harness.errors import ConfigError
from harness.tools import limits, scratch
from harness.tools.cgroups import TreeCgroup
from harness.tools.sandbox_view import View, ViewError, python_view

SandboxStatus = Literal["ok", "failed", "timeout", "cpu_limit", "memory_limit"]
Backend = Literal["bwrap", "rlimits"]

MEMORY_ERROR_EXIT = 97
"""Exit status the child's prelude uses when the program raises MemoryError."""

OUTPUT_TAIL_BYTES = 64 * 1024
NOFILE_LIMIT = 32
NPROC_LIMIT = 64
FSIZE_LIMIT_BYTES = 16 * 1024 * 1024
TMPFS_BYTES = 16 * 1024 * 1024
"""Size of the sandbox's /tmp and of its /dev/shm."""
SANDBOX_UID_BASE = 2_000_000_000
INNER_UID = 65534
CPU_POLL_S = 0.02
INSTALL_HINT = "install bubblewrap (`apt-get install bubblewrap`, or `make setup-sandbox`)"
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_STAGE = "/tmp"
"""Where, in a private mount namespace of the child, a root harness stages the view for the
unprivileged bwrap (which cannot traverse paths such as /root); the host never sees it."""
_POLL_S = 0.005
_SETUP_TIMEOUT_S = 10.0
_REAP_TIMEOUT_S = 5.0
_PROGRAM = "/sandbox/main.py"

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
_BWRAP_PRELUDE = f"""\
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
    with open({_PROGRAM!r}, "rb") as f:
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


@cache
def _libc() -> ctypes.CDLL | None:
    """libc, loaded in the parent so that a forked child only calls into it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)  # the process's own symbols include libc's
    except OSError:
        return None


@cache
def _libc_unshare() -> Callable[[int], int] | None:
    """libc's unshare(2)."""
    libc = _libc()
    fn = getattr(libc, "unshare", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    unshare: Callable[[int], int] = fn
    return unshare


@cache
def _libc_mount() -> Callable[[bytes | None, bytes, bytes | None, int, bytes | None], int] | None:
    """libc's mount(2)."""
    libc = _libc()
    fn = getattr(libc, "mount", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
    fn.argtypes += [ctypes.c_char_p]
    fn.restype = ctypes.c_int
    mount: Callable[[bytes | None, bytes, bytes | None, int, bytes | None], int] = fn
    return mount


def find_bwrap() -> str | None:
    """The bubblewrap executable on PATH, or None."""
    return shutil.which("bwrap")


def _is_root() -> bool:
    return os.geteuid() == 0


def host_uid() -> int:
    """The host uid this process's sandboxes run as (its own, when it is not root)."""
    return SANDBOX_UID_BASE + os.getpid() % (1 << 22) if _is_root() else os.getuid()


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
                return _poll_fd(fd, timeout_s)
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


def _poll_fd(fd: int, timeout_s: float) -> bool:
    """Whether `fd` (a pidfd or pipe) became readable within `timeout_s`."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))


def _kill_group(pgid: int) -> None:
    """SIGKILL a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(f: IO[bytes] | Path) -> str:
    """The last OUTPUT_TAIL_BYTES of a file, decoded leniently."""
    try:
        with contextlib.ExitStack() as stack:
            handle = stack.enter_context(f.open("rb")) if isinstance(f, Path) else f
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - OUTPUT_TAIL_BYTES))
            return handle.read().decode("utf-8", errors="replace")
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


def _maxrss_peak(maxrss: int, parent_rss: int | None) -> int | None:
    """wait4's ru_maxrss where it exceeds the parent's RSS at fork (Linux carries the forked
    copy's high-water mark across exec, so a smaller figure may be the parent's)."""
    maxrss_bytes = maxrss if sys.platform == "darwin" else maxrss * 1024
    if maxrss_bytes > 0 and parent_rss is not None and maxrss_bytes > parent_rss:
        return maxrss_bytes
    return None


def _peak_rss_bytes(workdir: Path, maxrss: int, parent_rss: int | None) -> int | None:
    """The program's peak RSS: what its interpreter reported (VmHWM at exit), else wait4's."""
    try:
        return int((workdir / PEAK_FILE).read_text().strip()) * 1024
    except (OSError, ValueError):
        pass
    return _maxrss_peak(maxrss, parent_rss)


def _classify(
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
    if sig == signal.SIGKILL and cpu_s >= cpu_soft:
        return "cpu_limit"
    return "ok" if code == 0 else "failed"


@dataclass(frozen=True, slots=True)
class _Limits:
    """The limits one call runs under, after clamping."""

    cpu_s: float
    wall_s: float
    memory_bytes: int
    clamped: tuple[str, ...]

    @property
    def cpu_soft(self) -> int:
        return max(1, math.ceil(self.cpu_s))


def _limits(cpu_s: float, memory_bytes: int, wall_s: float) -> _Limits:
    """Validate and clamp the requested limits to the fixed maxima."""
    if not (cpu_s > 0 and wall_s > 0 and memory_bytes > 0):
        raise ValueError("sandbox limits must be positive")
    cpu, cpu_clamped = limits.clamp(cpu_s, limits.MAX_CPU_S)
    wall, wall_clamped = limits.clamp(wall_s, limits.MAX_WALL_S)
    memory, memory_clamped = limits.clamp(memory_bytes, limits.MAX_MEMORY_BYTES)
    named = (("cpu_s", cpu_clamped), ("wall_s", wall_clamped), ("memory_bytes", memory_clamped))
    return _Limits(cpu, wall, int(memory), tuple(name for name, was in named if was))


def _rlimits(lim: _Limits, nproc: int) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) of every per-process limit."""
    return [
        (resource.RLIMIT_CPU, lim.cpu_soft, lim.cpu_soft + 1),
        (resource.RLIMIT_AS, lim.memory_bytes, lim.memory_bytes),
        (resource.RLIMIT_NOFILE, NOFILE_LIMIT, NOFILE_LIMIT),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_FSIZE, FSIZE_LIMIT_BYTES, FSIZE_LIMIT_BYTES),
        (resource.RLIMIT_CORE, 0, 0),
    ]


# ---------------------------------------------------------------------------------------------
# bubblewrap


def _stage(binds: tuple[tuple[str, str], ...]) -> None:
    """In the child, as root: a private mount namespace with the view's sources bind-mounted
    under _STAGE, where the unprivileged bwrap can reach them."""
    unshare, mount = _libc_unshare(), _libc_mount()
    if unshare is None or mount is None:
        raise OSError(errno.ENOSYS, "no unshare/mount in libc")

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
    opts = b"mode=0755,size=1m"
    check(mount(b"harness", _STAGE.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts), "tmpfs")
    os.umask(0o022)
    for src, dest in binds:
        target = _STAGE + "/root" + dest
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(src):
            os.makedirs(target, exist_ok=True)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        check(mount(src.encode(), target.encode(), None, _MS_BIND | _MS_REC, None), f"bind {src}")


def _bwrap_child_setup(
    view: View | None, join_files: list[str], uid: int | None, rlimits: list[tuple[int, int, int]]
) -> Callable[[], None]:
    """The preexec function: stage the view (root), join the cgroup, set the per-process
    limits, then drop to the unprivileged uid; a failure is written to stderr first."""
    _libc_unshare(), _libc_mount()

    def setup() -> None:
        step = "stage"
        try:
            if view is not None:
                _stage(view.binds)
            step = "cgroup"
            for path in join_files:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
            step = "rlimits"
            for res, soft, hard in rlimits:
                resource.setrlimit(res, (soft, hard))
            if uid is not None:
                step = "uid"
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
        except OSError as exc:
            os.write(2, f"sandbox setup ({step}): {exc}\n".encode())
            raise

    return setup


def _bwrap_args(
    bwrap: str, view: View, staged: bool, info_fd: int, code_fd: int, report_fd: int
) -> list[str]:
    """The bwrap command line: namespaces, the read-only view, tmpfs, then the prelude."""
    args = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net"]
    args += ["--unshare-uts", "--unshare-cgroup-try", "--disable-userns"]
    args += ["--uid", str(INNER_UID), "--gid", str(INNER_UID), "--hostname", "sandbox"]
    args += ["--die-with-parent", "--new-session", "--clearenv", "--info-fd", str(info_fd)]
    env = {
        "PATH": f"{view.interpreter.rsplit('/', 1)[0]}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LD_LIBRARY_PATH": view.library_dir,
    }
    for key, value in env.items():
        args += ["--setenv", key, value]
    if staged:
        for top in sorted({dest.split("/")[1] for _, dest in view.binds}):
            args += ["--ro-bind", f"{_STAGE}/root/{top}", f"/{top}"]
    else:
        for src, dest in view.binds:
            args += ["--ro-bind", src, dest]
    for mask in view.masks:
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", mask]
    args += ["--ro-bind-data", str(code_fd), _PROGRAM, "--proc", "/proc", "--dev", "/dev"]
    for tmp in ("/tmp", "/dev/shm"):
        args += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", tmp]
    args += ["--remount-ro", "/", "--chdir", "/tmp"]
    args += [view.interpreter, "-I", "-S", "-X", "utf8", "-c", _BWRAP_PRELUDE, str(report_fd)]
    return args


def _read_info(fd: int, deadline: float) -> dict[str, object] | None:
    """bwrap's first info document (written before the program starts), or None."""
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not _poll_fd(fd, remaining):
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf += chunk
        try:
            doc = json.loads(buf)
        except ValueError:
            continue
        return doc if isinstance(doc, dict) else None


def _init_pidfd(info: dict[str, object] | None, bwrap_pid: int) -> int | None:
    """A pidfd of the PID namespace's init (bwrap's child), checked to be bwrap's child."""
    pid = info.get("child-pid") if info else None
    if not isinstance(pid, int) or pid <= 1:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line[:5] == "PPid:")
    except (OSError, StopIteration, ValueError):
        ppid = -1
    if ppid != bwrap_pid:
        os.close(fd)
        return None
    return fd


def _report(f: IO[bytes]) -> tuple[bool, bool, int | None]:
    """(program started, program ended, its VmHWM in bytes) from the prelude's report."""
    f.seek(0)
    lines = f.read(4096).decode("ascii", errors="replace").splitlines()
    started = "S" in lines
    ends = [line.split()[1:] for line in lines if line.startswith("E ")]
    hwm: int | None = None
    if ends and ends[0] and ends[0][0].isdigit():
        hwm = int(ends[0][0]) * 1024
    return started, bool(ends), hwm


def _processes_of(uid: int) -> int:
    """How many processes host uid `uid` runs now (RLIMIT_NPROC counts them all)."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
            count += int(line.split()[1]) == uid
    return count


def _tree_enforced(lim: _Limits, cg: TreeCgroup | None, uid: int, nproc: int) -> dict[str, str]:
    """How each limit is in force for a bwrap call."""
    cg_on = cg.enforced if cg is not None else {}
    per_process = f"RLIMIT_AS = {lim.memory_bytes} B per process"
    shared = "" if _is_root() else ", shared with that user's other processes"
    nproc_how = f"RLIMIT_NPROC = {nproc} for host uid {uid}{shared}"
    cpu = f"RLIMIT_CPU = {lim.cpu_soft} s per process"
    if cg is not None and cg.measures_cpu:
        cpu = f"cgroup CPU time of the whole tree polled every {CPU_POLL_S:g} s; " + cpu
    kill = "PID namespace's init killed" + (", then the cgroup emptied" if cg else "")
    return {
        "memory": f"{cg_on['memory']}; {per_process}" if "memory" in cg_on else per_process,
        "processes": (f"{cg_on['processes']}; {nproc_how}" if "processes" in cg_on else nproc_how),
        "cpu": f"{cpu} (limit {lim.cpu_s:g} s)",
        "wall": f"{lim.wall_s:g} s, then the whole tree is killed ({kill})",
        "files": f"RLIMIT_NOFILE = {NOFILE_LIMIT} per process",
        "disk": (
            f"tmpfs /tmp and /dev/shm of {TMPFS_BYTES} B each; RLIMIT_FSIZE = "
            f"{FSIZE_LIMIT_BYTES} B per file (stdout and stderr too); the rest read-only"
        ),
        "network": "new network namespace: no interfaces up, no host sockets",
        "identity": f"host uid {uid}, uid {INNER_UID} in a new user namespace, no capabilities",
        "filesystem": "read-only interpreter, stdlib and shared libraries; new /proc; minimal /dev",
    }


def _reap(
    proc: subprocess.Popen[bytes], init_fd: int | None, cg: TreeCgroup | None
) -> tuple[int, resource.struct_rusage]:
    """Kill the whole tree (init of the PID namespace, bwrap, the cgroup) and reap bwrap."""
    if init_fd is not None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(init_fd, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    _, wstatus, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    if init_fd is not None:
        _poll_fd(init_fd, _REAP_TIMEOUT_S)
    if cg is not None:
        cg.kill()
    return wstatus, usage


def _run_bwrap(code: str, lim: _Limits, bwrap: str) -> SandboxResult:
    """Run `code` under bubblewrap with the limits; see the module docstring."""
    try:
        view = python_view()
    except ViewError as exc:
        raise SandboxUnavailable(f"the sandbox cannot show this Python: {exc}") from None
    root = _is_root()
    uid = host_uid()
    cg = TreeCgroup(lim.memory_bytes, NPROC_LIMIT)
    init_fd: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(tempfile.TemporaryFile())
            err = stack.enter_context(tempfile.TemporaryFile())
            report = stack.enter_context(tempfile.TemporaryFile())
            program = stack.enter_context(tempfile.TemporaryFile())
            program.write(code.encode("utf-8"))
            program.flush()
            program.seek(0)
            info_r, info_w = os.pipe()
            stack.callback(_close_quietly, info_r)
            args = _bwrap_args(bwrap, view, root, info_w, program.fileno(), report.fileno())
            nproc = NPROC_LIMIT if root else _processes_of(uid) + NPROC_LIMIT
            parent_rss = _rss_now_bytes()
            setup = _bwrap_child_setup(
                view if root else None,
                cg.join_files(),
                uid if root else None,
                _rlimits(lim, nproc),
            )
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    args,
                    env={},
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    close_fds=True,
                    pass_fds=(info_w, program.fileno(), report.fileno()),
                    start_new_session=True,
                    preexec_fn=setup,
                )
            except subprocess.SubprocessError:
                raise SandboxUnavailable(_tail(err).strip() or "sandbox setup failed") from None
            finally:
                os.close(info_w)
            deadline = time.monotonic() + min(lim.wall_s, _SETUP_TIMEOUT_S)
            init_fd = _init_pidfd(_read_info(info_r, deadline), proc.pid)
            timed_out, cpu_killed = _watch(proc.pid, start, lim, cg)
            wstatus, usage = _reap(proc, init_fd, cg)
            wall = time.perf_counter() - start
            proc = None
            started, ended, hwm = _report(report)
            code_, sig = _exit_of(wstatus, started and not ended)
            tree_cpu = cg.cpu_s() if cg.measures_cpu else None
            user, system = tree_cpu if tree_cpu else (usage.ru_utime, usage.ru_stime)
            peak = hwm if hwm is not None else _maxrss_peak(usage.ru_maxrss, parent_rss)
            status = _classify(
                code_,
                sig,
                timed_out,
                user + system,
                lim.cpu_soft,
                cpu_killed=cpu_killed,
                oom_killed=cg.oom_killed(),
            )
            return SandboxResult(
                status=status,
                exit_code=code_,
                signal=sig,
                wall_s=wall,
                cpu_user_s=user,
                cpu_system_s=system,
                peak_rss_bytes=peak,
                stdout=_tail(out),
                stderr=_tail(err),
                network_isolated=True,
                backend="bwrap",
                host_uid=uid,
                limits={"cpu_s": lim.cpu_s, "wall_s": lim.wall_s, "memory_bytes": lim.memory_bytes},
                enforced=_tree_enforced(lim, cg, uid, nproc),
                clamped=lim.clamped,
                cpu_source="cgroup" if tree_cpu else "wait4",
                tree_memory_peak_bytes=cg.memory_peak_bytes(),
                tree_processes_peak=cg.processes_peak(),
            )
    finally:
        if proc is not None:
            with contextlib.suppress(ChildProcessError):
                _reap(proc, init_fd, cg)
        if init_fd is not None:
            os.close(init_fd)
        cg.remove()


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _watch(pid: int, start: float, lim: _Limits, cg: TreeCgroup) -> tuple[bool, bool]:
    """Wait for bwrap to exit: (timed out, killed for the tree's CPU time)."""
    fd = os.pidfd_open(pid)
    try:
        while True:
            remaining = start + lim.wall_s - time.perf_counter()
            if remaining <= 0:
                return True, False
            step = min(remaining, CPU_POLL_S) if cg.measures_cpu else remaining
            if _poll_fd(fd, step):
                return False, False
            used = cg.cpu_s()
            if used is not None and used[0] + used[1] >= lim.cpu_s:
                return False, True
    finally:
        os.close(fd)


def _exit_of(wstatus: int, killed_in_sandbox: bool) -> tuple[int | None, int | None]:
    """(exit code, signal) of the program: bwrap exits 128 + N when its command died of
    signal N, which is told apart from an exit code by the prelude not having reported an end."""
    if os.WIFSIGNALED(wstatus):
        return None, os.WTERMSIG(wstatus)
    code = os.WEXITSTATUS(wstatus)
    if killed_in_sandbox and 128 < code < 128 + signal.NSIG:
        return None, code - 128
    return code, None


@cache
def _probe(bwrap: str) -> str | None:
    """Why bubblewrap cannot run the sandbox here, or None when it can (tried once)."""
    try:
        result = _run_bwrap("print('ok')", _limits(10.0, 256 * 1024 * 1024, 20.0), bwrap)
    except (SandboxUnavailable, OSError) as exc:
        return str(exc)
    if result.status != "ok" or result.stdout.strip() != "ok":
        lines = result.stderr.strip().splitlines()
        return lines[-1] if lines else f"a trial program ended {result.status}"
    return None


def sandbox_problem() -> str | None:
    """Why code cannot be sandboxed in bubblewrap on this host, or None when it can."""
    bwrap = find_bwrap()
    if bwrap is None:
        return "bwrap (bubblewrap) is not installed"
    return _probe(bwrap)


def require_sandbox(allow_unsandboxed: bool) -> None:
    """SandboxUnavailable (a ConfigError) where generated code would run as root without
    bubblewrap and the user has not explicitly allowed that; the message says how to fix it."""
    if not _is_root() or allow_unsandboxed:
        return
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailable(
            f"--tools execute runs generated code, and this harness runs as root, but the "
            f"bubblewrap sandbox is not usable here: {problem}. To fix it, {INSTALL_HINT}; or "
            "pass --unsafe-no-sandbox (tools.unsafe_no_sandbox: true in the workload) to run "
            "it with per-process rlimits only, as root"
        )


def run_sandboxed(
    code: str,
    *,
    cpu_s: float,
    memory_bytes: int,
    wall_s: float,
    isolate_network: bool = True,
    allow_unsandboxed: bool = False,
) -> SandboxResult:
    """Run Python source `code` in the sandbox; never hangs past the wall limit, never raises
    for the program's own failures (they are in the status). Without a usable bubblewrap the
    rlimit sandbox runs instead, which as root needs `allow_unsandboxed`."""
    lim = _limits(cpu_s, memory_bytes, wall_s)
    bwrap = find_bwrap()
    problem = "bwrap (bubblewrap) is not installed" if bwrap is None else _probe(bwrap)
    if bwrap is not None and problem is None:
        return _run_bwrap(code, lim, bwrap)
    if _is_root() and not allow_unsandboxed:
        raise SandboxUnavailable(
            f"refusing to run generated code as root without the bubblewrap sandbox: {problem}; "
            f"{INSTALL_HINT}, or allow it explicitly (--unsafe-no-sandbox)"
        )
    return _run_rlimits(code, lim, isolate_network)


# ---------------------------------------------------------------------------------------------
# rlimits only (no bubblewrap)


def _child_setup(lim: _Limits, report_fd: int, isolate: bool) -> Callable[[], None]:
    """The preexec function: enter a network namespace, set limits, report isolation."""
    unshare = _libc_unshare() if isolate else None
    rlimits = _rlimits(lim, NPROC_LIMIT)

    def setup() -> None:
        isolated = False
        if unshare is not None:
            isolated = unshare(_CLONE_NEWNET) == 0 or unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0
        for res, soft, hard in rlimits:
            resource.setrlimit(res, (soft, hard))
        os.write(report_fd, b"1" if isolated else b"0")

    return setup


def _rlimits_enforced(lim: _Limits, isolated: bool) -> dict[str, str]:
    """How each limit is in force for an rlimits-only call (all per process)."""
    uid = os.getuid()
    binds = "does not bind root" if uid == 0 else f"for uid {uid}, shared with its processes"
    return {
        "memory": f"RLIMIT_AS = {lim.memory_bytes} B per process (not the whole tree)",
        "processes": f"RLIMIT_NPROC = {NPROC_LIMIT} ({binds})",
        "cpu": f"RLIMIT_CPU = {lim.cpu_soft} s per process (not the whole tree)",
        "wall": f"{lim.wall_s:g} s, then the process group is killed",
        "files": f"RLIMIT_NOFILE = {NOFILE_LIMIT} per process",
        "disk": f"RLIMIT_FSIZE = {FSIZE_LIMIT_BYTES} B per file; the host filesystem is writable",
        "network": "new network namespace" if isolated else "not isolated (no proxy variables)",
        "identity": f"uid {uid} of the harness",
        "filesystem": "the host's, as the harness sees it",
    }


@contextlib.contextmanager
def _workdir() -> Iterator[str]:
    workdir = str(scratch.make_dir("sandbox"))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_rlimits(code: str, lim: _Limits, isolate_network: bool) -> SandboxResult:
    """The child-process sandbox without bubblewrap: rlimits and, where allowed, no network."""
    pid: int | None = None
    with _workdir() as workdir:
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
                        preexec_fn=_child_setup(lim, write_fd, isolate_network),
                    )
                pid = proc.pid
                os.close(write_fd)
                write_fd = -1
                isolated = os.read(read_fd, 1) == b"1"
            finally:
                os.close(read_fd)
                if write_fd >= 0:
                    os.close(write_fd)
            timed_out = not _wait_exited(pid, lim.wall_s)
            _kill_group(pid)
            _, wstatus, usage = os.wait4(pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(wstatus)
            pid = None
            exit_code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None
            sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
            cpu_total = usage.ru_utime + usage.ru_stime
            status = _classify(exit_code, sig, timed_out, cpu_total, lim.cpu_soft)
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
                backend="rlimits",
                host_uid=os.getuid(),
                limits={"cpu_s": lim.cpu_s, "wall_s": lim.wall_s, "memory_bytes": lim.memory_bytes},
                enforced=_rlimits_enforced(lim, isolated),
                clamped=lim.clamped,
            )
        finally:
            if pid is not None:
                _kill_group(pid)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
