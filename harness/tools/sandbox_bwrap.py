"""The bubblewrap sandbox (see `sandbox` for what it contains and how).

As root, the child stages the view in a private mount namespace (bwrap, running as the
unprivileged host uid, could not reach paths such as /root), joins the call's cgroup, sets the
per-process limits and drops to that uid before exec'ing bwrap. bwrap runs the program as the
PID namespace's init (`--as-pid-1`): when it dies, the kernel kills every process left in the
namespace, and bwrap, its parent, reaps it (no zombie is left to the host's pid 1). The
prelude reports to an inherited pipe when the program started and ended (with its VmHWM), which
tells bwrap's exit status 128 + N for signal N apart from an exit code; stdout and stderr are
pipes too (`sandbox_pipes`), drained while the program runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.tools.cgroups import TreeCgroup
from harness.tools.sandbox_base import (
    CLONE_NEWNS,
    FSIZE_LIMIT_BYTES,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    Limits,
    SandboxResult,
    SandboxUnavailable,
    classify,
    close_quietly,
    is_root,
    libc_mount,
    libc_unshare,
    limits_for,
    maxrss_peak,
    poll_fd,
    prelude,
    rlimits,
    rss_now_bytes,
    wait_exited,
)
from harness.tools.sandbox_pipes import OUTPUT_LIMIT_BYTES, Pipes, parse_report
from harness.tools.sandbox_probe import (
    DISABLE_USERNS_VERSION,
    SIZE_VERSION,
    Features,
    bwrap_features,
    label,
)
from harness.tools.sandbox_view import View, ViewError, python_view

TMPFS_BYTES = 16 * 1024 * 1024
"""Size of the sandbox's /tmp and of its /dev/shm."""
SANDBOX_UID_BASE = 2_000_000_000
INNER_UID = 65534
CPU_POLL_S = 0.02
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_STAGE = "/tmp"
"""Where, in a private mount namespace of the child, a root harness stages the view for the
unprivileged bwrap (which cannot traverse paths such as /root); the host never sees it."""
_STAGED_TMPFS = {"/tmp": "tmp", "/dev/shm": "shm"}
"""Where under _STAGE a root harness mounts the sandbox's tmpfs when bwrap has no --size."""
_SETUP_TIMEOUT_S = 10.0
_REAP_TIMEOUT_S = 5.0
_PROGRAM = "/sandbox/main.py"
_BWRAP_PRELUDE = prelude(_PROGRAM)


def host_uid() -> int:
    """The host uid this process's sandboxes run as (its own, when it is not root)."""
    return SANDBOX_UID_BASE + os.getpid() % (1 << 22) if is_root() else os.getuid()


def _stage(binds: tuple[tuple[str, str], ...], tmpfs: bool) -> None:
    """In the child, as root: a private mount namespace with the view's sources bind-mounted
    under _STAGE, where the unprivileged bwrap can reach them, and with `tmpfs` the
    size-limited tmpfs for its /tmp and /dev/shm (for a bwrap without --size)."""
    unshare, mount = libc_unshare(), libc_mount()
    if unshare is None or mount is None:
        raise OSError(errno.ENOSYS, "no unshare/mount in libc")

    def check(rc: int, what: str) -> None:
        if rc != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
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
    if tmpfs:
        sized = f"mode=1777,size={TMPFS_BYTES}".encode()
        for name in _STAGED_TMPFS.values():
            target = f"{_STAGE}/{name}"
            os.makedirs(target, exist_ok=True)
            check(mount(b"sandbox", target.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, sized), name)


def _bwrap_child_setup(
    view: View | None,
    staged_tmpfs: bool,
    join_files: list[str],
    join_fd: int,
    uid: int | None,
    rlimits: list[tuple[int, int, int]],
) -> Callable[[], None]:
    """The preexec function: stage the view (root), join the cgroup, set the per-process
    limits, then drop to the unprivileged uid; a failure is written to stderr first. A
    cgroup that cannot be joined is only left out: "<file>\t<why>" lines to `join_fd`."""
    libc_unshare(), libc_mount()

    def setup() -> None:
        step = "stage"
        try:
            if view is not None:
                _stage(view.binds, staged_tmpfs)
            for path in join_files:
                try:
                    with open(path, "w") as f:
                        f.write(str(os.getpid()))
                except OSError as exc:
                    os.write(join_fd, f"{path}\t{exc.strerror or exc}\n".encode())
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


def _join_failures(fd: int) -> dict[str, str]:
    """What the child reported of cgroups it could not join: {cgroup.procs file: why}."""
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    lines = data.decode("utf-8", errors="replace").splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def _bwrap_args(
    bwrap: str,
    features: Features,
    view: View,
    staged: bool,
    fds: tuple[int, int, int],
) -> list[str]:
    """The bwrap command line: namespaces, the read-only view, tmpfs, then the prelude;
    options newer than MIN_VERSION only where this bwrap has them. `fds`: bwrap's info fd,
    the program's and the report's."""
    info_fd, code_fd, report_fd = fds
    args = [bwrap, "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net"]
    args += ["--unshare-uts", "--unshare-cgroup-try"]
    if features.disable_userns:
        args += ["--disable-userns"]
    args += ["--uid", str(INNER_UID), "--gid", str(INNER_UID), "--hostname", "sandbox"]
    args += ["--as-pid-1", "--die-with-parent", "--new-session", "--clearenv"]
    args += ["--info-fd", str(info_fd)]
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
    size = ["--size", "4096"] if features.tmpfs_size else []
    for mask in view.masks:
        args += ["--perms", "0555", *size, "--tmpfs", mask, "--remount-ro", mask]
    args += ["--ro-bind-data", str(code_fd), _PROGRAM, "--proc", "/proc", "--dev", "/dev"]
    for tmp, name in _STAGED_TMPFS.items():
        if features.tmpfs_size:
            args += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", tmp]
        elif staged:
            args += ["--bind", f"{_STAGE}/{name}", tmp]
        else:
            args += ["--perms", "1777", "--tmpfs", tmp]
    args += ["--remount-ro", "/", "--chdir", "/tmp"]
    args += [view.interpreter, "-I", "-S", "-X", "utf8", "-c", _BWRAP_PRELUDE, str(report_fd)]
    return args


def _read_info(fd: int, deadline: float) -> dict[str, object] | None:
    """bwrap's first info document (written before the program starts), or None."""
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poll_fd(fd, remaining):
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


def _processes_of(uid: int) -> int:
    """How many processes host uid `uid` runs now (RLIMIT_NPROC counts them all)."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            line = next(x for x in status.read_text().splitlines() if x.startswith("Uid:"))
            count += int(line.split()[1]) == uid
    return count


def _disk(features: Features, staged: bool) -> str:
    """How the sandbox's writable space is bounded."""
    per_file = (
        f"RLIMIT_FSIZE = {FSIZE_LIMIT_BYTES} B per file; stdout and stderr are pipes, closed "
        f"after {OUTPUT_LIMIT_BYTES} B each"
    )
    if features.tmpfs_size or staged:
        return f"tmpfs /tmp and /dev/shm of {TMPFS_BYTES} B each; {per_file}; the rest read-only"
    return (
        f"tmpfs /tmp and /dev/shm without a size limit (bubblewrap {label(features.version)} "
        f"has no --size, {label(SIZE_VERSION)} and newer do): bounded only by the memory "
        f"limit where a cgroup holds it; {per_file}; the rest read-only"
    )


def _tree_enforced(
    lim: Limits, cg: TreeCgroup, uid: int, nproc: int, features: Features, staged: bool
) -> dict[str, str]:
    """How each limit is in force for a bwrap call."""
    cg_on = cg.enforced
    per_process = f"RLIMIT_AS = {lim.memory_bytes} B per process"
    shared = "" if is_root() else ", shared with that user's other processes"
    nproc_how = f"RLIMIT_NPROC = {nproc} for host uid {uid}{shared}"
    cpu = f"RLIMIT_CPU = {lim.cpu_soft} s per process (SIGKILL)"
    if cg.measures_cpu:
        cpu = f"cgroup CPU time of the whole tree polled every {CPU_POLL_S:g} s; " + cpu
    kill = "PID namespace's init killed" + (", then the cgroup emptied" if cg.dirs else "")
    how = {
        "memory": f"{cg_on['memory']}; {per_process}" if "memory" in cg_on else per_process,
        "processes": (f"{cg_on['processes']}; {nproc_how}" if "processes" in cg_on else nproc_how),
        "cpu": f"{cpu} (limit {lim.cpu_s:g} s)",
        "wall": f"{lim.wall_s:g} s, then the whole tree is killed ({kill})",
        "files": f"RLIMIT_NOFILE = {NOFILE_LIMIT} per process",
        "disk": _disk(features, staged),
        "network": "new network namespace: only its own loopback, no host address or socket",
        "identity": f"host uid {uid}, uid {INNER_UID} in a new user namespace, no capabilities, "
        + (
            "no user namespace of its own (--disable-userns)"
            if features.disable_userns
            else f"may make nested user namespaces (bubblewrap {label(features.version)} has "
            f"no --disable-userns, {label(DISABLE_USERNS_VERSION)} and newer do)"
        ),
        "filesystem": "read-only interpreter, stdlib and shared libraries; new /proc; minimal /dev",
    }
    if cg.note is not None:
        how["cgroup"] = cg.note
    return how


def _reap(
    proc: subprocess.Popen[bytes], init_fd: int | None, cg: TreeCgroup | None
) -> tuple[int, resource.struct_rusage]:
    """Kill the whole tree and reap bwrap: first the PID namespace's init (the program, so
    every process in the namespace dies with it), then bwrap once it has reaped that init
    (killing bwrap first would leave the init a zombie of the host's pid 1), then whatever
    is left in the cgroup."""
    if init_fd is not None:
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(init_fd, signal.SIGKILL)
        poll_fd(init_fd, _REAP_TIMEOUT_S)
    if not wait_exited(proc.pid, _REAP_TIMEOUT_S if init_fd is not None else 0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    _, wstatus, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(wstatus)
    if cg is not None:
        cg.kill()
    return wstatus, usage


def run_bwrap(code: str, lim: Limits, bwrap: str, features: Features) -> SandboxResult:
    """Run `code` under bubblewrap with the limits, using the options `features` says this
    bwrap has; see the module docstring."""
    try:
        view = python_view()
    except ViewError as exc:
        raise SandboxUnavailable(f"the sandbox cannot show this Python: {exc}") from None
    root = is_root()
    uid = host_uid()
    cg = TreeCgroup(lim.memory_bytes, NPROC_LIMIT)
    init_fd: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        with contextlib.ExitStack() as stack:
            pipes = stack.enter_context(Pipes())
            out_w, err_w, report_w = pipes.child_fds
            program = stack.enter_context(tempfile.TemporaryFile())
            program.write(code.encode("utf-8"))
            program.flush()
            program.seek(0)
            info_r, info_w = os.pipe()
            stack.callback(close_quietly, info_r)
            join_r, join_w = os.pipe()
            stack.callback(close_quietly, join_r)
            fds = (info_w, program.fileno(), report_w)
            args = _bwrap_args(bwrap, features, view, root, fds)
            nproc = NPROC_LIMIT if root else _processes_of(uid) + NPROC_LIMIT
            parent_rss = rss_now_bytes()
            setup = _bwrap_child_setup(
                view if root else None,
                root and not features.tmpfs_size,
                cg.join_files(),
                join_w,
                uid if root else None,
                rlimits(lim, nproc, cpu_grace_s=0),
            )
            start = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    args,
                    env={},
                    stdin=subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=err_w,
                    close_fds=True,
                    pass_fds=fds,
                    start_new_session=True,
                    preexec_fn=setup,
                )
            except subprocess.SubprocessError:
                pipes.close_child_ends()
                pipes.finish(_REAP_TIMEOUT_S)
                raise SandboxUnavailable(pipes.stderr.strip() or "sandbox setup failed") from None
            finally:
                os.close(info_w)
                os.close(join_w)
                pipes.close_child_ends()
            cg.joined(_join_failures(join_r))
            deadline = time.monotonic() + min(lim.wall_s, _SETUP_TIMEOUT_S)
            init_fd = _init_pidfd(_read_info(info_r, deadline), proc.pid)
            timed_out, cpu_killed = _watch(proc.pid, start, lim, cg, pipes)
            wstatus, usage = _reap(proc, init_fd, cg)
            wall = time.perf_counter() - start
            proc = None
            pipes.finish(_REAP_TIMEOUT_S)
            report = parse_report(pipes.report)
            code_, sig = _exit_of(wstatus, bool(report.started and not report.ended))
            tree_cpu = cg.cpu_s() if cg.measures_cpu else None
            user, system = tree_cpu if tree_cpu else (usage.ru_utime, usage.ru_stime)
            peak = report.hwm_bytes
            if peak is None:
                peak = maxrss_peak(usage.ru_maxrss, parent_rss)
            status = classify(
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
                stdout=pipes.stdout,
                stderr=pipes.stderr,
                network_isolated=True,
                backend="bwrap",
                host_uid=uid,
                limits={"cpu_s": lim.cpu_s, "wall_s": lim.wall_s, "memory_bytes": lim.memory_bytes},
                enforced=_tree_enforced(lim, cg, uid, nproc, features, root),
                clamped=lim.clamped,
                cpu_source="cgroup" if tree_cpu else "wait4",
                tree_memory_peak_bytes=cg.memory_peak_bytes(),
                tree_processes_peak=cg.processes_peak(),
                cgroup=cg.version,
            )
    finally:
        if proc is not None:
            with contextlib.suppress(ChildProcessError):
                _reap(proc, init_fd, cg)
        if init_fd is not None:
            os.close(init_fd)
        cg.remove()


def _watch(pid: int, start: float, lim: Limits, cg: TreeCgroup, pipes: Pipes) -> tuple[bool, bool]:
    """Wait for bwrap to exit, draining the program's pipes: (timed out, killed for the
    tree's CPU time)."""
    fd = os.pidfd_open(pid)
    try:
        while True:
            remaining = start + lim.wall_s - time.perf_counter()
            if remaining <= 0:
                return True, False
            step = min(remaining, CPU_POLL_S) if cg.measures_cpu else remaining
            if pipes.wait(fd, step):
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


PROBE_RETRY_S = 5.0
"""How long a failed probe stands before it is tried again (a success stands for good)."""
_clock = time.monotonic
_probe_ok: set[str] = set()
_probe_failed: dict[str, tuple[float, str]] = {}


def probe(bwrap: str) -> str | None:
    """Why bubblewrap cannot run the sandbox here, or None when it can. A success is kept for
    the process's life; a failure only for PROBE_RETRY_S, then tried again, so that one
    transient failure (a start-up storm of workers) does not disable bwrap for good."""
    if bwrap in _probe_ok:
        return None
    failed = _probe_failed.get(bwrap)
    if failed is not None and _clock() - failed[0] < PROBE_RETRY_S:
        return failed[1]
    problem = _trial(bwrap)
    if problem is None:
        _probe_ok.add(bwrap)
        _probe_failed.pop(bwrap, None)
    else:
        _probe_failed[bwrap] = (_clock(), problem)
    return problem


def _trial(bwrap: str) -> str | None:
    """Run a trial program in the sandbox: None when it printed what it should."""
    try:
        lim = limits_for(10.0, 256 * 1024 * 1024, 20.0)
        result = run_bwrap("print('ok')", lim, bwrap, bwrap_features(bwrap))
    except (SandboxUnavailable, OSError) as exc:
        return str(exc)
    if result.status != "ok" or result.stdout.strip() != "ok":
        lines = result.stderr.strip().splitlines()
        return lines[-1] if lines else f"a trial program ended {result.status}"
    return None
