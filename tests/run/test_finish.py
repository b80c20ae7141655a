"""harness.run.finish: the load block of summary.json, in figures and in words."""

from __future__ import annotations

from typing import Any

import pytest

from harness.run.finish import load_applied
from harness.workload.spec import WorkloadSpec


def _spec(arrival: dict[str, Any], limits: dict[str, Any] | None = None) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "name": "w",
            "source": {"synthetic": "chatbot"},
            "arrival": arrival,
            "limits": limits or {},
        }
    )


@pytest.mark.parametrize(
    ("arrival", "description"),
    [
        ({"pattern": "trace", "time_scale": 0.5}, "trace timestamps × 0.5"),
        ({"pattern": "trace", "time_scale": 0}, "trace timestamps, sent as fast as the other"),
        ({"pattern": "poisson", "rate_per_s": 5}, "Poisson arrivals at 5 sessions/s"),
        ({"pattern": "constant", "rate_per_s": 2.5}, "constant arrivals at 2.5 sessions/s"),
        ({"pattern": "closed", "concurrency": 8}, "a closed loop of 8 concurrent sessions"),
    ],
)
def test_the_arrivals_are_said_in_words(arrival: dict[str, Any], description: str) -> None:
    assert load_applied(_spec(arrival), workers=1).description.startswith(description)


def test_only_the_patterns_figures_are_set_with_the_caps_and_limits() -> None:
    spec = _spec(
        {"pattern": "poisson", "rate_per_s": 5, "time_scale": 2.0, "concurrency": 3},
        {"max_concurrency": 16, "max_requests": 200, "duration_s": 60, "warmup_requests": 4},
    )
    load = load_applied(spec, workers=2)
    assert load.pattern == "poisson" and load.rate_per_s == 5
    assert load.time_scale is None and load.concurrency is None  # not this pattern's
    assert load.description == "Poisson arrivals at 5 sessions/s, at most 16 requests in flight"
    assert (load.max_concurrency, load.max_requests, load.duration_s) == (16, 200, 60)
    assert load.warmup_requests == 4 and load.workers == 2
    assert load.trace_timing_replaced is False and load.note is None


def test_a_replaced_trace_timing_is_recorded_with_its_note() -> None:
    note = "--rate 5 replaced the trace's own timestamps with Poisson arrivals at 5 sessions/s"
    load = load_applied(_spec({"pattern": "poisson", "rate_per_s": 5}), 1, note, "trace")
    assert load.trace_timing_replaced is True and load.note == note


def test_the_flag_comes_from_the_workloads_own_pattern_not_from_a_note() -> None:
    """A trace replaced by rated arrivals is flagged with or without a note; a rated
    workload given a rate is not, whatever a note says."""
    poisson = _spec({"pattern": "poisson", "rate_per_s": 5})
    assert load_applied(poisson, 1, None, "trace").trace_timing_replaced is True
    assert load_applied(poisson, 1, "a note", "poisson").trace_timing_replaced is False
    assert load_applied(poisson, 1, "a note").trace_timing_replaced is False
    trace = _spec({"pattern": "trace", "time_scale": 2.0})
    assert load_applied(trace, 1, None, "trace").trace_timing_replaced is False
