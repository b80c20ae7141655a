"""Parsing vLLM's /metrics text and deltas of its request-phase histograms."""

from __future__ import annotations

import pytest

from harness.telemetry.server_metrics import parse_metrics, phase_deltas, sum_samples

TEXT = """\
# HELP vllm:request_prefill_time_seconds Histogram of time spent in PREFILL phase.
# TYPE vllm:request_prefill_time_seconds histogram
vllm:request_prefill_time_seconds_bucket{le="0.3",model_name="m"} 3.0
vllm:request_prefill_time_seconds_bucket{le="+Inf",model_name="m"} 4.0
vllm:request_prefill_time_seconds_count{model_name="m"} {count}
vllm:request_prefill_time_seconds_sum{model_name="m"} {total}
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} {gen}
vllm:generation_tokens_total{engine="1",model_name="m"} 5.0
"""


def _text(count: float, total: float, gen: float) -> str:
    return (
        TEXT.replace("{count}", str(count))
        .replace("{total}", str(total))
        .replace("{gen}", str(gen))
    )


def test_parse_sums_label_sets() -> None:
    samples = parse_metrics(_text(4, 1.5, 100))
    assert samples["vllm:request_prefill_time_seconds_count"] == 4
    assert samples["vllm:generation_tokens_total"] == 105  # both engines


def test_parse_only_named_samples_gives_the_same_values() -> None:
    text = _text(4, 1.5, 100)
    names = {"vllm:generation_tokens_total", "vllm:request_prefill_time_seconds_count"}
    only = parse_metrics(text, names)
    full = parse_metrics(text)
    assert only == {name: full[name] for name in names}
    assert only["vllm:generation_tokens_total"] == 105


def test_phase_deltas() -> None:
    before = parse_metrics(_text(4, 1.5, 100))
    after = parse_metrics(_text(10, 4.5, 400))
    d = phase_deltas(before, after)
    assert d["phases"]["prefill"] == {"requests": 6, "total_s": pytest.approx(3.0), "mean_s": 0.5}
    assert "decode" not in d["phases"]  # not exported: absent, not zero
    assert d["counters"]["generation_tokens"] == 300


def test_counter_reset_is_flagged() -> None:
    d = phase_deltas(parse_metrics(_text(10, 4.5, 400)), parse_metrics(_text(2, 1.0, 50)))
    assert d["phases"]["prefill"] == {"reset": True}
    assert d["counters"]["generation_tokens"] is None


def test_replicas_samples_add_up_but_a_share_of_a_server_is_their_mean() -> None:
    a = {"vllm:num_requests_running": 3.0, "vllm:kv_cache_usage_perc": 0.5, "x_total": 10.0}
    b = {"vllm:num_requests_running": 1.0, "vllm:kv_cache_usage_perc": 0.25}
    total = sum_samples([a, b])
    assert total == {
        "vllm:num_requests_running": 4.0,
        "vllm:kv_cache_usage_perc": 0.375,
        "x_total": 10.0,
    }
