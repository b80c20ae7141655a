"""How many tool workers execute mode runs: by default as many as this host can run at once
(its usable CPUs), never more than a fixed maximum, and always said where it came from."""

from __future__ import annotations

import os
from typing import Literal

from harness.workload.spec import MAX_TOOL_WORKERS

ToolWorkersSetting = int | Literal["auto"]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def tool_workers(setting: ToolWorkersSetting) -> tuple[int, str]:
    """The number of workers for a setting, and a phrase saying where it came from."""
    if setting == "auto":
        cpus = usable_cpus()
        return min(cpus, MAX_TOOL_WORKERS), f"auto: the {cpus} CPUs this host lets the run use"
    return setting, "the workload's tools.workers"
