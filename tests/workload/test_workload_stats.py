"""Workload statistics on a hand-computed example."""

from __future__ import annotations

import json

import pytest

from harness.workload.model import Session, Step
from harness.workload.stats import workload_stats


def test_hand_computed_example() -> None:
    sessions = [
        # prompts 100, 100 + 20 + 30 = 150, 150 + 5 + 10 = 165
        Session(
            "a",
            1000.0,
            (Step(100, 20), Step(30, 5, offset_ms=4000.0), Step(10, 1, offset_ms=9000.0)),
        ),
        # a step without an offset has no known start: only its first request counts
        Session("b", 500.0, (Step(40, 2), Step(60, 3))),
        Session("c", 7000.0, (Step(200, 100),)),
    ]
    stats = workload_stats(sessions)
    assert stats.sessions == 3
    assert stats.requests == 6
    # prompts: 100, 150, 165, 40, 102, 200
    assert stats.input_tokens == 757
    assert stats.output_tokens == 131
    assert stats.span_s == pytest.approx(9.5)  # 500 ms -> 1000 + 9000 ms
    # sorted prompts 40 100 102 150 165 200: p50 = (102 + 150) / 2, p90 at rank 4.5
    assert stats.input_percentiles.p50 == pytest.approx(126.0)
    assert stats.input_percentiles.p90 == pytest.approx(182.5)
    assert stats.input_percentiles.p99 == pytest.approx(198.25)
    # sorted outputs 1 2 3 5 20 100
    assert stats.output_percentiles.p50 == pytest.approx(4.0)
    data = stats.to_json_dict()
    assert list(data) == [
        "sessions",
        "requests",
        "input_tokens",
        "output_tokens",
        "span_s",
        "percentiles",
    ]
    assert data["percentiles"]["input_tokens"] == {"p50": 126.0, "p90": 182.5, "p99": 198.25}
    assert set(data["percentiles"]) == {"input_tokens", "output_tokens"}


def test_empty() -> None:
    stats = workload_stats([])
    assert (stats.sessions, stats.requests, stats.input_tokens, stats.span_s) == (0, 0, 0, 0.0)
    assert stats.to_json_dict()["percentiles"]["output_tokens"]["p99"] is None  # not 0: no data


def test_one_step_sessions_span() -> None:
    sessions = [Session(str(i), t, (Step(1, 1),)) for i, t in enumerate([300.0, 100.0, 2100.0])]
    assert workload_stats(sessions).span_s == pytest.approx(2.0)


def test_json_is_finite_or_null() -> None:
    # a BurstGPT row at 1e308 s made span_s inf: `inspect --json` printed Infinity (the
    # loaders now bound times; the stats still never write a non-finite number)
    sessions = [Session("a", -1e308, (Step(1, 1),)), Session("b", 1e308, (Step(1, 1),))]
    data = workload_stats(sessions).to_json_dict()
    assert data["span_s"] is None
    json.dumps(data, allow_nan=False)  # raises on Infinity or NaN
