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
