"""Per-call cgroups: made with their limits (as root), read, emptied and removed; those of
dead processes swept; nothing claimed that is not in force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.tools import cgroups
from harness.tools.cgroups import TreeCgroup, hierarchies

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making cgroups needs root")


@needs_root
def test_root_finds_memory_pids_and_cpu_accounting() -> None:
    assert {h.controller for h in hierarchies()} == {"memory", "pids", "cpuacct"}


@needs_root
def test_a_call_cgroup_has_its_limits_and_is_removed() -> None:
    cg = TreeCgroup(64 * 1024 * 1024, 16)
    dirs = set(cg.dirs.values())
    try:
        assert dirs and all(d.is_dir() for d in dirs)
        assert "67108864 B, whole tree" in cg.enforced["memory"]
        assert "pids.max = 16" in cg.enforced["processes"]
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; x = b'x' * (8 << 20); time.sleep(30)"],
            preexec_fn=lambda: [Path(f).write_text(str(os.getpid())) for f in cg.join_files()],
        )
        cpu = cg.cpu_s()
        assert cpu is not None and cg.measures_cpu
        assert not cg.empty()
    finally:
        cg.remove()
    assert proc.wait() == -9  # killed with the cgroup
    assert not any(d.exists() for d in dirs)


@needs_root
def test_cgroups_of_dead_processes_are_swept() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    base = hierarchies()[0].base
    stale = base / f"{cgroups.PREFIX}{dead.pid}-0"
    stale.mkdir()
    cgroups._remove_stale(base)
    assert not stale.exists()


def test_without_a_writable_cgroup_nothing_is_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "hierarchies", lambda: ())
    cg = TreeCgroup(1 << 26, 16)
    assert cg.enforced == {} and cg.join_files() == [] and cg.cpu_s() is None
    assert cg.memory_peak_bytes() is None and not cg.oom_killed()
    cg.remove()


def _cgroupfs(root: Path, delegations: dict[str, str]) -> None:
    """A fake cgroup v2 tree: each directory with the controllers it delegates."""
    for rel, controllers in delegations.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cgroup.subtree_control").write_text(controllers + "\n")


def _v2(root: Path, own: str) -> cgroups.Plan:
    return cgroups.plan([("cgroup2", root, "/", set())], {"": own})


def test_v2_memory_and_pids_come_from_one_base_that_delegates_both(tmp_path: Path) -> None:
    """memory is delegated nearer (svc) than pids (the root): one v2 base for both, the
    nearest delegating both, and CPU is read there too, never in another cgroup."""
    _cgroupfs(tmp_path, {".": "cpu memory pids", "svc": "memory", "svc/harness": ""})
    chosen = _v2(tmp_path, "/svc/harness")
    assert {(h.controller, h.version, h.base) for h in chosen.hierarchies} == {
        ("memory", 2, tmp_path),
        ("pids", 2, tmp_path),
        ("cpuacct", 2, tmp_path),
    }
    assert chosen.note is None


def test_v2_without_one_base_for_both_uses_memorys_and_says_pids_is_left_out(
    tmp_path: Path,
) -> None:
    _cgroupfs(tmp_path, {".": "memory", "svc": "pids", "svc/harness": ""})
    chosen = _v2(tmp_path, "/svc/harness")
    assert {(h.controller, h.base) for h in chosen.hierarchies} == {
        ("memory", tmp_path),
        ("cpuacct", tmp_path),
    }
    assert chosen.note is not None
    assert chosen.note.startswith("pids not limited for the whole tree")
    assert "together with memory" in chosen.note


def test_v2_that_delegates_nothing_gives_no_cgroup_and_says_so(tmp_path: Path) -> None:
    _cgroupfs(tmp_path, {".": "cpu io", "svc": ""})
    chosen = _v2(tmp_path, "/svc")
    assert chosen.hierarchies == ()
    assert chosen.note is not None and "memory and pids not limited" in chosen.note


def test_a_controller_v2_lacks_comes_from_its_v1_hierarchy(tmp_path: Path) -> None:
    """A hybrid host: memory delegated in v2, pids mounted as v1 (a process is in one
    cgroup per hierarchy, so the two may differ)."""
    _cgroupfs(tmp_path / "unified", {".": "memory"})
    (tmp_path / "pids" / "job").mkdir(parents=True)
    mounts = [
        ("cgroup2", tmp_path / "unified", "/", set()),
        ("cgroup", tmp_path / "pids", "/", {"rw", "pids"}),
    ]
    chosen = cgroups.plan(mounts, {"": "/", "pids": "/job"})
    assert {(h.controller, h.version, h.base) for h in chosen.hierarchies} == {
        ("memory", 2, tmp_path / "unified"),
        ("pids", 1, tmp_path / "pids" / "job"),
        ("cpuacct", 2, tmp_path / "unified"),
    }
    assert chosen.note is None
