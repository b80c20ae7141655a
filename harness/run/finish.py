"""The end of a run: the server's counters read again, the tables sealed and the summary
computed from what was written (never from memory), with how the replay ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd

from harness.latency_split import session_split, step_split
from harness.replay import ReplayOutcome
from harness.replica_figures import replica_figures
from harness.results import RunReader, RunWriter, table_frame
from harness.run.telemetry import RunTelemetry
from harness.run_summary import read_requests, table_figures, token_mismatches
from harness.server import ServerInfo
from harness.summary import (
    DEFAULT_PERCENTILES,
    ArrivalPattern,
    LoadApplied,
    Summary,
    describe_arrivals,
    new_summary,
)
from harness.telemetry.server_metrics import Samples, phase_deltas, scrape, sum_samples
from harness.telemetry.steady import CLIENT_COLUMNS
from harness.workload.spec import WorkloadSpec

MetricsBefore = Mapping[str, Samples | str] | str
"""Each server's /metrics before the load (by base URL; a string: why it was not read), or
why none was read at all."""


def scrape_metrics(info: ServerInfo, warn: Callable[[str], None]) -> dict[str, Samples | str]:
    """Every server's /metrics now, by base URL, or why one could not be read (reported
    once each)."""
    scraped: dict[str, Samples | str] = {}
    several = len(info.urls) > 1
    for url, headers in info.endpoints():
        try:
            scraped[url] = asyncio.run(scrape(url, headers))
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            reason = f"{type(err).__name__}: {err}"
            where = f" at {url}" if several else ""
            warn(f"server /metrics unavailable{where} ({reason}); run goes on")
            scraped[url] = reason
    return scraped


def _delta(before: Samples | str, after: Samples | str) -> dict[str, Any]:
    """One server's phases and counters over the run, or why they are missing."""
    if isinstance(before, str):
        return {"available": False, "reason": before}
    if isinstance(after, str):
        return {"available": False, "reason": after}
    return {"available": True, **phase_deltas(before, after)}


def server_metrics_delta(
    info: ServerInfo, before: MetricsBefore, warn: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Server-side request phases and token counters over the run (over several replicas,
    of their sums), and each server's own by base URL; or why they are missing."""
    if isinstance(before, str):
        missing = {"available": False, "reason": before}
        return missing, {url: missing for url in info.urls}
    after = scrape_metrics(info, warn)
    unread = "not read before the load"
    per = {url: _delta(before.get(url, unread), after[url]) for url in info.urls}
    if len(per) == 1:
        return next(iter(per.values())), per
    gaps = [f"{url}: {block['reason']}" for url, block in per.items() if not block["available"]]
    if gaps:
        return {"available": False, "reason": "replicas' /metrics missing: " + "; ".join(gaps)}, per
    total = phase_deltas(
        sum_samples([b for b in before.values() if not isinstance(b, str)]),
        sum_samples([a for a in after.values() if not isinstance(a, str)]),
    )
    return {"available": True, **total}, per


def run_block(
    outcome: ReplayOutcome, counted: dict[str, Any], requests: pd.DataFrame
) -> dict[str, Any]:
    """summary.run: what was planned, sent and not, and how the replay ended."""
    prompt_mismatches, output_mismatches = token_mismatches(requests)
    return {
        "requests_planned": counted["requests"],
        "requests_sent": outcome.requests_sent,
        "requests_not_sent": outcome.requests_not_sent,
        "requests_clipped": outcome.requests_clipped,
        "requests_skipped_overlength": outcome.requests_skipped_overlength,
        "prompt_token_mismatches": prompt_mismatches,
        "output_token_mismatches": output_mismatches,
        "sessions_started": outcome.sessions_started,
        "sessions_failed": outcome.sessions_failed,
        "session_errors": list(outcome.session_errors),
        "subagents_started": outcome.subagents_started,
        "subagents_without_parent": outcome.subagents_without_parent,
        "subagents_not_started": outcome.subagents_not_started,
        "subagent_notes": list(outcome.subagent_notes),
        "interrupted": outcome.interrupted,
        "aborted_reason": outcome.aborted_reason,
    }


def finish(
    spec: WorkloadSpec,
    writer: RunWriter,
    out: Path,
    info: ServerInfo,
    outcome: ReplayOutcome,
    counted: dict[str, Any],
    telemetry: RunTelemetry | None,
    metrics_before: MetricsBefore,
    warn: Callable[[str], None],
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    routing: str = "round-robin",
) -> Summary:
    """Seal the tables and compute the summary from what was written (the latency figures
    with `percentiles`); a summary that does not fit its schema is an error here, before
    anything is written."""
    summary_metrics, per_server = server_metrics_delta(info, metrics_before, warn)
    writer.seal_tables()
    reader = RunReader(out)
    requests = read_requests(reader)
    steps = reader.table("steps") if reader.has_table("steps") else None
    tools = reader.table("tools") if reader.has_table("tools") else None
    summary = table_figures(requests, steps, tools, spec.slo, spec.name, percentiles)
    summary["run"] = run_block(outcome, counted, requests.frame)
    summary["server_metrics"] = summary_metrics
    if len(info.urls) > 1:
        summary["servers"] = replica_figures(
            reader, requests.frame, info.urls, routing, per_server, spec.slo, percentiles
        )
    if telemetry is not None:
        sessions_run = int(steps["session_id"].nunique()) if steps is not None else None
        samples = reader.frame("telemetry")
        summary["energy"] = telemetry.energy(
            samples,
            requests.frame,
            tools,
            sessions_run,
            client_records=lambda: reader.arrow("requests", list(CLIENT_COLUMNS)),
        )
        summary["telemetry"] = telemetry.status()
    else:
        summary["energy"] = None
    if steps is not None and not steps.empty:
        tools_df = tools if tools is not None else table_frame("tools", [])
        writer.write_frame("step_split", step_split(steps, tools_df))
        writer.write_frame("session_split", session_split(steps, tools_df))
    return new_summary(summary)


def load_applied(
    spec: WorkloadSpec,
    workers: int | None,
    note: str | None = None,
    workload_pattern: ArrivalPattern | None = None,
) -> LoadApplied:
    """summary.load: the arrival pattern in words and figures, the caps and limits, and the
    load workers. The trace's timing was replaced where the workload's own pattern
    (`workload_pattern`; None: the spec's) is a trace and the applied one is not; `note`
    says by what."""
    arrival, limits = spec.arrival, spec.limits
    pattern = arrival.pattern
    own = workload_pattern or pattern
    description = describe_arrivals(
        pattern,
        time_scale=arrival.time_scale,
        rate_per_s=arrival.rate_per_s,
        concurrency=arrival.concurrency,
        max_concurrency=limits.max_concurrency,
    )
    return LoadApplied(
        pattern=pattern,
        description=description,
        time_scale=arrival.time_scale if pattern == "trace" else None,
        rate_per_s=arrival.rate_per_s if pattern in ("poisson", "constant") else None,
        concurrency=arrival.concurrency if pattern == "closed" else None,
        max_concurrency=limits.max_concurrency,
        max_requests=limits.max_requests,
        duration_s=limits.duration_s,
        warmup_requests=limits.warmup_requests,
        workers=workers,
        trace_timing_replaced=own == "trace" and pattern != "trace",
        note=note,
    )
