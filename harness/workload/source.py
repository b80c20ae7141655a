"""Open a workload's source (trace file or synthetic generator) as a stream of Sessions, with
the request limit applied."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.workload.detect import detect_format
from harness.workload.formats import TokenCounter, TraceOptions, iter_trace
from harness.workload.model import Session
from harness.workload.scale import scale_sessions
from harness.workload.spec import TRACE_FORMATS, SourceSpec
from harness.workload.synthetic import generate


def open_source(
    spec: SourceSpec,
    *,
    format_override: str | None = None,
    token_counter: TokenCounter | None = None,
) -> Iterator[Session]:
    """Sessions of a workload's source; `format_override` (e.g. `--format`) beats the spec's
    `format`, and a trace without either is detected from its contents."""
    sessions: Iterator[Session]
    if spec.trace is not None:
        options = TraceOptions(tool_map=dict(spec.tool_map), repair_tokens=spec.repair_tokens)
        fmt = format_override or spec.format
        sessions = _trace(spec.trace, fmt, token_counter, options)
    elif spec.synthetic is not None:
        params: dict[str, Any] = dict(spec.params)
        sessions = generate(spec.synthetic, params, spec.seed)
    else:
        raise ConfigError("the workload source names neither a trace nor a synthetic generator")
    return _limit(scale_sessions(sessions, spec.token_scale), spec.limit_requests)


def sessions_from_path(
    path: Path,
    fmt: str | None = None,
    limit_requests: int | None = None,
    token_counter: TokenCounter | None = None,
) -> Iterator[Session]:
    """Sessions of a trace file named directly on the command line."""
    if limit_requests is not None and limit_requests <= 0:
        raise ConfigError(f"request limit must be positive, got {limit_requests}")
    return _limit(_trace(path, fmt, token_counter), limit_requests)


def apply_request_limit(sessions: Iterable[Session], limit: int | None) -> Iterator[Session]:
    """Stop after `limit` requests in total, truncating the last session's steps to fit."""
    return _limit(iter(sessions), limit)


def _trace(
    path: Path,
    fmt: str | None,
    token_counter: TokenCounter | None,
    options: TraceOptions | None = None,
) -> Iterator[Session]:
    """Open a trace file in a given or detected format."""
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in TRACE_FORMATS:
        raise ConfigError(
            f"unknown trace format {fmt!r}; known formats: {', '.join(TRACE_FORMATS)}"
        )
    return iter_trace(path, fmt, token_counter=token_counter, options=options)


def _limit(sessions: Iterator[Session], limit: int | None) -> Iterator[Session]:
    """Sessions until `limit` requests, reading no further than needed; without a limit the
    loader's own stream (a columnar one keeps its fast path for `workload_stats`)."""
    if limit is None:
        return sessions
    return _limited(sessions, limit)


def _limited(sessions: Iterator[Session], limit: int) -> Iterator[Session]:
    """Yield sessions until `limit` requests."""
    left = limit
    for session in sessions:
        if session.requests >= left:
            yield (
                session
                if session.requests == left
                else replace(session, steps=session.steps[:left])
            )
            return
        left -= session.requests
        yield session
