"""How many load-generating worker processes a run uses, and each one's share of the load.

`auto` sizes the pool from the stream rate the workload is expected to ask for and the cores
free of the server and the parent; an explicit count is kept unless there is less work than
workers, when it is lowered and the reason says so."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import ConfigError
from harness.replay import ReplayOptions
from harness.tools.workers import usable_cpus
from harness.workload.limits import MAX_LOAD_WORKERS

WORKER_TOK_S = 20_000
"""Streamed tokens per second one worker is sized for: the rate up to which the client's own
added latency stays within 1 ms p99 on the self-check benchmark (scripts/bench_client.py)."""

STREAM_TOK_S = 100
"""Tokens per second assumed per concurrent stream where the workload does not set a rate
(closed loop, time scale 0): a typical GPU decode speed; the server sets the real one."""


@dataclass(frozen=True)
class WorkerChoice:
    """The load workers used and why: summary.workers."""

    requested: int | Literal["auto"]
    used: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The summary's `workers` block."""
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


def expected_tok_s(opts: ReplayOptions, counted: dict[str, Any]) -> tuple[float, str]:
    """The output tokens per second the workload will ask for, and how that was worked out."""
    output = float(counted.get("output_tokens") or 0)
    sessions = int(counted.get("sessions") or 0)
    if opts.pattern in ("poisson", "constant") and opts.rate_per_s and sessions:
        rate = opts.rate_per_s * output / sessions
        return rate, f"{opts.rate_per_s:g} sessions/s × {output / sessions:,.0f} tokens each"
    span_s = float(counted.get("start_span_ms") or 0) / 1000 * opts.time_scale
    if opts.pattern == "trace" and span_s > 0:
        return output / span_s, f"{output:,.0f} tokens over the trace's {span_s:,.1f} s"
    streams = opts.concurrency if opts.pattern == "closed" else sessions
    if opts.max_concurrency:
        streams = min(streams or opts.max_concurrency, opts.max_concurrency)
    streams = max(1, streams or 1)
    return streams * STREAM_TOK_S, f"{streams} streams × {STREAM_TOK_S} tok/s assumed each"


def _most(opts: ReplayOptions, counted: dict[str, Any]) -> tuple[int, str]:
    """The most workers that have work: one session, stream slot or request each."""
    caps = [(int(counted.get("sessions") or 1), "sessions")]
    if opts.pattern == "closed" and opts.concurrency:
        caps.append((opts.concurrency, "concurrent sessions"))
    if opts.max_concurrency:
        caps.append((opts.max_concurrency, "max_concurrency slots"))
    return min(caps)


def choose_workers(
    requested: int | Literal["auto"],
    opts: ReplayOptions,
    counted: dict[str, Any],
    server_local: bool,
) -> WorkerChoice:
    """The pool for this run (ConfigError for a count below 1 or above the limit)."""
    if requested != "auto" and not 1 <= requested <= MAX_LOAD_WORKERS:
        raise ConfigError(f"--workers must be 1 to {MAX_LOAD_WORKERS} or auto, not {requested}")
    most, unit = _most(opts, counted)
    if requested != "auto":
        if requested > most:
            return WorkerChoice(
                requested, most, f"{requested} asked, lowered to {most}: only {most} {unit}"
            )
        return WorkerChoice(requested, requested, "as asked")
    cpus, why = usable_cpus()
    # One core for the parent (journals, telemetry); half the rest for a server on this host.
    free = cpus - 1
    if server_local:
        free = (cpus - 1) // 2
    free = max(1, free)
    rate, how = expected_tok_s(opts, counted)
    wanted = max(1, math.ceil(rate / WORKER_TOK_S))
    used = max(1, min(wanted, free, most))
    local = "; the server shares this host" if server_local else ""
    reason = (
        f"auto: ~{rate:,.0f} tok/s expected ({how}) at {WORKER_TOK_S:,} tok/s per worker; "
        f"{free} {'core' if free == 1 else 'cores'} free ({why}{local})"
    )
    if used < wanted:
        reason += f"; {wanted} wanted, capped at {used}"
    return WorkerChoice(requested, used, reason)


def share(total: int, count: int, index: int) -> int:
    """Worker `index`'s fair share of `total` slots split over `count` workers."""
    return total // count + (1 if index < total % count else 0)
