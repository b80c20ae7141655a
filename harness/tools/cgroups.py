"""Per-call control groups for the sandbox: memory and process count of the whole process
tree, its CPU time, and a way to kill every process in it.

Each sandboxed call gets its own cgroup, `harness-sandbox-<pid>-<n>`. Under cgroup v2 a
process is in one cgroup only, so every v2 controller comes from one base: the nearest
ancestor (or self) of this process's cgroup whose `cgroup.subtree_control` already delegates
both memory and pids (nothing on the host is reconfigured), else the nearest that delegates
one of them, the other left out and said so (`Plan.note`); `cpu.stat` is in every v2 cgroup.
Under cgroup v1, controllers v2 does not give come from this process's own cgroup in the
`memory`, `pids` and `cpuacct` hierarchies. Each controller is used where it can be (creating
cgroups usually needs root) and left out otherwise; `TreeCgroup.enforced` says which limits
are in force and how, so a caller never claims one that is not. Cgroups of dead harness
processes are removed on first use.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from harness.tools.scratch import owner_alive

PREFIX = "harness-sandbox-"
_STALE = re.compile(rf"^{PREFIX}(\d+)-\d+$")
_CONTROLLERS = ("memory", "pids", "cpuacct")
_LIMIT_OF = {"memory": "memory", "pids": "processes"}
"""The `TreeCgroup.enforced` key of each controller's limit."""
_KILL_TIMEOUT_S = 5.0
_POLL_S = 0.005
_seq = itertools.count()


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where one controller's per-call cgroups are made."""

    controller: str
    version: Literal[1, 2]
    base: Path


def _mountinfo() -> list[tuple[str, Path, str, set[str]]]:
    """(fstype, mount point, root, super options) of every cgroup mount of this process."""
    mounts: list[tuple[str, Path, str, set[str]]] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or not tail[0].startswith("cgroup"):
            continue
        mounts.append((tail[0], Path(fields[4]), fields[3], set(tail[2].split(","))))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under "" its v2 path."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for name in parts[1].split(",") if parts[1] else [""]:
            paths[name] = parts[2]
    return paths


def _below(mount: Path, root: str, path: str) -> Path | None:
    """The directory of cgroup `path` in a hierarchy mounted at `mount` from `root`."""
    if path != root and not path.startswith(root.rstrip("/") + "/"):
        return None
    rel = path[len(root) :].lstrip("/")
    return mount / rel if rel else mount


_NEEDED = ("memory", "pids")


def v2_base(mount: Path, own: Path) -> tuple[Path | None, tuple[str, ...]]:
    """The one cgroup v2 directory under which per-call cgroups are made, and the controllers
    their children get there: the nearest writable ancestor (or self) of `own` (this
    process's cgroup directory under the v2 `mount`) that delegates both memory and pids,
    else the nearest writable one that delegates memory, else pids; (None, ()) where none
    does."""
    partial: dict[str, Path] = {}
    here = own
    while True:
        try:
            delegated = (here / "cgroup.subtree_control").read_text().split()
        except OSError:
            break
        got = tuple(c for c in _NEEDED if c in delegated)
        if got and os.access(here, os.W_OK):
            if got == _NEEDED:
                return here, got
            partial.setdefault(got[0], here)
        if here == mount or mount not in here.parents:
            break
        here = here.parent
    for ctl in _NEEDED:  # memory first: nothing else bounds the whole tree's memory
        if ctl in partial:
            return partial[ctl], (ctl,)
    return None, ()


@dataclass(frozen=True, slots=True)
class Plan:
    """Where each controller's per-call cgroups are made, and why one is left out."""

    hierarchies: tuple[Hierarchy, ...]
    note: str | None = None


def plan(mounts: list[tuple[str, Path, str, set[str]]], own: dict[str, str]) -> Plan:
    """The controllers a child cgroup can have, from this process's cgroup mounts
    (`_mountinfo`) and its own cgroup paths (`_own_cgroups`): v2 ones from one base, the
    rest from v1 hierarchies."""
    found: dict[str, Hierarchy] = {}
    v2_own: str | None = None
    for fstype, mount, root, _opts in mounts:
        here = _below(mount, root, own[""]) if fstype == "cgroup2" and "" in own else None
        if here is not None:
            v2_own = str(here)
            base, got = v2_base(mount, here)
            if base is not None:  # cpu.stat is in every v2 cgroup, no controller needed
                found.update({ctl: Hierarchy(ctl, 2, base) for ctl in (*got, "cpuacct")})
            break
    for fstype, mount, root, opts in mounts:
        if fstype != "cgroup":
            continue
        for ctl in _CONTROLLERS:
            if ctl in opts and ctl not in found and ctl in own:
                base = _below(mount, root, own[ctl])
                if base is not None and base.is_dir() and os.access(base, os.W_OK):
                    found[ctl] = Hierarchy(ctl, 1, base)
    missing = [c for c in _NEEDED if c not in found]
    note: str | None = None
    if len(missing) == 1 and v2_own is not None:
        other = next(c for c in _NEEDED if c != missing[0])
        note = (
            f"{missing[0]} not limited for the whole tree: no writable cgroup v2 ancestor of "
            f"{v2_own} delegates it together with {other} (a process is in one v2 cgroup)"
        )
    elif missing:
        note = f"{' and '.join(missing)} not limited for the whole tree: no writable cgroup"
        note += f" delegates {'them' if len(missing) > 1 else 'it'}"
    return Plan(tuple(found[c] for c in _CONTROLLERS if c in found), note)


@cache
def current_plan() -> Plan:
    """This process's cgroup plan (probed once); stale cgroups under its bases removed."""
    chosen = plan(_mountinfo(), _own_cgroups())
    for base in {h.base for h in chosen.hierarchies}:
        _remove_stale(base)
    return chosen


def hierarchies() -> tuple[Hierarchy, ...]:
    """The controllers this process can give a child cgroup, and where."""
    return current_plan().hierarchies


def _remove_stale(base: Path) -> None:
    """Kill and remove the per-call cgroups that dead harness processes left under `base`."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            match = _STALE.match(entry.name)
            if match and entry.is_dir() and not owner_alive(int(match.group(1))):
                _kill_dir(entry, time.monotonic() + 1.0)
                with contextlib.suppress(OSError):
                    entry.rmdir()


def _procs(directory: Path) -> list[int]:
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill_dir(directory: Path, deadline: float) -> bool:
    """SIGKILL every process in one cgroup until it is empty; False if time ran out."""
    kill_file = directory / "cgroup.kill"
    while True:
        pids = _procs(directory)
        if not pids:
            return True
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        else:
            for pid in pids:
                _kill_member(pid, directory)
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def _kill_member(pid: int, directory: Path) -> None:
    """SIGKILL `pid` through a pidfd, only while it is still a member of `directory`."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if _in_cgroup(pid, directory):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _in_cgroup(pid: int, directory: Path) -> bool:
    name = directory.name
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return any(line.rsplit("/", 1)[-1] == name for line in text.splitlines())


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file ("key value" lines) as a dict."""
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    except OSError:
        pass
    return out


class TreeCgroup:
    """One call's cgroup(s): created with limits, joined by the child before exec, read for
    CPU, memory and process figures, then emptied and removed."""

    def __init__(self, memory_bytes: int, max_processes: int) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{next(_seq)}"
        self.dirs: dict[str, Path] = {}
        self.versions: dict[str, int] = {}
        self.enforced: dict[str, str] = {}
        self.notes: list[str] = []
        try:
            chosen = hierarchies()
            if not chosen or any(c not in {h.controller for h in chosen} for c in _NEEDED):
                self.notes.append(current_plan().note or "no writable cgroup")
            for h in chosen:
                path = h.base / self.name
                made = self._make(path)
                if made and self._configure(h, path, memory_bytes, max_processes):
                    self.dirs[h.controller] = path
                    self.versions[h.controller] = h.version
        except BaseException:
            self.remove()
            raise

    def _make(self, path: Path) -> bool:
        if any(path == p for p in self.dirs.values()):
            return True
        try:
            path.mkdir()
        except FileExistsError:
            return True
        except OSError:
            return False
        return True

    def _configure(self, h: Hierarchy, path: Path, memory_bytes: int, max_processes: int) -> bool:
        """Set the controller's limit; record it as enforced only when the write succeeded."""
        try:
            if h.controller == "memory" and h.version == 2:
                (path / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
                with contextlib.suppress(OSError):
                    (path / "memory.oom.group").write_text("1")
                self.enforced["memory"] = f"cgroup v2 memory.max = {memory_bytes} B, whole tree"
            elif h.controller == "memory":
                (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                self.enforced["memory"] = (
                    f"cgroup v1 memory.limit_in_bytes = {memory_bytes} B, whole tree"
                )
            elif h.controller == "pids":
                (path / "pids.max").write_text(str(max_processes))
                self.enforced["processes"] = (
                    f"cgroup v{h.version} pids.max = {max_processes}, whole tree"
                )
            elif h.controller == "cpuacct":
                stat = "cpu.stat" if h.version == 2 else "cpuacct.usage_user"
                if not (path / stat).exists() and not (path / "cpuacct.stat").exists():
                    return False
        except OSError:
            with contextlib.suppress(OSError):
                if not any(p == path for p in self.dirs.values()):
                    path.rmdir()
            return False
        return True

    def join_files(self) -> list[str]:
        """The `cgroup.procs` files the child writes its pid to before exec (one per dir)."""
        return sorted({str(p / "cgroup.procs") for p in self.dirs.values()})

    def joined(self, failures: dict[str, str]) -> None:
        """Leave out the cgroups the child could not join (`failures`: its `cgroup.procs`
        file -> why): their limits are not claimed, and the note says why."""
        for file, why in sorted(failures.items()):
            path = Path(file).parent
            dropped = [ctl for ctl, p in self.dirs.items() if p == path]
            for ctl in dropped:
                del self.dirs[ctl]
                self.versions.pop(ctl, None)
                self.enforced.pop(_LIMIT_OF.get(ctl, ctl), None)
            _remove_dir(path)
            if dropped:
                self.notes.append(f"could not join the {'/'.join(dropped)} cgroup: {why}")

    @property
    def version(self) -> str | None:
        """Which cgroup versions hold the call's limits: "v1", "v2", "v1+v2" or None."""
        used = sorted(set(self.versions.values()))
        return "+".join(f"v{v}" for v in used) if used else None

    @property
    def note(self) -> str | None:
        """Why a whole-tree limit is left out (no delegation, a failed join), or None."""
        return "; ".join(self.notes) or None

    @property
    def measures_cpu(self) -> bool:
        """Whether the tree's CPU time is read from this cgroup."""
        return "cpuacct" in self.dirs

    def cpu_s(self) -> tuple[float, float] | None:
        """(user, system) CPU seconds of every process that ran in the cgroup."""
        path = self.dirs.get("cpuacct")
        if path is None:
            return None
        if (path / "cpu.stat").exists():
            stat = _read_keyed(path / "cpu.stat")
            if "user_usec" in stat and "system_usec" in stat:
                return stat["user_usec"] / 1e6, stat["system_usec"] / 1e6
            return None
        user, system = _read_int(path / "cpuacct.usage_user"), _read_int(path / "cpuacct.usage_sys")
        if user is not None and system is not None:
            return user / 1e9, system / 1e9
        stat = _read_keyed(path / "cpuacct.stat")
        if "user" not in stat or "system" not in stat:
            return None
        hz = os.sysconf("SC_CLK_TCK")
        return stat["user"] / hz, stat["system"] / hz

    def memory_peak_bytes(self) -> int | None:
        """The tree's peak memory charge (RSS, page cache and tmpfs it wrote), where known."""
        path = self.dirs.get("memory")
        if path is None:
            return None
        return _read_int(path / "memory.peak") or _read_int(path / "memory.max_usage_in_bytes")

    def processes_peak(self) -> int | None:
        """The most processes the tree held at once, where the kernel keeps that figure."""
        path = self.dirs.get("pids")
        return None if path is None else _read_int(path / "pids.peak")

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the tree for exceeding the memory limit
        (False where the kernel does not count such kills: it is then not claimed)."""
        path = self.dirs.get("memory")
        if path is None:
            return False
        events = _read_keyed(path / "memory.events")
        if events:
            return events.get("oom_kill", 0) > 0 or events.get("oom_group_kill", 0) > 0
        return _read_keyed(path / "memory.oom_control").get("oom_kill", 0) > 0

    def kill(self) -> bool:
        """SIGKILL every process in the cgroup(s) until empty; False if one survived."""
        deadline = time.monotonic() + _KILL_TIMEOUT_S
        return all(_kill_dir(p, deadline) for p in set(self.dirs.values()))

    def empty(self) -> bool:
        """Whether no process is left in any of the cgroups."""
        return not any(_procs(p) for p in set(self.dirs.values()))

    def remove(self) -> None:
        """Kill what is left and remove the cgroup directories."""
        dirs = set(self.dirs.values())
        self.kill()
        for path in dirs:
            _remove_dir(path)
        self.dirs.clear()


def _remove_dir(path: Path) -> None:
    """Remove an emptied cgroup directory (its last processes may take a moment to go)."""
    for _ in range(200):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(_POLL_S)
