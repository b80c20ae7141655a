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
RLIMIT_CPU per process as a backstop; RLIMIT_NOFILE, RLIMIT_FSIZE, no core files; a wall-clock
limit. stdout, stderr and the prelude's report are pipes the harness drains (`sandbox_pipes`):
nothing of them reaches a host file, a bounded part is kept, a stream is closed at
OUTPUT_LIMIT_BYTES. `SandboxResult.enforced` says how each limit was
in force. Afterwards the whole tree is killed (the PID namespace's init, so every process in
the namespace, and the cgroup until empty): a `setsid` double-fork child does not outlive the
call. CPU seconds are the cgroup's for the whole tree, else wait4's (which misses processes
the namespace's teardown killed after a timeout). Peak RSS is the program interpreter's own
VmHWM, which a prelude reports when the program ends (believed only in the prelude's exact
form: a program that writes to its report gets wait4's figure instead; one that writes a
whole fake report and exits before the prelude can claim what it likes, so the tree's
figures are the kernel's), else wait4's ru_maxrss where that provably exceeds what the fork
copied, else None; the tree's peak memory charge is reported apart where the cgroup keeps
it.

Options newer than bubblewrap 0.5.0 are used only where the installed bwrap has them
(`sandbox_probe`: `--size` from 0.7.0, without which a root harness mounts the size-limited
tmpfs itself; `--disable-userns` from 0.8.0), and `enforced` says what an older one lacks.
Without a usable bwrap the old child-process sandbox runs (rlimits, a network namespace where
allowed; `backend` = "rlimits"), but as root only when the caller allows it explicitly;
`sandbox_problem` says why bwrap cannot run (missing, too old, user namespaces blocked) and
what to do about it.

This module is the entry point; `sandbox_bwrap` and `sandbox_rlimits` are the two sandboxes,
`sandbox_base` what they share, `sandbox_probe` whether bwrap can run here, `sandbox_view`
what bwrap shows, `cgroups` the whole-tree limits.
"""

from __future__ import annotations

import shutil

from harness.tools.sandbox_base import (
    FSIZE_LIMIT_BYTES,
    NOFILE_LIMIT,
    NPROC_LIMIT,
    OUTPUT_TAIL_BYTES,
    SandboxResult,
    SandboxStatus,
    SandboxUnavailable,
    is_root,
    limits_for,
)
from harness.tools.sandbox_bwrap import INNER_UID, TMPFS_BYTES, host_uid, probe, run_bwrap
from harness.tools.sandbox_pipes import OUTPUT_LIMIT_BYTES
from harness.tools.sandbox_probe import (
    INSTALL_HINT,
    MIN_VERSION,
    Features,
    Problem,
    bwrap_features,
    diagnose,
    host_facts,
    missing,
    too_old,
)
from harness.tools.sandbox_rlimits import run_rlimits

__all__ = [
    "FSIZE_LIMIT_BYTES",
    "INNER_UID",
    "INSTALL_HINT",
    "MIN_VERSION",
    "NOFILE_LIMIT",
    "NPROC_LIMIT",
    "OUTPUT_LIMIT_BYTES",
    "OUTPUT_TAIL_BYTES",
    "TMPFS_BYTES",
    "Features",
    "Problem",
    "SandboxResult",
    "SandboxStatus",
    "SandboxUnavailable",
    "bwrap_features",
    "find_bwrap",
    "host_uid",
    "require_sandbox",
    "run_sandboxed",
    "sandbox_problem",
]


def find_bwrap() -> str | None:
    """The bubblewrap executable on PATH, or None."""
    return shutil.which("bwrap")


def sandbox_problem() -> Problem | None:
    """Why code cannot be sandboxed in bubblewrap on this host, and how to fix that; None
    when it can."""
    bwrap = find_bwrap()
    if bwrap is None:
        return missing()
    features = bwrap_features(bwrap)
    old = too_old(features.version)
    if old is not None:
        return old
    error = probe(bwrap)
    return None if error is None else diagnose(error, features, host_facts(), is_root())


def require_sandbox(allow_unsandboxed: bool) -> None:
    """SandboxUnavailable (a ConfigError) where generated code would run as root without
    bubblewrap and the user has not explicitly allowed that; the message says why bwrap
    cannot run and how to fix it."""
    if not is_root() or allow_unsandboxed:
        return
    problem = sandbox_problem()
    if problem is not None:
        raise SandboxUnavailable(
            f"--tools execute runs generated code, and this harness runs as root, but the "
            f"bubblewrap sandbox is not usable here: {problem.detail}. To fix it, "
            f"{problem.fix}; or pass --unsafe-no-sandbox (tools.unsafe_no_sandbox: true in "
            "the workload) to run it with per-process rlimits only, as root"
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
    lim = limits_for(cpu_s, memory_bytes, wall_s)
    bwrap = find_bwrap()
    problem = sandbox_problem()
    if bwrap is not None and problem is None:
        return run_bwrap(code, lim, bwrap, bwrap_features(bwrap))
    if is_root() and not allow_unsandboxed:
        why = f"{problem.detail}; to fix it, {problem.fix}" if problem else "bwrap not found"
        raise SandboxUnavailable(
            f"refusing to run generated code as root without the bubblewrap sandbox: {why}; "
            "or allow it explicitly (`harness run --unsafe-no-sandbox`)"
        )
    return run_rlimits(code, lim, isolate_network)
