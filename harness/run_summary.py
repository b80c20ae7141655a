"""The figures of summary.json computed from a run's tables: one function for a run that
finished and for one recovered from its journals after a crash, a kill or a lost terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError

from harness.analysis import itl_ms_from_chunks, summarize_requests
from harness.config_files import validation_message
from harness.errors import ResultsError
from harness.latency_split import latency_split, session_figures
from harness.records import TABLE_COLUMN_KINDS
from harness.replica_figures import replica_figures
from harness.results import MANIFEST_FILE, SUMMARY_FILE, RunReader, arrow_frame, table_frame
from harness.summary import DEFAULT_PERCENTILES, Summary, new_summary, parse_summary
from harness.workload.slo import Slo
from harness.workload.spec import ROUTING_POLICIES

RECOVERED_NOTE = (
    "the run did not finish (status {status!r}): figures are recovered from its journals; "
    "energy and server-side figures need the run's end and are unavailable"
)


CHUNK_COLUMNS: tuple[str, ...] = ("chunk_ns", "chunk_tokens")
"""The request table's per-chunk lists: by far its largest part, read as Arrow only."""


@dataclass(frozen=True)
class RequestTable:
    """A run's requests as the summary needs them: one row each without the chunk lists,
    and the pooled inter-token latencies of the completed measured requests."""

    frame: pd.DataFrame
    itl_ms: np.ndarray


def read_requests(reader: RunReader) -> RequestTable:
    """The requests of a run directory, the chunk lists turned into ITLs in Arrow, so a long
    run's millions of chunks never become Python objects."""
    lean = [c for c in TABLE_COLUMN_KINDS["requests"] if c not in CHUNK_COLUMNS]
    frame = arrow_frame(reader.arrow("requests", lean))
    ok = frame["ok"].fillna(False).astype(bool)
    measured_ok = (ok & ~frame["warmup"].fillna(False).astype(bool)).to_numpy(dtype=bool)
    chunks = reader.arrow("requests", ["chunk_ns"]).column("chunk_ns")
    return RequestTable(frame, itl_ms_from_chunks(chunks.filter(pa.array(measured_ok))))


def table_figures(
    requests: RequestTable,
    steps: pd.DataFrame | None,
    tools: pd.DataFrame | None,
    slo: Slo | None,
    workload: str,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """Request metrics (the latency figures with `percentiles`), and for agent runs the
    latency split and session figures."""
    summary = summarize_requests(
        requests.frame, slo, itl_ms=requests.itl_ms, percentiles=percentiles
    )
    if steps is not None and not steps.empty:
        tools_df = tools if tools is not None else table_frame("tools", [])
        summary["latency_split"] = latency_split(steps, tools_df, workload)
        summary["session_figures"] = session_figures(steps, requests.frame)
    return summary


def token_mismatches(requests: pd.DataFrame) -> tuple[int, int]:
    """Requests whose prompt or output length (server's usage) differs from the planned one."""

    def count(actual: str, expected: str) -> int:
        got = requests[actual].astype("Int64")
        want = requests[expected].astype("Int64")
        return int(((got != want) & got.notna()).sum())

    return (
        count("prompt_tokens", "prompt_tokens_expected"),
        count("output_tokens", "output_tokens_expected"),
    )


def _slo(reader: RunReader) -> Slo | None:
    """The SLO the workload in the manifest set, if any."""
    workload = reader.manifest.get("workload")
    slo = workload.get("slo") if isinstance(workload, Mapping) else None
    if slo is None:
        return None
    try:
        return Slo.model_validate(slo)
    except ValidationError as err:
        where = reader.run_dir / MANIFEST_FILE
        raise ResultsError(validation_message(where, err, "workload.slo")) from None


def _percentiles(plan: Mapping[str, Any]) -> Sequence[float]:
    """The percentiles a run's manifest says it was asked for, else the default."""
    chosen = plan.get("percentiles")
    if (
        isinstance(chosen, list)
        and chosen
        and all(
            isinstance(p, int | float) and not isinstance(p, bool) and 0 < p < 100 for p in chosen
        )
    ):
        return [float(p) for p in chosen]
    return DEFAULT_PERCENTILES


def _replicas(manifest: Mapping[str, Any]) -> tuple[list[str], str] | None:
    """The replicas' URLs and the routing of a run against several, from its manifest;
    None for one server (or a manifest that does not say)."""
    server, workload = manifest.get("server"), manifest.get("workload")
    replicas = server.get("replicas") if isinstance(server, Mapping) else None
    routing = workload.get("routing") if isinstance(workload, Mapping) else None
    if not isinstance(replicas, list) or len(replicas) < 2 or routing not in ROUTING_POLICIES:
        return None
    urls = [r.get("base_url") for r in replicas if isinstance(r, Mapping)]
    if not all(isinstance(u, str) for u in urls):
        return None
    return [str(u) for u in urls], str(routing)


def recover_summary(reader: RunReader) -> Summary:
    """A summary for a run directory that has tables (or their journals) but no summary.json;
    it says it was recovered and why figures are missing."""
    manifest = reader.manifest
    if not reader.has_table("requests"):
        raise ResultsError(
            f"{reader.run_dir}: no summary.json and no request journal: the run stopped "
            "before it recorded anything to recover"
        )
    requests = read_requests(reader)
    steps = reader.table("steps") if reader.has_table("steps") else None
    tools = reader.table("tools") if reader.has_table("tools") else None
    workload = manifest.get("workload")
    name = str(workload.get("name")) if isinstance(workload, Mapping) else reader.run_dir.name
    status = str(manifest.get("status") or "unknown")
    raw_plan = manifest.get("plan")
    plan: Mapping[str, Any] = raw_plan if isinstance(raw_plan, Mapping) else {}
    summary = table_figures(requests, steps, tools, _slo(reader), name, _percentiles(plan))
    prompt_mismatch, output_mismatch = token_mismatches(requests.frame)
    summary["run"] = {
        "requests_planned": plan.get("requests"),
        "requests_sent": int(requests.frame["sent_ns"].notna().sum()),
        "prompt_token_mismatches": prompt_mismatch,
        "output_token_mismatches": output_mismatch,
        "interrupted": None,
        "aborted_reason": None,
    }
    reason = RECOVERED_NOTE.format(status=status)
    summary["server_metrics"] = {"available": False, "reason": reason}
    replicas = _replicas(manifest)
    if replicas is not None:
        urls, routing = replicas
        unread = {"available": False, "reason": reason}
        summary["servers"] = replica_figures(
            reader,
            requests.frame,
            urls,
            routing,
            dict.fromkeys(urls, unread),
            _slo(reader),
            _percentiles(plan),
        )
    summary["energy"] = None
    summary["recovered"] = {"from": "journals", "status": status, "note": reason}
    return new_summary(summary)


def read_summary(reader: RunReader) -> Summary:
    """summary.json, or a summary recovered from the run's journals where the run never wrote
    one (the result then has a `recovered` block); one that does not fit the schema is a
    ResultsError naming the file and the key."""
    data = reader.summary
    if data is None:
        return recover_summary(reader)
    return parse_summary(data, reader.run_dir / SUMMARY_FILE)
