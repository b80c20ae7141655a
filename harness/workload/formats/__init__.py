"""Trace loaders, one module per format, each streaming Sessions; `iter_trace` picks one by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from harness.errors import ConfigError
from harness.workload.formats.azure import iter_azure
from harness.workload.formats.bailian import iter_bailian
from harness.workload.formats.burstgpt import iter_burstgpt
from harness.workload.formats.mooncake import iter_mooncake
from harness.workload.formats.options import TraceOptions
from harness.workload.formats.otel import iter_otel
from harness.workload.formats.sessions import iter_sessions
from harness.workload.formats.sharegpt import TokenCounter, iter_sharegpt
from harness.workload.formats.tracelab import iter_tracelab
from harness.workload.formats.weka import iter_weka
from harness.workload.model import Session
from harness.workload.spec import TRACE_FORMATS

RECORDED_FORMATS: tuple[str, ...] = ("tracelab", "weka", "otel")
"""Formats of recorded agents that time themselves (LLM calls, tools, human waits): inspect
reports their recorded split and the run's report sets it beside the measured one."""

__all__ = [
    "RECORDED_FORMATS",
    "TRACE_FORMATS",
    "TokenCounter",
    "TraceOptions",
    "iter_azure",
    "iter_bailian",
    "iter_burstgpt",
    "iter_mooncake",
    "iter_otel",
    "iter_sessions",
    "iter_sharegpt",
    "iter_trace",
    "iter_tracelab",
    "iter_weka",
]


def iter_trace(
    path: Path,
    fmt: str,
    *,
    token_counter: TokenCounter | None = None,
    options: TraceOptions | None = None,
) -> Iterator[Session]:
    """Stream the Sessions of a trace file in the named format; `options` reach the loaders
    of recorded agent traces (tool names, token repair)."""
    if fmt == "mooncake":
        return iter_mooncake(path)
    if fmt == "azure":
        return iter_azure(path)
    if fmt == "burstgpt":
        return iter_burstgpt(path)
    if fmt == "sharegpt":
        return iter_sharegpt(path, token_counter)
    if fmt == "sessions":
        return iter_sessions(path)
    if fmt == "tracelab":
        return iter_tracelab(path, options)
    if fmt == "weka":
        return iter_weka(path, options)
    if fmt == "bailian":
        return iter_bailian(path, options)
    if fmt == "otel":
        return iter_otel(path, options)
    raise ConfigError(f"unknown trace format {fmt!r}; known formats: {', '.join(TRACE_FORMATS)}")
