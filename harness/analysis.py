"""Pure functions from request tables to metrics, defined to match `vllm bench serve`.

Latency stats are over completed (ok) measured requests; warmup rows are dropped first.
Where there is no data a figure is None, never 0.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.summary import DEFAULT_PERCENTILES, percentile_name
from harness.timeline import in_flight
from harness.units import NS_PER_MS, ns_to_ms, ns_to_s
from harness.workload.slo import Slo

PERCENTILES: tuple[int, ...] = (50, 90, 99)
"""Percentiles every stats block has (numpy, linear interpolation)."""
LATENCY_STATS: tuple[str, ...] = (
    "ttft_ms",
    "tpot_ms",
    "itl_ms",
    "e2el_ms",
    "e2el_from_scheduled_ms",
    "send_lag_ms",
)
"""The request latency figures `summarize_requests` reports, each a stats block (Stats)
with the chosen percentiles, in the summary's order."""
BURST_MS = 0.1
"""An ITL or TPOT median below this is tokens arriving in bursts, not a server's pace."""

MAX_ERROR_KINDS = 10
"""How many distinct error strings `summarize_requests` keeps (the most frequent)."""

_MAX_ERROR_CHARS = 300


def percentile_stats(
    values: Iterable[float] | np.ndarray, percentiles: Sequence[float] | None = None
) -> dict[str, Any]:
    """count, mean, p50, p90, p99, (population) std, min and max of `values`, and under
    `percentiles` each of the given ones beyond the fixed PERCENTILES by name (`p95`), so
    no value is stored twice; all None when empty."""
    if isinstance(values, np.ndarray):
        arr = values.astype(np.float64, copy=False)
    else:
        arr = np.asarray(list(values), dtype=np.float64)
    stats: dict[str, Any] = {"count": int(arr.size)}
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError("percentile_stats: values contain NaN or infinity")

    def at(p: float) -> float | None:
        return float(np.percentile(arr, p, method="linear")) if arr.size else None

    stats["mean"] = float(np.mean(arr)) if arr.size else None
    stats.update({f"p{p}": at(p) for p in PERCENTILES})
    stats["std"] = float(np.std(arr)) if arr.size else None
    stats["min"] = float(np.min(arr)) if arr.size else None
    stats["max"] = float(np.max(arr)) if arr.size else None
    if percentiles is not None:
        extra = sorted(set(percentiles) - set(PERCENTILES))
        stats["percentiles"] = {percentile_name(p): at(p) for p in extra}
    return stats


def min_samples(p: float) -> int:
    """The fewest values that put at least one above the p-th percentile: 100 / (100 − p),
    rounded up (p50: 2, p90: 10, p95: 20, p99: 100, p99.9: 1000)."""
    return math.ceil(100.0 / (100.0 - p) - 1e-9)


def timing_flags(figures: Mapping[str, Any], percentiles: Sequence[float]) -> list[dict[str, Any]]:
    """Implausible or poorly backed latency figures of a summary's figures: an ITL or TPOT
    median under BURST_MS (tokens arriving in bursts), and percentiles from fewer values
    than `min_samples` (no value lies above them: they are the top values, interpolated);
    figures in doubt for the same reason share one flag. The percentiles checked are the
    chosen ones and the fixed PERCENTILES, which every headline and sweep ladder shows."""
    flags: list[dict[str, Any]] = []
    for figure in ("itl_ms", "tpot_ms"):
        stats = figures.get(figure)
        p50 = stats.get("p50") if isinstance(stats, Mapping) else None
        if p50 is not None and p50 < BURST_MS:
            what = "inter-token latency" if figure == "itl_ms" else "time per output token"
            flags.append(
                {
                    "kind": "token_bursts",
                    "figures": [figure],
                    "percentiles": ["p50"],
                    "reason": f"{figure} p50 is {p50:.3f} ms, under {BURST_MS} ms: tokens "
                    f"arrive in bursts (several per read), so the {what} is the client's "
                    "read spacing, not the server's token pace",
                }
            )
    shown = sorted({float(p) for p in (*percentiles, *PERCENTILES)})
    thin: dict[tuple[int, tuple[float, ...]], list[str]] = {}
    for figure in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        stats = figures.get(figure)
        if not isinstance(stats, Mapping) or not stats.get("count"):
            continue
        count = int(stats["count"])
        few = tuple(p for p in shown if count < min_samples(p))
        if few:
            thin.setdefault((count, few), []).append(figure)
    for (count, few), names in thin.items():
        chosen = [percentile_name(p) for p in few]
        needs = ", ".join(f"{percentile_name(p)} needs {min_samples(p)}" for p in few)
        flags.append(
            {
                "kind": "few_samples",
                "figures": names,
                "percentiles": chosen,
                "reason": f"{', '.join(names)}: {', '.join(chosen)} from {count} values; a pP "
                f"needs 100/(100-P) values for one to lie above it ({needs}), so these are "
                "the largest values seen, not tails",
            }
        )
    return flags


def _is_missing(value: Any) -> bool:
    """True for None, pandas NA and float NaN."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _ints(df: pd.DataFrame, column: str) -> list[int | None]:
    """A column as Python ints with None for missing, whatever its pandas dtype."""
    if column not in df.columns:
        return [None] * len(df)
    return [None if _is_missing(v) else int(v) for v in df[column].tolist()]


def _bools(df: pd.DataFrame, column: str) -> list[bool | None]:
    """A column as Python bools with None for missing."""
    if column not in df.columns:
        return [None] * len(df)
    return [None if _is_missing(v) else bool(v) for v in df[column].tolist()]


def _int_lists(df: pd.DataFrame, column: str) -> list[list[int]]:
    """A list column (lists or numpy arrays) as lists of ints; missing becomes []."""
    if column not in df.columns:
        return [[] for _ in range(len(df))]
    out: list[list[int]] = []
    for v in df[column].tolist():
        if v is None or (not isinstance(v, Sequence | np.ndarray) and _is_missing(v)):
            out.append([])
        else:
            out.append([int(x) for x in v])
    return out


def _measured(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that are not warmup (a missing warmup flag counts as measured)."""
    warmup = _bools(df, "warmup")
    keep = [w is not True for w in warmup]
    return df.loc[keep].reset_index(drop=True)


def _ok_flags(df: pd.DataFrame) -> list[bool]:
    """Per-row completion: the `ok` column, or RequestRecord.ok's rule when that is absent."""
    if "ok" in df.columns:
        return [v is True for v in _bools(df, "ok")]
    errors = df["error"].tolist() if "error" in df.columns else [None] * len(df)
    status = _ints(df, "http_status")
    done = _ints(df, "done_ns")
    return [
        _is_missing(e) and s == 200 and d is not None
        for e, s, d in zip(errors, status, done, strict=True)
    ]


def _error_label(error: Any, http_status: int | None, done_ns: int | None) -> str:
    """A short label for why a request failed."""
    if not _is_missing(error) and str(error):
        return str(error)[:_MAX_ERROR_CHARS]
    if http_status is not None and http_status != 200:
        return f"http status {http_status}"
    if done_ns is None:
        return "incomplete (no done_ns)"
    return "failed (no error recorded)"


def _max_concurrency(intervals: list[tuple[int, int]]) -> int:
    """Largest number of overlapping [start, end) intervals (back-to-back is not overlap)."""
    # The earliest stamp as the zero keeps in_flight's seconds exact to the nanosecond.
    t0_ns = min(min(s, e) for s, e in intervals) if intervals else 0
    _, counts = in_flight(intervals, t0_ns)
    return int(max(counts, default=0.0))


def _diff_ms(end: int | None, start: int | None) -> float | None:
    """(end - start) in ms, or None when either stamp is missing."""
    if end is None or start is None:
        return None
    return ns_to_ms(end - start)


def itl_ms_from_chunks(chunk_ns: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Inter-token latencies (ms) pooled over requests, from a list column of chunk times,
    without turning the lists into Python objects (a long run has millions of chunks)."""
    if isinstance(chunk_ns, pa.ChunkedArray):
        chunk_ns = chunk_ns.combine_chunks()
    if len(chunk_ns) == 0:
        return np.empty(0, dtype=np.float64)
    filled = pc.fill_null(chunk_ns, pa.scalar([], type=chunk_ns.type))
    values = pc.list_flatten(filled).to_numpy(zero_copy_only=False)
    if values.size < 2:
        return np.empty(0, dtype=np.float64)
    lengths = pc.list_value_length(filled).to_numpy(zero_copy_only=False).astype(np.int64)
    gaps = np.subtract(values[1:], values[:-1], dtype=np.float64)
    gaps /= NS_PER_MS
    # A gap from one request's last chunk to the next request's first is not an ITL.
    ends = np.cumsum(lengths)[:-1] - 1
    itl: np.ndarray = np.delete(gaps, ends[(ends >= 0) & (ends < gaps.size)])
    return itl


def summarize_requests(
    df: pd.DataFrame,
    slo: Slo | None = None,
    itl_ms: np.ndarray | None = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """Run-level metrics from a request table (REQUEST_COLUMNS), defined as `vllm bench serve`.
    `itl_ms`, where given, are the pooled inter-token latencies of the table's completed
    measured requests (see `itl_ms_from_chunks`); the table then needs no chunk columns.
    The latency figures report `percentiles` besides p50/p90/p99, and implausible ones are
    flagged (`timing_flags`)."""
    requests_warmup = len(df) - len(m := _measured(df))
    ok = _ok_flags(m)
    sent = _ints(m, "sent_ns")
    scheduled = _ints(m, "scheduled_ns")
    first = _ints(m, "first_token_ns")
    last = _ints(m, "last_token_ns")
    done = _ints(m, "done_ns")
    prompt_tok = _ints(m, "prompt_tokens")
    output_tok = _ints(m, "output_tokens")
    status = _ints(m, "http_status")
    chunks = _int_lists(m, "chunk_ns") if itl_ms is None else []
    errors_col = m["error"].tolist() if "error" in m.columns else [None] * len(m)

    samples: dict[str, list[float]] = {name: [] for name in LATENCY_STATS}
    ttft, tpot, itl, e2el = (samples[n] for n in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"))
    e2el_sched, send_lag = samples["e2el_from_scheduled_ms"], samples["send_lag_ms"]
    errors: Counter[str] = Counter()
    input_total = output_total = 0
    input_seen = output_seen = 0
    missing_usage = 0
    good = 0
    intervals: list[tuple[int, int]] = []

    for i in range(len(m)):
        lag = _diff_ms(sent[i], scheduled[i])
        if lag is not None:
            send_lag.append(lag)
        start, end = sent[i], done[i] if done[i] is not None else last[i]
        if start is not None and end is not None:
            intervals.append((start, end))
        if not ok[i]:
            errors[_error_label(errors_col[i], status[i], done[i])] += 1
            continue
        n_in, n_out = prompt_tok[i], output_tok[i]
        if n_in is not None:
            input_total += n_in
            input_seen += 1
        if n_out is not None:
            output_total += n_out
            output_seen += 1
        if n_in is None or n_out is None:
            missing_usage += 1
        r_ttft = _diff_ms(first[i], sent[i])
        r_e2el = _diff_ms(last[i], sent[i])
        r_tpot: float | None = None
        if r_ttft is not None:
            ttft.append(r_ttft)
        if r_e2el is not None:
            e2el.append(r_e2el)
        if r_ttft is not None and r_e2el is not None and n_out is not None:
            if n_out > 1:
                r_tpot = (r_e2el - r_ttft) / (n_out - 1)
                tpot.append(r_tpot)
            else:
                r_tpot = 0.0  # as vLLM bench: TPOT counts as 0 for goodput when output <= 1
        sched_e2el = _diff_ms(last[i], scheduled[i])
        if sched_e2el is not None:
            e2el_sched.append(sched_e2el)
        if itl_ms is None:
            c = chunks[i]
            itl.extend(ns_to_ms(b - a) for a, b in itertools.pairwise(c))
        if slo is not None and _meets(slo, r_ttft, r_tpot, r_e2el):
            good += 1

    completed = sum(ok)
    failed = len(m) - completed
    sent_stamps = [s for s in sent if s is not None]
    done_ok = [d for d, k in zip(done, ok, strict=True) if k and d is not None]
    duration_s: float | None = None
    if sent_stamps and done_ok and max(done_ok) > min(sent_stamps):
        duration_s = ns_to_s(max(done_ok) - min(sent_stamps))

    input_tokens = input_total if input_seen or not completed else None
    output_tokens = output_total if output_seen or not completed else None

    def per_s(amount: float | None) -> float | None:
        """amount / duration_s, None when either is unknown."""
        return None if amount is None or duration_s is None else amount / duration_s

    total_tokens = (
        None if input_tokens is None or output_tokens is None else input_tokens + output_tokens
    )
    summary: dict[str, Any] = {
        "requests_total": len(m),
        "requests_warmup_excluded": requests_warmup,
        "requests_completed": completed,
        "requests_failed": failed,
        "requests_missing_usage": missing_usage,
        "sessions": int(m["session_id"].nunique()) if "session_id" in m.columns else None,
        "duration_s": duration_s,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "request_throughput_rps": per_s(completed),
        "output_throughput_tok_s": per_s(output_tokens),
        "total_throughput_tok_s": per_s(total_tokens),
        **{
            name: percentile_stats(
                itl_ms if name == "itl_ms" and itl_ms is not None else values, percentiles
            )
            for name, values in samples.items()
        },
        "max_concurrency_observed": _max_concurrency(intervals) if intervals else None,
        "errors": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_ERROR_KINDS]),
        "percentiles": [float(p) for p in percentiles],
    }
    summary["timing_flags"] = timing_flags(summary, percentiles)
    if slo is not None:
        summary["slo"] = slo.model_dump(exclude_none=True)
        summary["requests_meeting_slo"] = good
        summary["goodput_rps"] = per_s(good)
        summary["slo_attainment"] = good / len(m) if len(m) else None
    return summary


def _meets(slo: Slo, ttft_ms: float | None, tpot_ms: float | None, e2el_ms: float | None) -> bool:
    """True when every SLO that is set is met (<=); a figure that is unknown does not meet it."""
    checks = ((slo.ttft_ms, ttft_ms), (slo.tpot_ms, tpot_ms), (slo.e2el_ms, e2el_ms))
    return all(limit is None or (value is not None and value <= limit) for limit, value in checks)


SESSION_COLUMNS: tuple[str, ...] = (
    "session_id",
    "requests",
    "requests_failed",
    "input_tokens",
    "output_tokens",
    "session_latency_s",
)


def per_session_summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per session (non-warmup): request counts, tokens of completed requests, wall time.

    `session_latency_s` is the session's first sent_ns to its last done_ns (any request).
    """
    m = _measured(df)
    ok = _ok_flags(m)
    sessions = [str(s) for s in m["session_id"].tolist()] if "session_id" in m.columns else []
    sent = _ints(m, "sent_ns")
    done = _ints(m, "done_ns")
    prompt_tok = _ints(m, "prompt_tokens")
    output_tok = _ints(m, "output_tokens")

    acc: dict[str, dict[str, Any]] = {}
    for i, sid in enumerate(sessions):
        a = acc.setdefault(
            sid,
            {"requests": 0, "failed": 0, "in": [], "out": [], "sent": [], "done": []},
        )
        a["requests"] += 1
        if sent[i] is not None:
            a["sent"].append(sent[i])
        if done[i] is not None:
            a["done"].append(done[i])
        if not ok[i]:
            a["failed"] += 1
            continue
        if prompt_tok[i] is not None:
            a["in"].append(prompt_tok[i])
        if output_tok[i] is not None:
            a["out"].append(output_tok[i])

    rows: list[dict[str, Any]] = []
    for sid in sorted(acc):
        a = acc[sid]
        completed = a["requests"] - a["failed"]
        latency_s = ns_to_s(max(a["done"]) - min(a["sent"])) if a["sent"] and a["done"] else None
        rows.append(
            {
                "session_id": sid,
                "requests": a["requests"],
                "requests_failed": a["failed"],
                "input_tokens": sum(a["in"]) if a["in"] or not completed else None,
                "output_tokens": sum(a["out"]) if a["out"] or not completed else None,
                "session_latency_s": latency_s,
            }
        )
    out = pd.DataFrame(rows, columns=list(SESSION_COLUMNS))
    return out.astype(
        {
            "session_id": "string",
            "requests": "Int64",
            "requests_failed": "Int64",
            "input_tokens": "Int64",
            "output_tokens": "Int64",
            "session_latency_s": "Float64",
        }
    )
