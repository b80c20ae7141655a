"""The sandboxed program's stdout, stderr and report as pipes the harness drains while it
runs: nothing it writes there reaches a host file, and only a bounded part is kept.

Of stdout and stderr the last OUTPUT_TAIL_BYTES are kept, and a stream is closed once
OUTPUT_LIMIT_BYTES went through it (the program's next write fails with EPIPE). Of the
report, which the prelude writes ("S" when the program starts, "E <VmHWM kB>" when it
ends), the first REPORT_BYTES are kept and the pipe is closed past them. A pipe cannot be
seeked or truncated: the program can only add to its report, and `parse_report` believes
one of exactly that form only, nothing added before or after.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import time
from dataclasses import dataclass, field

from harness.tools.sandbox_base import FSIZE_LIMIT_BYTES, OUTPUT_TAIL_BYTES

OUTPUT_LIMIT_BYTES = FSIZE_LIMIT_BYTES
"""Most bytes a program may write to its stdout, and apart to its stderr."""
REPORT_BYTES = 4096
"""Most bytes of the prelude's report that are read."""
_READ_BYTES = 65536


@dataclass(slots=True)
class _Sink:
    """One pipe's read end, drained into a bounded buffer."""

    fd: int
    keep_bytes: int
    limit_bytes: int
    keep_head: bool
    data: bytearray = field(default_factory=bytearray)
    total_bytes: int = 0
    open: bool = True

    def read(self) -> None:
        """Read what is there (the fd is non-blocking); close at EOF or past the limit."""
        try:
            chunk = os.read(self.fd, _READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        self.total_bytes += len(chunk)
        self.data += chunk
        if len(self.data) > self.keep_bytes:
            if self.keep_head:
                del self.data[self.keep_bytes :]
            else:
                del self.data[: len(self.data) - self.keep_bytes]
        if self.total_bytes > self.limit_bytes:
            self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(OSError):
                os.close(self.fd)


class Pipes:
    """stdout, stderr and report pipes of one sandboxed call: `child_fds` go to the child,
    `close_child_ends` after it started, `wait` drains them while waiting for a process,
    `finish` reads what is left; `close` (or the context's exit) releases every fd."""

    def __init__(self) -> None:
        self._sinks: list[_Sink] = []
        self._child: list[int] = []
        for keep, limit, head in (
            (OUTPUT_TAIL_BYTES, OUTPUT_LIMIT_BYTES, False),
            (OUTPUT_TAIL_BYTES, OUTPUT_LIMIT_BYTES, False),
            (REPORT_BYTES, REPORT_BYTES, True),
        ):
            r, w = os.pipe()
            os.set_blocking(r, False)
            self._sinks.append(_Sink(r, keep, limit, head))
            self._child.append(w)

    def __enter__(self) -> Pipes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def child_fds(self) -> tuple[int, int, int]:
        """The write ends: the child's stdout, stderr and report fd."""
        out, err, report = self._child
        return out, err, report

    def close_child_ends(self) -> None:
        """Close this process's copies of the write ends (the child has its own)."""
        for fd in self._child:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child = []

    def wait(self, pidfd: int, timeout_s: float) -> bool:
        """Drain the pipes until `pidfd` is readable (its process exited) or `timeout_s`
        passed; whether it exited."""
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        sinks = {s.fd: s for s in self._sinks if s.open}
        for fd in sinks:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = math.ceil(max(0.0, deadline - time.monotonic()) * 1000)
            ready = poller.poll(remaining_ms)
            if any(fd == pidfd for fd, _ in ready):
                return True
            for fd, _events in ready:
                sinks[fd].read()
                if not sinks[fd].open:
                    poller.unregister(fd)
            if not ready or time.monotonic() >= deadline:
                return False

    def finish(self, timeout_s: float) -> None:
        """Read what is left until every pipe is at its end or `timeout_s` passed (a write
        end some process still holds does not hold this up for longer)."""
        poller = select.poll()
        sinks = {s.fd: s for s in self._sinks if s.open}
        for fd in sinks:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout_s
        while sinks and time.monotonic() < deadline:
            ready = poller.poll(math.ceil(max(0.0, deadline - time.monotonic()) * 1000))
            if not ready:
                return
            for fd, _events in ready:
                sinks[fd].read()
                if not sinks[fd].open:
                    poller.unregister(fd)
                    del sinks[fd]

    def close(self) -> None:
        self.close_child_ends()
        for sink in self._sinks:
            sink.close()

    @property
    def stdout(self) -> str:
        return self._sinks[0].data.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self._sinks[1].data.decode("utf-8", errors="replace")

    @property
    def report(self) -> bytes | None:
        """The report as read, or None where it went past REPORT_BYTES."""
        sink = self._sinks[2]
        return None if sink.total_bytes > REPORT_BYTES else bytes(sink.data)


def read_report(fd: int) -> bytes | None:
    """What a report pipe holds now, without waiting (None: past REPORT_BYTES)."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while len(data) <= REPORT_BYTES and (chunk := os.read(fd, REPORT_BYTES + 1)):
            data += chunk
    return None if len(data) > REPORT_BYTES else data


@dataclass(frozen=True, slots=True)
class Report:
    """What the prelude reported: the program started, it ended (its interpreter's own
    end, not a signal), its VmHWM; None where the report is not one the prelude wrote."""

    started: bool | None
    ended: bool | None
    hwm_bytes: int | None


def parse_report(data: bytes | None) -> Report:
    """The prelude's report, believed only in its exact form: b"S\\n", then at most one
    b"E <kB>\\n" (or b"E -\\n"), nothing else; anything added makes it unknown (None: it
    went past REPORT_BYTES). Empty, the program never started."""
    if data is None:
        return Report(None, None, None)
    if data == b"":
        return Report(False, False, None)
    if data == b"S\n":
        return Report(True, False, None)
    lines = data.split(b"\n")
    if len(lines) == 3 and lines[0] == b"S" and lines[2] == b"" and lines[1].startswith(b"E "):
        value = lines[1][2:]
        if value == b"-":
            return Report(True, True, None)
        if value.isdigit() and len(value) <= 12:
            return Report(True, True, int(value) * 1024)
    return Report(None, None, None)
