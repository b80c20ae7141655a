"""`harness run` in a child process, for integration tests that signal it or outlive it;
and a real process tree standing in for a server and its workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[1]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"
HARNESS_RUN = (sys.executable, "-m", "harness", "run")


def start_run(
    server: ServerInfo, out: Path, *extra: str, requests: int = 400, in_flight: int = 2
) -> subprocess.Popen[bytes]:
    """A long run of the Azure trace sent at once, `in_flight` requests at a time."""
    return subprocess.Popen(
        [
            *HARNESS_RUN,
            str(AZURE),
            "--server",
            server.base_url,
            "--time-scale",
            "0",
            "--max-concurrency",
            str(in_flight),
            "--max-requests",
            str(requests),
            "--out",
            str(out),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def wait_for_records(journal: Path, count: int, timeout_s: float = 120) -> None:
    """Wait until a running harness has journalled `count` request records."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= count:
            return
        time.sleep(0.2)


_TREE = (
    "import subprocess, sys, time\n"
    "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])"
    " for _ in range({workers})]\n"
    "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
    "time.sleep(120)\n"
)


@contextlib.contextmanager
def server_tree(workers: int = 2) -> Iterator[tuple[int, list[int]]]:
    """A parent process with `workers` child processes, as vLLM's server and its workers:
    (parent pid, worker pids); all of them killed on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _TREE.format(workers=workers)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    kids = [int(p) for p in proc.stdout.readline().split()]
    try:
        yield proc.pid, kids
    finally:
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
