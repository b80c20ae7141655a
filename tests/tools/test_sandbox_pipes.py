"""The sandbox's pipes: a report believed only in the prelude's exact form, and bounded
buffers of what the program writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.tools.sandbox_base import OUTPUT_TAIL_BYTES
from harness.tools.sandbox_pipes import Pipes, Report, parse_report


@pytest.mark.parametrize(
    ("data", "report"),
    [
        (b"", Report(False, False, None)),  # the prelude never ran
        (b"S\n", Report(True, False, None)),  # started, killed before its end
        (b"S\nE 20480\n", Report(True, True, 20480 * 1024)),
        (b"S\nE -\n", Report(True, True, None)),
        (b"S\nE 1\nE 20480\n", Report(None, None, None)),  # a forged end before the real one
        (b"S\nE 20480\nE 1\n", Report(None, None, None)),  # or after it
        (b"S\nS\nE 1\n", Report(None, None, None)),
        (b"S\nE 1", Report(None, None, None)),
        (b"S\nE 99999999999999999999\n", Report(None, None, None)),
        (None, Report(None, None, None)),  # past REPORT_BYTES
    ],
)
def test_only_the_preludes_exact_report_is_believed(data: bytes | None, report: Report) -> None:
    assert parse_report(data) == report


def test_output_keeps_its_tail_and_the_report_its_bound() -> None:
    """A child writes 1 MiB to stdout and floods its report: stdout keeps its last bytes,
    the report is dropped as a whole (None), nothing blocks."""
    code = (
        "import os, sys\n"
        "sys.stdout.write('a' * (1 << 20) + 'END')\n"
        "sys.stdout.flush()\n"
        "try:\n"
        "    os.write(int(sys.argv[1]), b'E 1\\n' * 4096)\n"
        "except OSError:\n"
        "    pass\n"
    )
    with Pipes() as pipes:
        out_w, err_w, report_w = pipes.child_fds
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(report_w)],
            stdout=out_w,
            stderr=err_w,
            pass_fds=(report_w,),
        )
        pipes.close_child_ends()
        fd = os.pidfd_open(proc.pid)
        try:
            while not pipes.wait(fd, 5.0):
                pass
        finally:
            os.close(fd)
        assert proc.wait() == 0
        pipes.finish(1.0)
        assert pipes.stdout.endswith("aEND") and len(pipes.stdout) == OUTPUT_TAIL_BYTES
        assert pipes.report is None  # 16 KiB written, past REPORT_BYTES
