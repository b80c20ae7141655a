"""The steady window against hand-made /metrics timelines, and the energy, tokens and
throughput over it with exact joules under the fake NVML clock."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from fake_nvml import FakeClock, FakeGpu, FakeNvml

from harness.records import RequestRecord, record_to_row
from harness.results import table_schema
from harness.telemetry.gpu import GpuReader
from harness.telemetry.sampler import Sampler
from harness.telemetry.steady import (
    CLIENT_COLUMNS,
    SteadyRule,
    client_tokens,
    select_steady,
    server_tokens,
    summarize_steady,
)

S = 1_000_000_000


def timeline(
    running: list[float | None],
    period_s: float = 1.0,
    t0_s: float = 0.0,
    gen_per_s: float | None = None,
    prompt_per_s: float | None = None,
) -> list[dict[str, Any]]:
    """Server rows one scrape per `period_s` from `t0_s`, as the sampler writes them: each
    scrape's running requests (None: the gauge was missing) and counters rising at a constant
    rate (None: not exported)."""
    rows = []
    for k, value in enumerate(running):
        t_s = t0_s + k * period_s
        rows.append(
            {
                "t_ns": round(t_s * S),
                "source": "server",
                "device": None,
                "requests_running": value,
                "requests_waiting": 0.0,
                "generation_tokens_total": None if gen_per_s is None else 1000 + gen_per_s * t_s,
                "prompt_tokens_total": None if prompt_per_s is None else 50 + prompt_per_s * t_s,
            }
        )
    return rows


def ramp(hold: list[float], up: int = 5, down: int = 5) -> list[float | None]:
    """A run that ramps up over `up` scrapes to the held batch, then drains over `down`."""
    top = max(hold)
    return (
        [top * k / up for k in range(up)] + list(hold) + [top * k / down for k in range(down)][::-1]
    )


def whole(rows: list[dict[str, Any]]) -> tuple[int, int]:
    return rows[0]["t_ns"], rows[-1]["t_ns"]


# --- select_steady ---------------------------------------------------------------------------


def test_the_held_batch_between_ramp_up_and_drain_is_the_window() -> None:
    rows = timeline(ramp([10.0] * 26))  # scrapes 5..30 at 10 running
    chosen = select_steady(rows, whole(rows))
    assert chosen.window == (5 * S, 30 * S) and chosen.reason is None
    assert chosen.max_running == 10.0 and chosen.threshold == pytest.approx(8.5)
    assert chosen.mean_running == 10.0


def test_a_window_of_exactly_the_minimum_counts_and_one_scrape_less_does_not() -> None:
    exact = timeline(ramp([8.0] * 21))  # 20 s from the first held scrape to the last
    assert select_steady(exact, whole(exact)).window == (5 * S, 25 * S)
    short = timeline(ramp([8.0] * 20))  # 19 s
    chosen = select_steady(short, whole(short))
    assert chosen.window is None
    assert chosen.reason == (
        "running requests stayed at or above 6.8 (0.85 × the run's maximum of 8) for at most "
        "19.0 s, under the 20 s a steady window needs"
    )


def test_running_at_exactly_the_threshold_is_steady_and_just_below_is_not() -> None:
    # max 20, threshold 0.85 × 20 = 17: a dip to exactly 17 keeps the span whole
    rows = timeline(ramp([20.0] * 10 + [17.0] + [20.0] * 12))
    assert select_steady(rows, whole(rows)).window == (5 * S, 27 * S)
    dip = timeline(ramp([20.0] * 10 + [16.0] + [20.0] * 12))
    chosen = select_steady(dip, whole(dip))
    assert chosen.window is None  # two spans of 9 s and 11 s, neither 20 s
    assert "for at most 11.0 s" in str(chosen.reason)
    # another rule's threshold, 0.3 × 10, met exactly
    low = timeline(ramp([10.0] * 10 + [3.0] + [10.0] * 12, up=1, down=1))
    assert select_steady(low, whole(low), SteadyRule(frac=0.3)).window == (1 * S, 23 * S)


def test_the_maximum_reached_once_sets_the_threshold() -> None:
    # a single spike to 40 puts the threshold at 34: the 30 running held for 25 s are not steady
    rows = timeline(ramp([30.0] * 12 + [40.0] + [30.0] * 12))
    chosen = select_steady(rows, whole(rows))
    assert chosen.window is None and chosen.max_running == 40.0
    assert chosen.reason is not None and "for at most 0.0 s" in chosen.reason
    # the same spike inside a held batch near it: the window spans it
    near = timeline(ramp([36.0] * 12 + [40.0] + [36.0] * 12))
    assert select_steady(near, whole(near)).window == (5 * S, 29 * S)


def test_the_longest_span_wins_over_the_first() -> None:
    rows = timeline(ramp([10.0] * 21 + [2.0] * 3 + [10.0] * 31))
    assert select_steady(rows, whole(rows)).window == (29 * S, 59 * S)
    # of two equally long spans the first is taken
    even = timeline(ramp([10.0] * 21 + [2.0] * 3 + [10.0] * 21))
    assert select_steady(even, whole(even)).window == (5 * S, 25 * S)


def test_a_gap_in_the_scrapes_breaks_the_span() -> None:
    held = timeline(ramp([10.0] * 15))  # 0..24 s, held 5..19 s
    after = timeline([10.0] * 15 + [0.0], t0_s=30.0)  # held again 30..44 s after 10 s unseen
    rows = held[:20] + after
    chosen = select_steady(rows, (0, 45 * S))
    assert chosen.window is None and "for at most 14.0 s" in str(chosen.reason)
    # a lost scrape or two (up to max_gap_s apart) does not break it
    rows = timeline(ramp([10.0] * 30))
    del rows[12:14]  # 12 and 13 s unseen: 11 → 14 s is 3 s apart
    assert select_steady(rows, whole(rows)).window == (5 * S, 34 * S)
    assert select_steady(rows, whole(rows), max_gap_s=2.0).window == (14 * S, 34 * S)


def test_scrapes_without_the_gauge_are_not_read_as_zero() -> None:
    values = ramp([10.0] * 25)
    values[10] = None  # the gauge missing from one scrape: 9 → 11 s, within the gap
    rows = timeline(values)
    assert select_steady(rows, whole(rows)).window == (5 * S, 29 * S)


def test_no_server_metrics_no_running_request_and_a_short_run_give_reasons() -> None:
    gpu_only = [{"t_ns": k * S, "source": "gpu", "device": 0, "power_w": 100.0} for k in range(40)]
    chosen = select_steady(gpu_only, (0, 39 * S))
    assert chosen.window is None
    assert chosen.reason == (
        "the server's /metrics gave no running-request count (vllm:num_requests_running) in "
        "the measured window"
    )
    missing = timeline([None] * 40)
    assert select_steady(missing, whole(missing)).reason == chosen.reason
    idle = timeline([0.0] * 40)
    assert select_steady(idle, whole(idle)).reason == (
        "the server's /metrics showed no request running in the measured window"
    )
    short = timeline([10.0] * 19)
    assert select_steady(short, (0, int(19.5 * S))).reason == (
        "the measured window is 19.5 s, shorter than the 20 s a steady window needs"
    )


def test_only_scrapes_inside_the_measured_window_count() -> None:
    # warm-up load before the measured window ran more requests: its peak does not count
    rows = timeline([50.0] * 10 + [10.0] * 30)
    assert select_steady(rows, (10 * S, 39 * S)).window == (10 * S, 39 * S)


def test_the_rule_changes_the_threshold_and_the_length() -> None:
    rows = timeline(ramp([10.0] * 12))  # held 11 s; ramp-up 6, 8 then drain 8, 6
    assert select_steady(rows, whole(rows)).window is None
    loose = SteadyRule(frac=0.6, min_s=10.0)
    assert select_steady(rows, whole(rows), loose).window == (3 * S, 18 * S)
    with pytest.raises(ValueError, match="frac"):
        SteadyRule(frac=0.0)
    with pytest.raises(ValueError, match="min_s"):
        SteadyRule(min_s=0.0)


# --- tokens over the window --------------------------------------------------------------------


def test_server_tokens_are_the_counter_deltas_between_the_window_ends() -> None:
    rows = timeline([10.0] * 31, gen_per_s=250.0, prompt_per_s=1000.0)
    assert server_tokens(rows, (5 * S, 25 * S)) == (20_000, 5_000)
    # a counter that went backwards (a restart) or is not exported gives none
    rows[10]["generation_tokens_total"] = 0.0
    assert server_tokens(rows, (5 * S, 25 * S)) is None
    assert server_tokens(timeline([10.0] * 31, gen_per_s=250.0), (5 * S, 25 * S)) is None


def _request(i: int, chunks: list[tuple[float, int]], prompt: int | None) -> RequestRecord:
    return RequestRecord(
        request_id=f"r{i}",
        session_id=f"s{i}",
        step_index=0,
        api="completions",
        prompt_tokens_expected=prompt or 0,
        output_tokens_expected=len(chunks),
        scheduled_ns=0,
        sent_ns=0,
        first_token_ns=round(chunks[0][0] * S) if chunks else None,
        chunk_ns=[round(t * S) for t, _ in chunks],
        chunk_tokens=[n for _, n in chunks],
        prompt_tokens=prompt,
    )


def _table(records: list[RequestRecord]) -> pa.Table:
    schema = table_schema("requests")
    table = pa.Table.from_pylist([record_to_row(r) for r in records], schema=schema)
    return table.select(list(CLIENT_COLUMNS))


def test_client_tokens_count_the_chunks_that_arrived_in_the_window() -> None:
    requests = _table(
        [
            # the window is (5 s, 25 s]: a chunk at its start is before it, as for a counter
            _request(0, [(4.0, 1), (5.0, 2), (6.0, 1)], 100),
            _request(1, [(10.0, 3), (24.0, 1), (25.0, 1), (26.0, 5)], 200),
            _request(2, [], None),  # failed before any token
            _request(3, [(25.5, 1)], 50),
            _request(4, [(5.0, 1)], 70),  # its first token at the start: its prompt is before
        ]
    )
    assert client_tokens(requests, (5 * S, 25 * S)) == (200, 1 + 3 + 1 + 1)


# --- summarize_steady -----------------------------------------------------------------------


def sampled(gpu: FakeGpu, server: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    """GPU rows from the real sampler at 10 Hz under the fake clock, with the server rows."""
    clock = FakeClock()
    sampler = Sampler(GpuReader(FakeNvml([gpu], clock)), None, None, clock.now_ns, rate_hz=10.0)
    for k in range(round(seconds * 10) + 1):
        clock.t_ns = k * S // 10
        sampler.sample_once()
    return sorted(sampler.rows() + server, key=lambda r: r["t_ns"])


def test_steady_energy_power_and_tokens_exactly() -> None:
    # 100 W idle ramp, 400 W from 5 s to 30 s while 10 requests run, 250 output tok/s
    gpu = FakeGpu(power_trace=[(0.0, 100.0), (5.0, 400.0), (30.0, 150.0)])
    server = timeline(ramp([10.0] * 26), gen_per_s=250.0, prompt_per_s=1000.0)
    rows = sampled(gpu, server, 35.0)
    block = summarize_steady(rows, (0, 35 * S))
    assert block["window_ns"] == [5 * S, 30 * S] and block["duration_s"] == 25.0
    assert block["gpu_energy_j"] == pytest.approx(400.0 * 25, abs=1e-9)
    assert block["gpu_source"] == "nvml-counter"
    assert block["avg_power_w"] == pytest.approx(400.0, abs=1e-9)
    assert (block["prompt_tokens"], block["output_tokens"]) == (25_000, 6_250)
    assert block["tokens_source"] == "server-counter"
    assert block["output_throughput_tok_s"] == 250.0
    assert block["total_throughput_tok_s"] == 1250.0
    assert block["j_per_output_token"] == pytest.approx(10_000 / 6_250, abs=1e-12)
    assert (block["frac"], block["min_s"], block["reason"]) == (0.85, 20.0, None)


def test_steady_tokens_fall_back_to_the_client_records_and_say_so() -> None:
    gpu = FakeGpu(power_trace=[(0.0, 300.0)], has_energy_counter=False)
    server = timeline(ramp([4.0] * 21))  # held 5..25 s, no token counters exported
    rows = sampled(gpu, server, 30.0)
    calls: list[int] = []

    def records() -> pa.Table:
        calls.append(1)
        return _table([_request(0, [(float(t), 2) for t in range(30)], 10)])

    block = summarize_steady(rows, (0, 30 * S), client_records=records)
    assert block["tokens_source"] == "client-chunks" and calls == [1]
    assert block["output_tokens"] == 40 and block["prompt_tokens"] == 0  # 6..25 s, 2 each
    assert block["gpu_source"] == "nvml-power"
    assert block["gpu_energy_j"] == pytest.approx(6000.0, abs=1e-9)
    assert block["j_per_output_token"] == pytest.approx(6000.0 / 40)
    # with the counters there, the client's records are never read
    counted = sampled(gpu, timeline(ramp([4.0] * 21), gen_per_s=1.0, prompt_per_s=1.0), 30.0)
    assert summarize_steady(counted, (0, 30 * S), client_records=records)["tokens_source"] == (
        "server-counter"
    )
    assert calls == [1]


def test_no_steady_window_leaves_every_figure_null_with_the_reason() -> None:
    rows = sampled(FakeGpu(), timeline([3.0] * 10), 9.0)
    block = summarize_steady(rows, (0, 9 * S))
    assert block["window_ns"] is None and block["reason"] is not None
    figures = (
        "duration_s",
        "gpu_energy_j",
        "avg_power_w",
        "prompt_tokens",
        "output_tokens",
        "output_throughput_tok_s",
        "total_throughput_tok_s",
        "j_per_output_token",
    )
    assert all(block[k] is None for k in figures)
    assert block["gpu_source"] == block["tokens_source"] == "unavailable"


def test_a_steady_window_on_a_host_without_gpu_power_still_has_its_throughput() -> None:
    server = timeline(ramp([6.0] * 21), gen_per_s=60.0, prompt_per_s=0.0)
    block = summarize_steady(server, whole(server))
    assert block["output_throughput_tok_s"] == 60.0 and block["gpu_energy_j"] is None
    assert block["avg_power_w"] is None and block["j_per_output_token"] is None


def test_the_steady_window_counts_the_dcgm_exporters_gpus_where_they_are_the_servers() -> None:
    """With --gpu-metrics the steady energy, as the whole run's, is the exporters' GPUs'."""
    dcgm = [
        {"t_ns": k * S, "source": "dcgm", "uuid": "GPU-a", "power_w": 300.0, "energy_j": 300.0 * k}
        for k in range(36)
    ]
    nvml = [
        {"t_ns": k * S, "source": "gpu", "device": 0, "power_w": 50.0, "energy_j": 50.0 * k}
        for k in range(36)
    ]
    server = timeline(ramp([10.0] * 26), gen_per_s=100.0, prompt_per_s=0.0)
    rows = sorted(dcgm + nvml + server, key=lambda r: r["t_ns"])
    block = summarize_steady(rows, (0, 35 * S), gpus="dcgm")
    assert block["gpu_source"] == "dcgm-counter"
    assert block["gpu_energy_j"] == 300.0 * 25 and block["avg_power_w"] == 300.0
    assert summarize_steady(rows, (0, 35 * S))["gpu_energy_j"] == 50.0 * 25  # this host's
