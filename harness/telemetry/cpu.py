"""Host CPU and memory inventory through psutil (the only importer of psutil)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import psutil


def _cpu_model() -> str | None:
    """CPU model name from /proc/cpuinfo (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def host_inventory() -> dict[str, Any]:
    """What the host is: CPU model, cores, memory, OS, Python."""
    vm = psutil.virtual_memory()
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "memory_total_bytes": int(vm.total),
        "os": platform.platform(),
        "python": platform.python_version(),
    }
