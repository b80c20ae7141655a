"""How many tool workers execute mode runs: by default as many as this host lets the run use
at once (its CPU affinity, and a container's CPU quota where one is set), at most
AUTO_MAX_TOOL_WORKERS; never more than MAX_TOOL_WORKERS; always said where it came from."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

ToolWorkersSetting = int | Literal["auto"]

AUTO_MAX_TOOL_WORKERS = 32
"""Most workers `auto` starts: each holds its kernels' inputs (about 200 MiB), and a host with
hundreds of CPUs rarely means the run should take them all; set tools.workers for more."""

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs a CFS quota allows this process's cgroup (cgroup v2 `cpu.max`, or v1's
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`), None where no quota is set or readable."""
    for path in _own_cgroup_dirs(root, "cpu.max"):
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
    for base in _own_cgroup_dirs(root / "cpu", "cpu.cfs_quota_us"):
        try:
            quota_us = int(base.read_text())
            period_us = int((base.parent / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    return None


def _own_cgroup_dirs(root: Path, name: str) -> list[Path]:
    """`name` in the cgroup of this process under `root` (from /proc/self/cgroup), then in
    `root` itself: a container sees its own cgroup at its root."""
    found: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        rel = line.split(":", 2)[-1].lstrip("/")
        if rel:
            found.append(root / rel / name)
    found.append(root / name)
    return [p for p in found if p.is_file()]


def usable_cpus(root: Path = CGROUP_ROOT) -> tuple[int, str]:
    """CPUs this process may keep busy at once, and how that was found: its affinity mask,
    lowered to a CPU quota where one is set."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = max(1, os.cpu_count() or 1)
    why = f"the {cpus} CPUs this host lets the run use"
    quota = cpu_quota(root)
    if quota is not None and math.ceil(quota) < cpus:
        cpus = max(1, math.floor(quota))
        why = f"the CPU quota of {quota:g} CPUs on this run's cgroup"
    return cpus, why


def tool_workers(setting: ToolWorkersSetting, root: Path = CGROUP_ROOT) -> tuple[int, str]:
    """The number of workers for a setting, and a phrase saying where it came from."""
    if setting != "auto":
        return setting, "the workload's tools.workers"
    cpus, why = usable_cpus(root)
    if cpus > AUTO_MAX_TOOL_WORKERS:
        return AUTO_MAX_TOOL_WORKERS, f"auto: {why}, capped at {AUTO_MAX_TOOL_WORKERS}"
    return cpus, f"auto: {why}"
