"""Tool workers: by default as many as the host lets the run use at once, and bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.tools import workers
from harness.tools.workers import AUTO_MAX_TOOL_WORKERS, cpu_quota, tool_workers, usable_cpus
from harness.workload.limits import MAX_TOOL_WORKERS
from harness.workload.spec import ToolsSpec


def test_the_default_is_auto_and_means_the_usable_cpus(tmp_path: Path) -> None:
    assert ToolsSpec().workers == "auto"
    count, source = tool_workers("auto", root=tmp_path)  # no quota under this root
    assert count == min(len(os.sched_getaffinity(0)), AUTO_MAX_TOOL_WORKERS)
    assert source.startswith("auto:") and str(count) in source


def test_a_cgroup_v2_quota_lowers_the_count(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path) == 1.5
    cpus, why = usable_cpus(tmp_path)
    if len(os.sched_getaffinity(0)) > 2:
        assert cpus == 1 and "quota of 1.5 CPUs" in why


def test_a_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    assert cpu_quota(tmp_path) == 4.0
    (tmp_path / "cpu.max").write_text("max 100000\n")  # v2 without a limit: v1 still read
    assert cpu_quota(tmp_path) == 4.0


def test_auto_is_capped_on_a_large_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda _: set(range(224)))
    count, source = tool_workers("auto", root=tmp_path)
    assert count == AUTO_MAX_TOOL_WORKERS and "capped" in source


def test_an_explicit_count_is_kept_and_said() -> None:
    assert tool_workers(3) == (3, "the workload's tools.workers")


@pytest.mark.parametrize("bad", [0, -1, MAX_TOOL_WORKERS + 1, 100000, "many", "4", True, 2.5])
def test_impossible_counts_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        ToolsSpec.model_validate({"workers": bad})
