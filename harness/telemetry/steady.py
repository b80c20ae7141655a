"""The run's steady state (pure functions over telemetry rows): the span where the server's
batch stays near its maximum, as ML.ENERGY counts energy, and J per output token, power and
throughput over it. A whole run's energy includes ramp-up and drain; this figure does not.

The window is the LONGEST contiguous span (the first of equals) of the server's /metrics
scrapes whose running requests (`vllm:num_requests_running`) are all at least `frac` × the
run's maximum, lasting at least `min_s`. A span breaks where two scrapes lie further apart
than `max_gap_s` (the server was unseen in between). The longest, not the first, because a
longer window reads more of the energy counter and spans more scheduling cycles."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from harness.telemetry.energy import GpuRows, Window, gpu_energy_j

NS = 1_000_000_000

STEADY_FRAC = 0.85
"""Running requests at least this share of the run's maximum count as steady (ML.ENERGY:
the batch near the server's maximum)."""
STEADY_MIN_S = 20.0
"""The shortest steady window (ML.ENERGY: at least 20 s)."""
MAX_GAP_PERIODS = 3
"""A span breaks where scrapes lie more than this many scrape periods apart."""

CLIENT_COLUMNS: tuple[str, ...] = ("chunk_ns", "chunk_tokens", "first_token_ns", "prompt_tokens")
"""The request table's columns client_tokens reads."""


@dataclass(frozen=True)
class SteadyRule:
    """What counts as steady: running requests ≥ `frac` × the run's maximum for ≥ `min_s`."""

    frac: float = STEADY_FRAC
    min_s: float = STEADY_MIN_S

    def __post_init__(self) -> None:
        if not 0 < self.frac <= 1:
            raise ValueError(f"steady frac must be in (0, 1], got {self.frac}")
        if not self.min_s > 0:
            raise ValueError(f"steady min_s must be positive, got {self.min_s}")


@dataclass(frozen=True)
class SteadySelection:
    """The chosen window, or None with the reason; the running-request figures behind it."""

    window: Window | None
    reason: str | None
    max_running: float | None = None
    threshold: float | None = None
    mean_running: float | None = None


def _running_points(rows: Iterable[Mapping[str, Any]], within: Window) -> list[tuple[int, float]]:
    """(t_ns, running requests) of the server rows inside `within` that carry the gauge."""
    lo, hi = within
    points = [
        (int(r["t_ns"]), float(r["requests_running"]))
        for r in rows
        if r.get("source") == "server"
        and r.get("requests_running") is not None
        and lo <= int(r["t_ns"]) <= hi
    ]
    points.sort()
    return points


def _spans(
    points: Sequence[tuple[int, float]], threshold: float, max_gap_ns: int
) -> list[tuple[int, int]]:
    """Index ranges [first, last] of contiguous scrapes at or above the threshold."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, (t, running) in enumerate(points):
        steady = running >= threshold
        joined = start is not None and t - points[i - 1][0] <= max_gap_ns
        if steady and joined:
            continue
        if start is not None:
            spans.append((start, i - 1))
        start = i if steady else None
    if start is not None:
        spans.append((start, len(points) - 1))
    return spans


def select_steady(
    rows: Iterable[Mapping[str, Any]],
    within: Window,
    rule: SteadyRule = SteadyRule(),
    max_gap_s: float = MAX_GAP_PERIODS * 1.0,
) -> SteadySelection:
    """The steady window inside `within` (the measured window) from the server rows, or None
    with why: the run is shorter than `rule.min_s`, the server gave no running-request counts,
    none was running, or no span at the threshold lasted `rule.min_s`."""
    lo, hi = within
    if (hi - lo) / NS < rule.min_s:
        return SteadySelection(
            None,
            f"the measured window is {(hi - lo) / NS:.1f} s, shorter than the "
            f"{rule.min_s:g} s a steady window needs",
        )
    points = _running_points(rows, within)
    if not points:
        return SteadySelection(
            None,
            "the server's /metrics gave no running-request count "
            "(vllm:num_requests_running) in the measured window",
        )
    peak = max(r for _, r in points)
    if peak <= 0:
        return SteadySelection(
            None, "the server's /metrics showed no request running in the measured window", 0.0
        )
    threshold = rule.frac * peak
    spans = _spans(points, threshold, round(max_gap_s * NS))
    first, last = max(spans, key=lambda s: points[s[1]][0] - points[s[0]][0])
    duration_s = (points[last][0] - points[first][0]) / NS
    if points[last][0] - points[first][0] < round(rule.min_s * NS):
        return SteadySelection(
            None,
            f"running requests stayed at or above {threshold:g} ({rule.frac:g} × the run's "
            f"maximum of {peak:g}) for at most {duration_s:.1f} s, under the {rule.min_s:g} s "
            "a steady window needs",
            peak,
            threshold,
        )
    inside = [r for _, r in points[first : last + 1]]
    return SteadySelection(
        (points[first][0], points[last][0]),
        None,
        peak,
        threshold,
        sum(inside) / len(inside),
    )


def server_tokens(rows: Iterable[Mapping[str, Any]], window: Window) -> tuple[int, int] | None:
    """(prompt, output) tokens the server counted over `window`, from the deltas of
    `vllm:prompt_tokens_total` and `vllm:generation_tokens_total` between the scrapes at the
    window's ends; None where either end lacks a counter or one went backwards (a restart)."""
    lo, hi = window
    series = sorted(
        (int(r["t_ns"]), r.get("prompt_tokens_total"), r.get("generation_tokens_total"))
        for r in rows
        if r.get("source") == "server" and lo <= int(r["t_ns"]) <= hi
    )
    if len(series) < 2 or series[0][0] != lo or series[-1][0] != hi:
        return None
    deltas: list[int] = []
    for column in (1, 2):
        values = [row[column] for row in series]
        if values[0] is None or values[-1] is None:
            return None
        known = [float(v) for v in values if v is not None]
        if any(b < a for a, b in itertools.pairwise(known)):
            return None
        deltas.append(round(known[-1] - known[0]))
    return deltas[0], deltas[1]


def client_tokens(requests: pa.Table, window: Window) -> tuple[int, int]:
    """(prompt, output) tokens of every request sent (warmup and failed too, as the server
    worked on them) in (start, end] of `window`, as a counter's delta counts them, from the
    client's records: output tokens by the arrival of the stream chunk that carried them,
    prompt tokens by the first token's (when the server's prefill was done). Reads
    CLIENT_COLUMNS."""
    lo, hi = window
    times = pc.list_flatten(requests.column("chunk_ns"))
    counts = pc.list_flatten(requests.column("chunk_tokens"))
    inside = pc.and_(pc.greater(times, lo), pc.less_equal(times, hi))
    output = pc.sum(pc.filter(counts, inside)).as_py() or 0
    first = requests.column("first_token_ns")
    started = pc.and_(pc.greater(first, lo), pc.less_equal(first, hi))
    prompt = pc.sum(pc.filter(requests.column("prompt_tokens"), started)).as_py() or 0
    return int(prompt), int(output)


def _per_s(count: int | None, seconds: float) -> float | None:
    return count / seconds if count is not None and seconds > 0 else None


def summarize_steady(
    rows: Sequence[Mapping[str, Any]],
    within: Window,
    rule: SteadyRule = SteadyRule(),
    client_records: Callable[[], pa.Table] | None = None,
    max_gap_s: float = MAX_GAP_PERIODS * 1.0,
    gpus: GpuRows = "gpu",
) -> dict[str, Any]:
    """summary.energy.steady: the steady window and GPU energy, average power, tokens and
    throughput over it; tokens from the server's counters where both ends have them, else
    from the client's records (`client_records` gives the request columns client_tokens
    reads; called only then), and `tokens_source` says which. Every figure is None where
    there is no steady window, `reason` saying why. `gpus` names the rows that are the
    server's GPUs, as for the whole run's energy."""
    chosen = select_steady(rows, within, rule, max_gap_s)
    block: dict[str, Any] = {
        "frac": rule.frac,
        "min_s": rule.min_s,
        "window_ns": None,
        "duration_s": None,
        "reason": chosen.reason,
        "max_running_requests": chosen.max_running,
        "threshold_running_requests": chosen.threshold,
        "mean_running_requests": chosen.mean_running,
        "gpu_energy_j": None,
        "gpu_source": "unavailable",
        "avg_power_w": None,
        "prompt_tokens": None,
        "output_tokens": None,
        "tokens_source": "unavailable",
        "output_throughput_tok_s": None,
        "total_throughput_tok_s": None,
        "j_per_output_token": None,
    }
    window = chosen.window
    if window is None:
        return block
    duration_s = (window[1] - window[0]) / NS
    energy, source, _ = gpu_energy_j(rows, window, gpus)
    tokens = server_tokens(rows, window)
    tokens_source = "server-counter"
    if tokens is None and client_records is not None:
        tokens, tokens_source = client_tokens(client_records(), window), "client-chunks"
    prompt, output = tokens if tokens is not None else (None, None)
    block.update(
        {
            "window_ns": list(window),
            "duration_s": duration_s,
            "gpu_energy_j": energy,
            "gpu_source": source,
            "avg_power_w": energy / duration_s if energy is not None else None,
            "prompt_tokens": prompt,
            "output_tokens": output,
            "tokens_source": tokens_source if tokens is not None else "unavailable",
            "output_throughput_tok_s": _per_s(output, duration_s),
            "total_throughput_tok_s": (
                _per_s(prompt + output, duration_s)
                if prompt is not None and output is not None
                else None
            ),
            "j_per_output_token": energy / output if energy is not None and output else None,
        }
    )
    return block
