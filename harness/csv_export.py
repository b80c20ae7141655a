"""CSV exports of a run, for spreadsheets and other tools (as GuideLLM and AIPerf write):
requests.csv, one row per request from requests.parquet with its latencies in ms, and
summary.csv, one row per number of summary.json with its name, value and unit (text and
absent blocks are not figures; an unknown number is an empty value, never 0)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from pydantic import BaseModel

from harness.records import TABLE_COLUMN_KINDS
from harness.results import RunReader, write_run_file
from harness.summary import PERCENTILE_KEYS, Stats, Summary

REQUESTS_CSV = "requests.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_CSV_HEADER: tuple[str, str, str] = ("name", "value", "unit")

_CHUNK_LISTS: tuple[str, ...] = ("chunk_ns", "chunk_tokens")
"""List columns left out of requests.csv (requests.parquet keeps every chunk's time); the
table gets each request's chunk count instead."""

_BATCH_ROWS = 64_000
"""Requests converted and written at a time, so a long run's table is never whole in memory."""


def _ms_between(batch: pa.RecordBatch, end: str, start: str) -> pa.Array:
    """(end − start) in ms per row; null where either stamp is missing."""
    gap = pc.subtract(batch.column(end), batch.column(start))
    return pc.divide(pc.cast(gap, pa.float64()), 1e6)


def _request_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One batch of the request table as requests.csv has it: the scalar columns, then the
    chunk count and TTFT, TPOT and E2EL in ms (TPOT null for one output token or fewer)."""
    ttft = _ms_between(batch, "first_token_ns", "sent_ns")
    e2el = _ms_between(batch, "last_token_ns", "sent_ns")
    output = pc.cast(batch.column("output_tokens"), pa.float64())
    several = pc.greater(output, 1.0)
    tpot = pc.if_else(
        several,
        pc.divide(pc.subtract(e2el, ttft), pc.subtract(output, 1.0)),
        pa.nulls(len(batch), pa.float64()),
    )
    chunks = pc.list_value_length(batch.column("chunk_ns"))
    keep = [c for c in batch.schema.names if c not in _CHUNK_LISTS]
    columns = [batch.column(c) for c in keep] + [chunks, ttft, tpot, e2el]
    names = [*keep, "chunks", "ttft_ms", "tpot_ms", "e2el_ms"]
    return pa.RecordBatch.from_arrays(columns, names=names)


def write_requests_csv(reader: RunReader) -> Path:
    """requests.csv in the run directory, from requests.parquet (or a killed run's journal),
    written batch by batch to a temporary file that replaces the old one when complete."""
    table = reader.arrow("requests", list(TABLE_COLUMN_KINDS["requests"]))
    path = reader.run_dir / REQUESTS_CSV
    fd, tmp = tempfile.mkstemp(prefix=f".{REQUESTS_CSV}.", suffix=".tmp", dir=reader.run_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer: pacsv.CSVWriter | None = None
            for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
                rows = _request_rows(batch)
                if writer is None:
                    writer = pacsv.CSVWriter(fh, rows.schema)
                writer.write_batch(rows)
            if writer is None:  # no requests: the header alone
                empty = pa.RecordBatch.from_pylist([], schema=table.schema)
                writer = pacsv.CSVWriter(fh, _request_rows(empty).schema)
            writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


_SUFFIX_UNITS: tuple[tuple[str, str], ...] = (
    ("_tok_s", "tok/s"),
    ("_rps", "req/s"),
    ("_per_s", "1/s"),
    ("_per_hour", "1/h"),
    ("_ms", "ms"),
    ("_ns", "ns"),
    ("_s", "s"),
    ("_hz", "Hz"),
    ("_w", "W"),
    ("_j", "J"),
    ("_bytes", "bytes"),
    ("_share", "fraction"),
    ("shares", "fraction"),
    ("_attainment", "fraction"),
    ("_error", "fraction"),
    ("_util", "fraction"),
    ("_per_output_token", "J/token"),
    ("_per_request", "J/request"),
    ("_per_session", "J/session"),
    ("_pct_of_one_core", "%"),
    ("tokens", "tokens"),
    ("_tokens_expected", "tokens"),
)
"""A key's unit from how its name ends (the project's names carry their units)."""

_STAT_KEYS = frozenset({"mean", "std", "min", "max", "p50", "p90", "p99"})


def unit_of(path: tuple[str, ...]) -> str:
    """The unit of a summary figure at `path` (its dotted key split): a stats block's values
    take the block's unit, `count` counts samples; empty where the name carries none."""
    name = path[-1]
    parent = path[-2] if len(path) > 1 else ""
    if name == "count" and parent:
        return "samples"
    if (name in _STAT_KEYS or parent == "percentiles") and len(path) > 1:
        owner = path[-3] if parent == "percentiles" and len(path) > 2 else parent
        return unit_of((owner,))
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    if name.startswith("requests") or name.endswith("_requests") or parent == "errors":
        return "requests"
    if name.startswith("sessions"):
        return "sessions"
    # A figure keyed by a name (a device, a counter) takes its block's unit.
    return unit_of(path[:-1]) if len(path) > 1 and parent not in ("counters",) else ""


def _numeric(annotation: Any) -> bool:
    """Whether a field of this type holds a number (int or float, not bool) when set."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _numeric(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_numeric(a) for a in get_args(annotation))
    return annotation in (int, float)


def _dict_values(annotation: Any) -> Any:
    """The value type of a dict type (through Optional and Annotated); Any where unknown."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _dict_values(get_args(annotation)[0])
    if origin in (Union, UnionType):
        found = [_dict_values(a) for a in get_args(annotation) if a is not type(None)]
        return found[0] if found else Any
    if origin is dict:
        return get_args(annotation)[1]
    return Any


def summary_figures(summary: Summary) -> Iterator[tuple[str, int | float | None, str]]:
    """Every number of a summary as (dotted name, value, unit), in the summary's order. A
    numeric figure that is null is kept (an empty value: unknown, never 0); text, booleans,
    lists (per-worker health, the energy window) and blocks that are null (no SLO, no
    energy) are left out, as are the fixed p50/p90/p99 repeated under a stats block's
    `percentiles` by early version 2 summaries (one row per value)."""

    def value_rows(
        value: Any, annotation: Any, path: tuple[str, ...]
    ) -> Iterator[tuple[str, int | float | None, str]]:
        if isinstance(value, BaseModel):
            yield from model_rows(value, path)
        elif isinstance(value, Mapping):
            inner = _dict_values(annotation)
            for key, item in value.items():
                yield from value_rows(item, inner, (*path, str(key)))
        elif value is None:
            if _numeric(annotation):
                yield ".".join(path), None, unit_of(path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield ".".join(path), value, unit_of(path)

    def model_rows(
        model: BaseModel, where: tuple[str, ...]
    ) -> Iterator[tuple[str, int | float | None, str]]:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(model, Stats) and name == "percentiles" and value is not None:
                value = {k: v for k, v in value.items() if k not in PERCENTILE_KEYS}
            yield from value_rows(value, field.annotation, (*where, field.alias or name))
        for key, value in (model.model_extra or {}).items():  # a vendor block's own keys
            yield from value_rows(value, Any, (*where, key))

    yield from model_rows(summary, ())


def summary_csv(summary: Summary) -> str:
    """summary.csv's text: a header and one row per figure (name, value, unit); an unknown
    figure is an empty value, never 0."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_CSV_HEADER)
    for name, value, unit in summary_figures(summary):
        writer.writerow((name, "" if value is None else repr(value), unit))
    return out.getvalue()


def write_csv(reader: RunReader, summary: Summary) -> list[Path]:
    """requests.csv and summary.csv in the run directory; their paths."""
    requests = write_requests_csv(reader)
    return [requests, write_run_file(reader.run_dir, SUMMARY_CSV, summary_csv(summary))]
