"""Summaries for tests, complete and valid against harness.summary: a run's figures with
round numbers, blocks given by keyword override the defaults (nested blocks are merged, so
a test names only the figures it is about). And the check, run after the last test, that
every summary.json the tests wrote fits the schema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.capacity import point_figures
from harness.errors import ResultsError
from harness.records import RequestRecord
from harness.results import SUMMARY_FILE
from harness.summary import SCHEMA_VERSION, Summary, read_summary_file

MS = 1_000_000

INVALID_ON_PURPOSE = "invalid-on-purpose"
"""A folder whose name holds this keeps summaries a test broke on purpose: not checked."""


def stats(
    p50: float | None = None,
    p90: float | None = None,
    p99: float | None = None,
    *,
    count: int | None = None,
    mean: float | None = None,
    std: float | None = None,
) -> dict[str, Any]:
    """A stats block; count defaults to 10 where a figure is given, else 0."""
    given = any(v is not None for v in (p50, p90, p99, mean, std))
    return {
        "count": count if count is not None else (10 if given else 0),
        "mean": mean if mean is not None else p50,
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "std": std if std is not None else (1.0 if given else None),
    }


def run_block(**overrides: Any) -> dict[str, Any]:
    """summary.run of a finished run that sent every planned request."""
    return {
        "requests_planned": 10,
        "requests_sent": 10,
        "requests_not_sent": 0,
        "requests_clipped": 0,
        "requests_skipped_overlength": 0,
        "prompt_token_mismatches": 0,
        "output_token_mismatches": 0,
        "sessions_started": 10,
        "sessions_failed": 0,
        "session_errors": [],
        "worker_errors": [],
        "interrupted": False,
        "aborted_reason": None,
        **overrides,
    }


def energy_block(**overrides: Any) -> dict[str, Any]:
    """summary.energy of a run on a host without NVML or RAPL (every figure null)."""
    return {
        "window_ns": [0, 1_000_000_000],
        "gpu_energy_j": None,
        "gpu_source": "unavailable",
        "gpu_energy_per_device_j": {},
        "gpu_counter_resets": {},
        "idle_power_w": None,
        "avg_power_w": None,
        "peak_power_w": None,
        "gpu_dynamic_energy_j": None,
        "j_per_output_token": None,
        "j_per_request": None,
        "j_per_session": None,
        "gpu_energy_while_tools_j": None,
        "tool_time_s": 0.0,
        "cpu_energy_j": None,
        "cpu_source": "unavailable",
        **overrides,
    }


def steady_block(**overrides: Any) -> dict[str, Any]:
    """summary.energy.steady of a run whose server held 10 requests for 20 s from 5 s, its
    tokens counted by the server, on a host without GPU power (power figures null)."""
    return {
        "frac": 0.85,
        "min_s": 20.0,
        "window_ns": [5_000_000_000, 25_000_000_000],
        "duration_s": 20.0,
        "reason": None,
        "max_running_requests": 10.0,
        "threshold_running_requests": 8.5,
        "mean_running_requests": 10.0,
        "gpu_energy_j": None,
        "gpu_source": "unavailable",
        "avg_power_w": None,
        "prompt_tokens": 20_000,
        "output_tokens": 2_000,
        "tokens_source": "server-counter",
        "output_throughput_tok_s": 100.0,
        "total_throughput_tok_s": 1100.0,
        "j_per_output_token": None,
        **overrides,
    }


def no_steady_block(
    reason: str = "the measured window is 5.0 s, shorter than the 20 s a steady window needs",
) -> dict[str, Any]:
    """summary.energy.steady of a run without a steady window: every figure null."""
    figures = dict.fromkeys(steady_block(), None)
    return {
        **figures,
        "frac": 0.85,
        "min_s": 20.0,
        "reason": reason,
        "gpu_source": "unavailable",
        "tokens_source": "unavailable",
    }


def tool_kind(**overrides: Any) -> dict[str, Any]:
    """One entry of latency_split.per_tool_kind."""
    return {
        "calls": 1,
        "failures": 0,
        "calls_wall_s": 1.0,
        "calls_wait_s": 0.0,
        "calls_work_s": 1.0,
        "tool_s": 1.0,
        "queue_s": 0.0,
        "tool_cpu_s": None,
        "share": 0.1,
        "call_s": stats(1.0, 1.0, 1.0, count=1),
        "limits_clamped": None,
        "sandbox": None,
        **overrides,
    }


_PARTS = ("llm_s", "tool_s", "tool_queue_s", "slot_queue_s", "orchestration_s")


def split_block(**overrides: Any) -> dict[str, Any]:
    """summary.latency_split of one session: 4 s LLM, 5 s tools, 1 s orchestration; the
    totals, shares and per-workload row follow the given parts."""
    parts = {"llm_s": 4.0, "tool_s": 5.0, "tool_queue_s": 0.0, "slot_queue_s": 0.0}
    parts["orchestration_s"] = 1.0
    parts.update({k: float(v) for k, v in overrides.items() if k in _PARTS})
    total = sum(parts.values())

    def share(x: float) -> float | None:
        return x / total if total else None

    cpu = share(parts["tool_s"] + parts["orchestration_s"])
    gpu = share(parts["llm_s"])
    queue = share(parts["tool_queue_s"] + parts["slot_queue_s"])
    block: dict[str, Any] = {
        **parts,
        "tool_cpu_s": None,
        "think_s": 0.0,
        "total_s": total,
        "cpu_share": cpu,
        "gpu_share": gpu,
        "queue_share": queue,
        "shares": {k.removesuffix("_s"): share(v) for k, v in parts.items()},
        "queue_note": None,
        "sum_check": {"session_wall_less_think_s": total, "relative_error": 0.0},
        "sessions": 1,
        "steps": 2,
        "per_tool_kind": {},
    }
    block.update({k: v for k, v in overrides.items() if k not in _PARTS})
    row_keys = (*_PARTS, "tool_cpu_s", "total_s", "cpu_share", "gpu_share", "queue_share")
    block.setdefault("per_workload", {"w": {k: block[k] for k in row_keys}})
    return block


def session_figures(**overrides: Any) -> dict[str, Any]:
    """summary.session_figures of ten completed sessions."""
    return {
        "sessions": 10,
        "sessions_completed": 10,
        "session_latency_s": stats(10.0, 12.0, 14.0),
        "steps_per_session": stats(3.0, 4.0, 5.0),
        "tokens_per_session": stats(1000.0, 1200.0, 1500.0),
        "sessions_per_hour": 360.0,
        **overrides,
    }


def telemetry_block(**overrides: Any) -> dict[str, Any]:
    """summary.telemetry of a host without NVML or RAPL."""
    return {
        "rate_hz": 10.0,
        "gpu": {
            "available": False,
            "reason": "NVML did not initialise",
            "devices": 0,
            "read_errors": {},
            "not_supported": [],
        },
        "rapl": {"available": False, "reason": "no powercap", "zones": [], "problems": []},
        "server_pid": None,
        "problems": [],
        "sampler_overhead": {"cpu_s": 0.01, "wall_s": 1.0, "samples": 10.0},
        "sampler_cpu_pct_of_one_core": 1.0,
        "idle_baseline_s": 0.0,
        **overrides,
    }


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides`; a mapping given for a block that is a mapping is merged."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def summary_dict(**overrides: Any) -> dict[str, Any]:
    """summary.json's content of a small chat run (ten requests, no SLO, no energy block),
    with `overrides`; a block given as a mapping is merged into the default one (pass
    `energy=energy_block(...)` or `latency_split=split_block(...)` for a block a plain run
    has not). A key set to None is written as null."""
    base: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "requests_total": 10,
        "requests_warmup_excluded": 0,
        "requests_completed": 10,
        "requests_failed": 0,
        "requests_missing_usage": 0,
        "sessions": 10,
        "duration_s": 5.0,
        "input_tokens": 1000,
        "output_tokens": 500,
        "request_throughput_rps": 2.0,
        "output_throughput_tok_s": 100.0,
        "total_throughput_tok_s": 300.0,
        "ttft_ms": stats(20.0, 30.0, 40.0),
        "tpot_ms": stats(5.0, 6.0, 8.0),
        "itl_ms": stats(5.0, 6.0, 9.0),
        "e2el_ms": stats(200.0, 300.0, 400.0),
        "e2el_from_scheduled_ms": stats(201.0, 301.0, 401.0),
        "send_lag_ms": stats(1.0, 1.0, 1.0),
        "max_concurrency_observed": 4,
        "errors": {},
        "run": run_block(),
        "server_metrics": {"available": False, "reason": "not scraped"},
    }
    return _merge(base, overrides)


def summary(**overrides: Any) -> Summary:
    """`summary_dict(**overrides)` as the model."""
    return Summary.model_validate(summary_dict(**overrides))


def misfit_summaries(root: Path) -> list[str]:
    """Why each summary.json under `root` does not fit the schema (read as `harness schema
    summary --check` reads it), leaving out those under an INVALID_ON_PURPOSE folder."""
    errors: list[str] = []
    for path in sorted(root.rglob(SUMMARY_FILE)):
        if any(INVALID_ON_PURPOSE in part for part in path.relative_to(root).parts):
            continue
        try:
            read_summary_file(path)
        except ResultsError as err:
            errors.append(str(err))
    return errors


def request_record(i: int, ok: bool = True, sessions: int | None = None) -> RequestRecord:
    """Request `i` of a small run: 10 prompt and 3 output tokens over 4 ms, 10 ms apart; one
    session each, or steps of `sessions` sessions dealt round robin; a failure is an HTTP 500."""
    base = 10 * MS * i
    return RequestRecord(
        request_id=f"r{i}",
        session_id=f"s{i if sessions is None else i % sessions}",
        step_index=0 if sessions is None else i // sessions,
        api="completions",
        prompt_tokens_expected=10,
        output_tokens_expected=3,
        scheduled_ns=base,
        sent_ns=base,
        first_token_ns=base + 2 * MS,
        last_token_ns=base + 4 * MS,
        done_ns=base + 4 * MS,
        chunk_ns=[base + 2 * MS, base + 3 * MS, base + 4 * MS],
        chunk_tokens=[1, 1, 1],
        prompt_tokens=10,
        output_tokens=3,
        http_status=200 if ok else 500,
        error=None if ok else "http 500",
    )


def sweep_point(
    load: float, attainment: float, total_tok_s: float, target: float = 0.9
) -> dict[str, Any]:
    """One load point of a capacity.json (rate `load`, its run under points/) whose TTFT p99
    and E2EL p50 grow with the load."""
    run = summary(
        requests_completed=20,
        slo_attainment=attainment,
        total_throughput_tok_s=total_tok_s,
        output_throughput_tok_s=total_tok_s / 10,
        ttft_ms=stats(20.0, 30.0, 40.0 * load),
        tpot_ms=stats(5.0, 6.0, 8.0),
        e2el_ms=stats(100.0 * load, 150.0, 300.0),
    )
    return point_figures(load, f"points/rate-{load:g}", run, target)
