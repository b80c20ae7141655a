"""The bubblewrap sandbox: its probe (a success stands, a failure is tried again after a while)
and a cgroup the child cannot join (left out, the rest of the sandbox kept)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.tools import sandbox_bwrap
from harness.tools.cgroups import TreeCgroup, hierarchies
from harness.tools.sandbox import run_sandboxed

BWRAP = "/usr/bin/bwrap"


@dataclass
class Trials:
    """The outcomes the trial program gives, in order (None: it worked), and the clock."""

    outcomes: list[str | None] = field(default_factory=list)
    now: float = 1000.0

    def trial(self, bwrap: str) -> str | None:
        return self.outcomes.pop(0)


@pytest.fixture
def trials(monkeypatch: pytest.MonkeyPatch) -> Trials:
    """The probe's trials and clock under the test's control, its memory empty."""
    t = Trials()
    monkeypatch.setattr(sandbox_bwrap, "_probe_ok", set())
    monkeypatch.setattr(sandbox_bwrap, "_probe_failed", {})
    monkeypatch.setattr(sandbox_bwrap, "_clock", lambda: t.now)
    monkeypatch.setattr(sandbox_bwrap, "_trial", t.trial)
    return t


def test_a_transient_failure_is_tried_again_after_the_retry_interval(trials: Trials) -> None:
    trials.outcomes += ["sandbox setup (uid): Resource temporarily unavailable", None]
    assert sandbox_bwrap.probe(BWRAP) is not None
    trials.now += sandbox_bwrap.PROBE_RETRY_S / 2
    assert sandbox_bwrap.probe(BWRAP) is not None  # within the interval: no new trial
    assert trials.outcomes == [None]
    trials.now += sandbox_bwrap.PROBE_RETRY_S
    assert sandbox_bwrap.probe(BWRAP) is None
    assert trials.outcomes == []


def test_a_success_stands_without_another_trial(trials: Trials) -> None:
    trials.outcomes += [None, "would fail now"]
    assert sandbox_bwrap.probe(BWRAP) is None
    trials.now += 10 * sandbox_bwrap.PROBE_RETRY_S
    assert sandbox_bwrap.probe(BWRAP) is None
    assert trials.outcomes == ["would fail now"]


@pytest.mark.skipif(
    os.geteuid() != 0 or "memory" not in {h.controller for h in hierarchies()},
    reason="a per-call memory cgroup is made by root",
)
def test_a_cgroup_the_child_cannot_join_is_left_out_not_the_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The call's memory cgroup vanishes before the child joins it: the program still runs
    in bubblewrap, the memory limit is per process only, and the result says why."""
    files = TreeCgroup.join_files

    def vanishing(cg: TreeCgroup) -> list[str]:
        cg.dirs["memory"].rmdir()
        return files(cg)

    monkeypatch.setattr(TreeCgroup, "join_files", vanishing)
    r = run_sandboxed("print('ran')", cpu_s=5, memory_bytes=1 << 28, wall_s=15)
    assert (r.status, r.stdout, r.backend) == ("ok", "ran\n", "bwrap"), r
    assert "cgroup" not in r.enforced["memory"] and "RLIMIT_AS" in r.enforced["memory"]
    assert "could not join the memory cgroup" in r.enforced["cgroup"]
    assert r.tree_memory_peak_bytes is None
    assert not any(
        e.name.startswith(f"harness-sandbox-{os.getpid()}-")
        for h in hierarchies()
        for e in Path(h.base).iterdir()
    )
