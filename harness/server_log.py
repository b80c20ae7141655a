"""Reading a vLLM server's log while it starts: which start-up phase it reached, and, when it
fails, the few lines that say why (not the pages of configuration around them)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

_READ_CHUNK_BYTES = 256 * 1024
_MAX_CAUSE_LINES = 8
_MAX_CONTINUATION_LINES = 3
_MAX_LINE_CHARS = 400

_PHASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), phase)
    for pattern, phase in (
        # The most specific first: the first pattern that matches a line names its phase.
        (r"Application startup complete", "API server up, waiting for /health"),
        (
            r"Starting vLLM (API )?server|Available routes|Started server process",
            "starting the API server",
        ),
        (r"init engine \(.*\) took", "engine ready"),
        (
            r"KV cache size|GiB for KV cache|Available KV cache memory|# (CPU|GPU) blocks",
            "allocating the KV cache",
        ),
        (
            r"torch\.compile takes|Compiling a graph|Dynamo bytecode transform|Capturing CUDA graph"
            r"|[Ww]arming up|Memory profiling",
            "compiling / warming up",
        ),
        (r"Loading weights took|Model loading took", "weights loaded"),
        (
            r"Starting to load model|Loading safetensors|Loading pt checkpoint|Loading weights",
            "loading weights",
        ),
        (r"Initializing a V1 LLM engine|Initializing an LLM engine", "starting the engine"),
        (r"non-default args|vLLM API server version|Resolved architecture", "reading the config"),
    )
)

_PREFIX = re.compile(
    r"^(?:\((?P<proc>[^)]*)\)\s+)?"
    r"(?:(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+[\d:.]+\s+\[[^\]]*\]\s?)?"
    r"(?P<msg>.*)$"
)
_EXCEPTION = re.compile(
    r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit|Interrupt|Failure)(?::\s|:?$)"
)
_ERROR_TEXT = re.compile(
    r": error: |out of memory|OutOfMemory|\bOOM\b|Cannot allocate memory|^Killed\b", re.I
)
_TRACEBACK_NOISE = re.compile(r"^(?:\s|Traceback \(most recent call last\)|File \")")
_NOT_A_CAUSE = re.compile(r"For further information visit")


class StartupLog:
    """Follows a server log as it grows and remembers the latest start-up phase it shows."""

    def __init__(self, path: Path) -> None:
        """Start at the beginning of `path` (which may not exist yet)."""
        self.path = path
        self.phase: str | None = None
        self._offset = 0
        self._partial = ""

    def update(self) -> str | None:
        """Read what was appended since the last call; return the latest phase (or None)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read(_READ_CHUNK_BYTES)
        except OSError:
            return self.phase
        self._offset += len(data)
        text = self._partial + data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            phase = line_phase(line)
            if phase is not None:
                self.phase = phase
        return self.phase


def line_phase(line: str) -> str | None:
    """The start-up phase one vLLM log line marks, if any."""
    for pattern, phase in _PHASES:
        if pattern.search(line):
            return phase
    return None


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_LINE_CHARS else text[: _MAX_LINE_CHARS - 3] + "..."


def failure_causes(lines: Iterable[str]) -> list[str]:
    """The lines of a failed start that say why: ERROR and CRITICAL messages (traceback frames
    dropped), exception lines (`ValueError: ...`, with the indented lines that continue
    them), argument errors and out-of-memory lines; each once, in log order, at most 8."""
    causes: list[str] = []
    seen: set[str] = set()
    continuing = 0

    def add(text: str) -> None:
        text = _clip(text)
        if text and text not in seen and not _NOT_A_CAUSE.search(text):
            seen.add(text)
            causes.append(text)

    for raw in lines:
        raw = raw.rstrip("\r\n")
        match = _PREFIX.match(raw)
        level = match.group("level") if match else None
        msg = match.group("msg") if match else raw
        if level in ("DEBUG", "INFO", "WARNING"):
            continuing = 0
            continue
        if continuing and msg.startswith(" ") and not msg.lstrip().startswith("File "):
            add(msg)
            continuing -= 1
            continue
        continuing = 0
        if _EXCEPTION.match(msg) or _ERROR_TEXT.search(msg):
            add(msg)
            continuing = _MAX_CONTINUATION_LINES
        elif level in ("ERROR", "CRITICAL") and not _TRACEBACK_NOISE.match(msg):
            add(msg)
    if len(causes) > _MAX_CAUSE_LINES:
        # The first errors are the root cause; the last is how the server ended.
        causes = [*causes[: _MAX_CAUSE_LINES - 1], causes[-1]]
    return causes


def read_lines(path: Path | None, max_bytes: int = 512 * 1024) -> list[str]:
    """The last `max_bytes` of a log as lines; empty if there is no log."""
    if path is None:
        return []
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()


def last_lines(lines: list[str], count: int = 5) -> list[str]:
    """The last `count` lines worth showing when no error is in the log (HTTP access lines and
    route listings skipped)."""
    shown = [
        _clip(line)
        for line in lines
        if line.strip() and "Route: " not in line and '" 200 OK' not in line
    ]
    return shown[-count:]
