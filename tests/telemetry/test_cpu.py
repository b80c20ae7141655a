"""CpuReader with the real psutil on this machine: a real child process tree as the 'server'."""

from __future__ import annotations

import subprocess
import sys
import time

from harness.telemetry.cpu import CpuReader, host_inventory

BUSY_TREE = (
    "import subprocess, sys, time\n"
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
    "end = time.time() + 0.3\n"
    "while time.time() < end: pass\n"
    "time.sleep(30)\n"
)


def test_host_and_harness_process() -> None:
    reader = CpuReader()
    time.sleep(0.05)
    s = reader.read()
    assert s.system_cpu_pct is not None and 0.0 <= s.system_cpu_pct <= 100.0
    assert s.per_core_pct is not None
    assert len(s.per_core_pct) == host_inventory()["cpu_logical_cores"]
    assert s.harness_cpu_user_s > 0 and s.harness_rss_bytes > 10_000_000
    assert s.server_cpu_user_s is None and s.server_processes is None


def test_server_tree_counts_children_and_handles_exit() -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_TREE])
    try:
        reader = CpuReader(server_pid=proc.pid)
        deadline = time.monotonic() + 10
        s = reader.read()
        while (s.server_processes or 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            s = reader.read()
        assert s.server_processes == 2
        assert s.server_rss_bytes is not None and s.server_rss_bytes > 0
        time.sleep(0.4)
        s = reader.read()
        assert (
            s.server_cpu_user_s is not None
            and s.server_cpu_user_s + (s.server_cpu_system_s or 0) >= 0.1
        )
    finally:
        for child in CpuReader(server_pid=proc.pid)._server_tree(proc.pid)[1:]:
            child.kill()
        proc.kill()
        proc.wait()
    gone = reader.read()
    assert gone.server_processes is None and gone.server_cpu_user_s is None
    assert reader.problems == [f"server process {proc.pid}: NoSuchProcess"]
    assert gone.harness_rss_bytes > 0
