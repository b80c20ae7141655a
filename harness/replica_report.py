"""Several replicas: a report section with one row per replica (its requests, sessions,
throughput and latency as the run's own, and its prefix cache as the server counted it and as
the responses' usage told it), and the routing that spread the requests."""

from __future__ import annotations

from harness.figures import Section, format_share, format_value
from harness.summary import Summary

HEADERS = (
    "replica",
    "requests",
    "failed",
    "sessions",
    "output tok/s",
    "TTFT p50 ms",
    "E2E p50 ms",
    "prefix cache hits (server)",
    "cached prompt (usage)",
)


def replica_section(summary: Summary) -> Section | None:
    """Each replica's figures beside the others'; None for a run against one server."""
    servers = summary.servers
    if servers is None:
        return None
    note = (
        f"routing: {servers.routing}; sessions on more than one replica: "
        f"{servers.sessions_on_several_replicas}"
    )
    if servers.unrouted_requests:
        note += f"; requests routed to no replica: {servers.unrouted_requests}"
    sec = Section("Replicas", HEADERS, note=note)
    for r in servers.replicas:
        sec.rows.append(
            (
                r.url,
                format_value(r.requests_total),
                format_value(r.requests_failed),
                format_value(r.sessions),
                format_value(r.output_throughput_tok_s, 2),
                format_value(r.ttft_ms.p50, 2),
                format_value(r.e2el_ms.p50, 2),
                format_share(r.prefix_cache_hit_rate),
                format_share(r.cached_prompt_frac),
            )
        )
    return sec
