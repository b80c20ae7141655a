"""The sandbox without bubblewrap: a child process under per-process rlimits, in a network
namespace where the kernel allows one, in a temporary working folder removed afterwards; its
stdout and stderr are files there (RLIMIT_FSIZE caps them), its report (the prelude shared
with bwrap) a pipe read when it has ended (a program that fills it blocks itself until the
wall limit). It contains far less (the host's filesystem, per-process limits that do not
bind root), so as root it runs only when the caller allows it explicitly."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.tools import scratch
from harness.tools.sandbox_base import (
    CLONE_NEWNET,
    CLONE_NEWUSER,
    FSIZE_LIMIT_BYTES,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    Limits,
    SandboxResult,
    classify,
    close_quietly,
    libc_unshare,
    maxrss_peak,
    prelude,
    rlimits,
    rss_now_bytes,
    tail,
    wait_exited,
)
from harness.tools.sandbox_pipes import parse_report, read_report

_PRELUDE = prelude("main.py")


def _clean_env(workdir: str) -> dict[str, str]:
    """A minimal environment: no proxies, no Python variables, home and temp in the workdir."""
    return {
        "PATH": os.defpath,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
    }


def _kill_group(pgid: int) -> None:
    """SIGKILL a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _child_setup(lim: Limits, report_fd: int, isolate: bool) -> Callable[[], None]:
    """The preexec function: enter a network namespace, set limits, report isolation."""
    unshare = libc_unshare() if isolate else None
    limits = rlimits(lim, NPROC_LIMIT)

    def setup() -> None:
        isolated = False
        if unshare is not None:
            isolated = unshare(CLONE_NEWNET) == 0 or unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
        for res, soft, hard in limits:
            resource.setrlimit(res, (soft, hard))
        os.write(report_fd, b"1" if isolated else b"0")

    return setup


def _rlimits_enforced(lim: Limits, isolated: bool) -> dict[str, str]:
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


def run_rlimits(code: str, lim: Limits, isolate_network: bool) -> SandboxResult:
    """The child-process sandbox without bubblewrap: rlimits and, where allowed, no network."""
    pid: int | None = None
    with _workdir() as workdir, contextlib.ExitStack() as stack:
        try:
            work = Path(workdir)
            (work / "main.py").write_text(code, encoding="utf-8")
            out_path, err_path = work / ".stdout", work / ".stderr"
            report_r, report_w = os.pipe()
            stack.callback(close_quietly, report_r)
            read_fd, write_fd = os.pipe()
            parent_rss = rss_now_bytes()
            start = time.perf_counter()
            try:
                with out_path.open("wb") as out, err_path.open("wb") as err:
                    proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", "-c", _PRELUDE, str(report_w)],
                        cwd=workdir,
                        env=_clean_env(workdir),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        close_fds=True,
                        pass_fds=(report_w,),
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
                os.close(report_w)
            timed_out = not wait_exited(pid, lim.wall_s)
            _kill_group(pid)
            _, wstatus, usage = os.wait4(pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(wstatus)
            pid = None
            exit_code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else None
            sig = os.WTERMSIG(wstatus) if os.WIFSIGNALED(wstatus) else None
            cpu_total = usage.ru_utime + usage.ru_stime
            peak = parse_report(read_report(report_r)).hwm_bytes
            if peak is None:
                peak = maxrss_peak(usage.ru_maxrss, parent_rss)
            status = classify(exit_code, sig, timed_out, cpu_total, lim.cpu_soft)
            return SandboxResult(
                status=status,
                exit_code=exit_code,
                signal=sig,
                wall_s=wall,
                cpu_user_s=usage.ru_utime,
                cpu_system_s=usage.ru_stime,
                peak_rss_bytes=peak,
                stdout=tail(out_path),
                stderr=tail(err_path),
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
