"""summary.servers: a run against several replicas split by the replica each request went to,
with each replica's figures computed as the run's own (harness.analysis), its prefix cache as
the server and the responses' usage told it, and how sessions were spread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.analysis import itl_ms_from_chunks, summarize_requests
from harness.results import RunReader
from harness.workload.slo import Slo

KEPT = (
    "requests_total",
    "requests_completed",
    "requests_failed",
    "duration_s",
    "input_tokens",
    "output_tokens",
    "request_throughput_rps",
    "output_throughput_tok_s",
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2el_ms",
    "errors",
)
"""The run-level figures each replica repeats for its own requests."""


def _measured(frame: pd.DataFrame) -> pd.Series:
    """Rows that are not warm-up."""
    return ~frame["warmup"].fillna(False).astype(bool)


def _hit_rate(metrics: Mapping[str, Any]) -> float | None:
    """Prefix-cache hits over queries from a replica's /metrics deltas; None where untold."""
    counters = metrics.get("counters") or {}
    hits, queries = counters.get("prefix_cache_hits"), counters.get("prefix_cache_queries")
    if not metrics.get("available") or hits is None or not queries:
        return None
    return min(1.0, max(0.0, float(hits) / float(queries)))


def _cached(rows: pd.DataFrame) -> tuple[int | None, float | None]:
    """Cached prompt tokens the usage of completed requests reported, and their share."""
    ok = rows[rows["ok"].fillna(False).astype(bool)]
    cached = ok["cached_prompt_tokens"].dropna()
    if cached.empty:
        return None, None
    total = int(cached.sum())
    prompt = ok.loc[cached.index, "prompt_tokens"].dropna()
    denominator = int(prompt.sum())
    return total, (min(1.0, total / denominator) if denominator else None)


def replica_figures(
    reader: RunReader,
    frame: pd.DataFrame,
    urls: Sequence[str],
    routing: str,
    metrics: Mapping[str, Mapping[str, Any]],
    slo: Slo | None,
    percentiles: Sequence[float],
) -> dict[str, Any]:
    """summary.servers from the request table (without chunk lists) and each replica's
    /metrics deltas (`metrics`, by URL); the chunk lists are read per replica as Arrow."""
    server = frame["server"].astype("string")
    measured = _measured(frame)
    ok = frame["ok"].fillna(False).astype(bool)
    chunks = reader.arrow("requests", ["chunk_ns"]).column("chunk_ns")
    replicas = []
    for url in urls:
        mine = (server == url).fillna(False).to_numpy(dtype=bool)
        rows = frame[mine]
        measured_rows = rows[measured[mine].to_numpy(dtype=bool)]
        keep = (mine & (measured & ok).to_numpy(dtype=bool)).tolist()
        itl = itl_ms_from_chunks(chunks.filter(pa.array(keep)))
        figures = summarize_requests(rows, slo, itl_ms=itl, percentiles=percentiles)
        cached, cached_frac = _cached(measured_rows)
        block = metrics.get(url) or {"available": False, "reason": "not scraped"}
        replicas.append(
            {
                "url": url,
                **{k: figures[k] for k in KEPT},
                "sessions": int(measured_rows["session_id"].nunique()),
                "cached_prompt_tokens": cached,
                "cached_prompt_frac": cached_frac,
                "prefix_cache_hit_rate": _hit_rate(block),
                "server_metrics": dict(block),
            }
        )
    routed = frame[measured & server.notna()]
    per_session = routed.groupby("session_id")["server"].nunique()
    return {
        "routing": routing,
        "sessions_on_several_replicas": int(np.count_nonzero(per_session.to_numpy() > 1)),
        "unrouted_requests": int((measured & server.isna()).sum()),
        "replicas": replicas,
    }
