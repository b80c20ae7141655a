"""harness.capacity on hand-written run summaries: which load points meet the SLO, when a
sweep is saturated, and the capacity block and document of capacity.json."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from summary_builders import (
    energy_block,
    no_steady_block,
    session_figures,
    split_block,
    stats,
    steady_block,
    summary_dict,
    tool_kind,
)

from harness.capacity import (
    CAPACITY_KIND,
    POINT_FIGURES,
    SCHEMA_VERSION,
    capacity_block,
    capacity_document,
    capacity_points,
    failed_point,
    lower_loads,
    mean_context_tok,
    meets_target,
    point_figures,
    refine_load,
    saturated,
    stop_reason,
)
from harness.summary import Summary
from harness.workload.slo import Slo

TARGET = 0.9


def _summary(
    *,
    completed: int = 10,
    attainment: float | None = 1.0,
    total_tok_s: float = 1000.0,
    output_tok_s: float = 100.0,
    goodput_rps: float | None = 2.0,
    avg_power_w: float | None = 600.0,
    idle_power_w: float | None = 80.0,
    gpu_source: str | None = "nvml-counter",
    steady: dict[str, Any] | None = None,
    **blocks: Any,
) -> dict[str, Any]:
    """A run's summary.json; `gpu_source` None: a run without an energy block; `steady` its
    energy.steady block (None: a summary written before there was one)."""
    energy = energy_block(
        gpu_source=gpu_source,
        gpu_energy_j=None if avg_power_w is None else avg_power_w * 10,
        avg_power_w=avg_power_w,
        idle_power_w=idle_power_w,
        j_per_output_token=0.5,
        steady=steady,
    )
    return summary_dict(
        requests_completed=completed,
        requests_failed=0,
        request_throughput_rps=2.5,
        output_throughput_tok_s=output_tok_s,
        total_throughput_tok_s=total_tok_s,
        goodput_rps=goodput_rps,
        slo_attainment=attainment,
        ttft_ms=stats(20.0, 30.0, 40.0),
        tpot_ms=stats(5.0, 6.0, 8.0),
        energy=energy if gpu_source is not None else None,
        **blocks,
    )


def _point(load: float, **kwargs: Any) -> dict[str, Any]:
    summary = Summary.model_validate(_summary(**kwargs))
    return point_figures(load, f"points/rate-{load:g}", summary, TARGET)


# --- meets_slo -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attainment", "meets"),
    [(0.95, True), (TARGET, True), (0.8999, False), (None, False)],
)
def test_meets_slo_against_the_target_attainment(attainment: float | None, meets: bool) -> None:
    assert _point(1.0, attainment=attainment)["meets_slo"] is meets


def test_zero_completed_requests_never_meets() -> None:
    point = _point(1.0, completed=0, attainment=1.0)
    assert point["requests_completed"] == 0
    assert point["meets_slo"] is False


def test_point_figures_keep_missing_figures_null() -> None:
    summary = _summary(avg_power_w=None, idle_power_w=None, gpu_source=None, goodput_rps=None)
    summary["tpot_ms"] = stats()
    point = point_figures(2, "points/rate-2", Summary.model_validate(summary), TARGET)
    assert point["load"] == 2.0 and isinstance(point["load"], float)
    assert point["avg_power_w"] is None and point["idle_power_w"] is None
    assert point["gpu_source"] == "unavailable"
    assert point["goodput_rps"] is None
    assert point["tpot_ms_p50"] is None and point["tpot_ms_p99"] is None
    assert point["ttft_ms_p99"] == 40.0
    assert point["sessions_per_s"] is None and point["tool_cpu_s_per_session"] is None


def test_point_figures_of_an_agent_run() -> None:
    summary = _summary(
        session_figures=session_figures(sessions_per_hour=7200.0),
        latency_split=split_block(
            sessions=4, tool_cpu_s=10.0, per_tool_kind={"retrieval": tool_kind(calls=3)}
        ),
    )
    point = point_figures(1, "p", Summary.model_validate(summary), TARGET)
    assert point["sessions_per_s"] == pytest.approx(2.0)
    assert point["tool_cpu_s_per_session"] == pytest.approx(2.5)


def test_sessions_without_tool_calls_have_no_tool_cpu_figure() -> None:
    """A chatbot's sessions ran no tool: its tool CPU per session is not applicable (null),
    not a measured 0 that an agent scenario would turn into zero CPU cores."""
    summary = _summary(latency_split=split_block(sessions=4, tool_cpu_s=0.0, per_tool_kind={}))
    point = point_figures(1, "p", Summary.model_validate(summary), TARGET)
    assert point["tool_cpu_s_per_session"] is None


def test_a_point_without_a_summary_is_kept_with_its_error() -> None:
    point = failed_point(8, "points/rate-8", "no summary (exit 2)")
    assert point["meets_slo"] is False and point["error"] == "no summary (exit 2)"
    assert point["total_throughput_tok_s"] is None and point["requests_completed"] is None
    assert set(point) == set(_point(1))


# --- saturated -----------------------------------------------------------------------------


def test_not_saturated_when_the_last_point_meets() -> None:
    points = [_point(1, attainment=0.5), _point(2, attainment=1.0)]
    assert saturated(points) is False
    assert saturated([]) is False


def test_two_consecutive_misses_stop_the_sweep_but_are_not_saturation() -> None:
    points = [
        _point(1, total_tok_s=1000.0),
        _point(2, attainment=0.5, total_tok_s=2000.0),
        _point(4, attainment=0.5, total_tok_s=4000.0),  # throughput still rising
    ]
    assert saturated(points) is False
    assert stop_reason(points) == "slo_missed_twice"
    assert stop_reason(points[:2]) is None


def test_levelled_throughput_is_saturation() -> None:
    points = [_point(1, total_tok_s=1000.0), _point(2, attainment=0.5, total_tok_s=1020.0)]
    assert stop_reason(points) == "saturated"


def test_refinement_bisects_between_the_capacity_and_the_next_miss() -> None:
    points = [_point(4), _point(8, attainment=0.5), _point(12, attainment=0.5)]
    assert refine_load(points, integer=False) == 6.0
    assert refine_load([*points, _point(6)], integer=False) == 7.0
    assert refine_load([*points, _point(6, attainment=0.5)], integer=False) == 5.0
    # concurrency: whole numbers, and nothing left between 4 and 5
    assert refine_load([_point(4), _point(5, attainment=0.5)], integer=True) is None
    assert refine_load([_point(4)], integer=False) is None  # no miss above: nothing to narrow
    assert refine_load([_point(4, attainment=0.1)], integer=False) is None  # nothing met


def test_a_miss_with_little_throughput_gain_is_saturated() -> None:
    points = [
        _point(1, total_tok_s=1000.0),
        _point(2, total_tok_s=2000.0),
        _point(4, attainment=0.5, total_tok_s=2090.0),  # +4.5 % over the best earlier
    ]
    assert saturated(points) is True


def test_a_miss_with_a_big_gain_is_not_saturated() -> None:
    points = [
        _point(1, total_tok_s=1000.0),
        _point(2, total_tok_s=2000.0),
        _point(4, attainment=0.5, total_tok_s=3000.0),
    ]
    assert saturated(points) is False
    assert saturated([_point(1, attainment=0.5)]) is False  # nothing earlier to compare with


# --- capacity_block ------------------------------------------------------------------------


def test_capacity_at_the_highest_load_that_met_the_slo_per_device() -> None:
    points = [
        _point(1, total_tok_s=1000.0, idle_power_w=70.0),
        # more throughput than the capacity point, but a lower load
        _point(2, total_tok_s=3000.0, output_tok_s=300.0, idle_power_w=90.0),
        _point(
            4,
            total_tok_s=2400.0,
            output_tok_s=240.0,
            goodput_rps=5.0,
            avg_power_w=1300.0,
            idle_power_w=80.0,
            gpu_source="nvml-power",
        ),
        _point(8, attainment=0.2, total_tok_s=2500.0, idle_power_w=None),
    ]
    block = capacity_block(points, devices=2, device_kind="gpu", accelerator="H100-SXM")
    assert block["load"] == 4.0 and block["run_dir"] == "points/rate-4"
    assert block["devices"] == 2 and block["device_kind"] == "gpu"
    assert block["accelerator"] == "H100-SXM"
    assert block["capacity_tok_s"] == pytest.approx(1200.0)
    assert block["capacity_output_tok_s"] == pytest.approx(120.0)
    # requests/s on the same basis as tokens/s: every completed request (2.5 / 2 devices)
    assert block["capacity_requests_s"] == pytest.approx(1.25)
    assert block["capacity_sessions_s"] is None
    # the true capacity lies between load 4 and the next load that missed
    assert block["next_load_missed"] == 8.0 and block["lower_loads_missed"] == []
    assert block["busy_w"] == pytest.approx(650.0)
    assert block["busy_w_source"] == "nvml-power"
    # median of the points' idle baselines (70, 80, 90; the point without one left out) / 2
    assert block["idle_w"] == pytest.approx(40.0)


def test_a_steady_window_gives_busy_power_and_capacity_and_says_so() -> None:
    """The capacity point's steady window (its batch near the maximum) sets busy_w and the
    tokens/s capacity, not the whole run's figures that include ramp-up and drain."""
    steady = steady_block(
        gpu_energy_j=16_000.0,
        gpu_source="nvml-counter",
        avg_power_w=800.0,
        output_throughput_tok_s=180.0,
        total_throughput_tok_s=2200.0,
        j_per_output_token=16_000.0 / 3600,
    )
    points = [
        _point(1),
        _point(2, avg_power_w=600.0, total_tok_s=1600.0, output_tok_s=150.0, steady=steady),
        _point(4, attainment=0.3),
    ]
    assert points[1]["steady_avg_power_w"] == 800.0
    block = capacity_block(points, devices=2, device_kind="gpu", accelerator=None)
    assert block["load"] == 2.0
    assert block["busy_w"] == pytest.approx(400.0) and block["busy_w_window"] == "steady"
    assert block["busy_w_source"] == "nvml-counter"
    assert block["capacity_tok_s"] == pytest.approx(1100.0)
    assert block["capacity_output_tok_s"] == pytest.approx(90.0)
    assert block["capacity_window"] == "steady"
    # requests/s stay the whole run's: the window counts tokens, not completions
    assert block["capacity_requests_s"] == pytest.approx(1.25)


@pytest.mark.parametrize("steady", [None, no_steady_block()], ids=["older", "no-window"])
def test_without_a_steady_window_the_whole_run_is_used_and_labelled(
    steady: dict[str, Any] | None,
) -> None:
    block = capacity_block([_point(1, steady=steady)], 1, "gpu", None)
    assert block["busy_w"] == pytest.approx(600.0) and block["busy_w_window"] == "whole-run"
    assert block["capacity_tok_s"] == pytest.approx(1000.0)
    assert block["capacity_window"] == "whole-run"


def test_steady_throughput_without_steady_power_is_not_mixed_with_whole_run_power() -> None:
    """busy_w over capacity_tok_s is one window's J per token: where the steady window has
    throughput but no power, busy_w is null rather than the whole run's."""
    block = capacity_block([_point(1, steady=steady_block())], 1, "gpu", None)
    assert block["capacity_tok_s"] == pytest.approx(1100.0)
    assert block["capacity_window"] == "steady"
    assert block["busy_w"] is None and block["busy_w_window"] is None
    assert block["busy_w_source"] == "unavailable"
    # on a CPU host (no power at all) the steady throughput still sets the capacity
    cpu = _point(1, avg_power_w=None, idle_power_w=None, steady=steady_block())
    assert capacity_block([cpu], 1, "cpu", None)["capacity_output_tok_s"] == 100.0


def test_busy_power_unavailable_is_null_never_zero() -> None:
    points = [_point(1, avg_power_w=None, idle_power_w=None, gpu_source=None)]
    block = capacity_block(points, devices=1, device_kind="cpu", accelerator=None)
    assert block["capacity_tok_s"] == pytest.approx(1000.0)
    assert block["busy_w"] is None
    assert block["busy_w_source"] == "unavailable"
    assert block["idle_w"] is None


def test_power_that_cannot_be_attributed_is_null_with_the_reason() -> None:
    points = [_point(1, avg_power_w=2000.0, idle_power_w=400.0)]
    note = "NVML sees 8 GPUs but the server uses 2"
    block = capacity_block(points, devices=2, device_kind="gpu", accelerator=None, power_note=note)
    assert block["busy_w"] is None and block["idle_w"] is None
    assert block["busy_w_source"] == "unavailable" and block["power_note"] == note
    assert block["capacity_tok_s"] == pytest.approx(500.0)


def _told(point: dict[str, Any], gpus: int, method: str = "processes") -> dict[str, Any]:
    """A point whose summary told the server's GPUs (`gpus` of them, by `method`)."""
    return {**point, "gpu_devices": gpus, "gpu_attribution": method}


def test_power_of_the_servers_gpus_is_per_device_whatever_nvml_sees() -> None:
    """Attributed: the power is the server's 2 GPUs' alone, so the note about the 8 GPUs
    NVML sees does not apply."""
    points = [
        _told(_point(1, avg_power_w=500.0, idle_power_w=100.0), 2),
        _told(_point(2, avg_power_w=700.0, idle_power_w=140.0), 2),
    ]
    note = "NVML sees 8 GPUs but the server uses 2"
    block = capacity_block(points, devices=2, device_kind="gpu", accelerator=None, power_note=note)
    assert block["busy_w"] == pytest.approx(350.0) and block["busy_w_source"] == "nvml-counter"
    assert block["idle_w"] == pytest.approx(60.0)  # median of 50 and 70 per GPU
    assert block["power_note"] is None


def test_power_of_the_servers_gpus_on_another_basis_than_devices_is_null_with_why() -> None:
    points = [_told(_point(1, avg_power_w=500.0), 2, "--gpus")]
    block = capacity_block(points, devices=4, device_kind="gpu", accelerator=None)
    assert block["busy_w"] is None and block["idle_w"] is None
    assert block["busy_w_source"] == "unavailable"
    assert "the server's GPUs are 2 (told by --gpus)" in block["power_note"]
    assert "give --devices 2" in block["power_note"]
    assert block["capacity_tok_s"] == pytest.approx(250.0)


def test_a_miss_below_the_capacity_load_is_reported() -> None:
    points = [_point(1), _point(2, attainment=0.5), _point(4)]
    block = capacity_block(points, devices=1, device_kind="cpu", accelerator=None)
    assert block["load"] == 4.0
    assert block["lower_loads_missed"] == [2.0] and block["next_load_missed"] is None


def test_busy_power_missing_at_the_capacity_point_even_with_a_source() -> None:
    """A source named but no power figure still reads unavailable."""
    points = [_point(1, avg_power_w=None, gpu_source="nvml-counter")]
    block = capacity_block(points, devices=1, device_kind="gpu", accelerator=None)
    assert block["busy_w"] is None and block["busy_w_source"] == "unavailable"
    assert block["idle_w"] == pytest.approx(80.0)


def test_no_point_met_the_slo_gives_null_capacity() -> None:
    points = [_point(1, attainment=0.5), _point(2, attainment=0.1)]
    block = capacity_block(points, devices=1, device_kind="gpu", accelerator=None)
    for key in (
        "load",
        "run_dir",
        "capacity_tok_s",
        "capacity_output_tok_s",
        "capacity_requests_s",
        "capacity_sessions_s",
        "busy_w",
        "tool_cpu_s_per_session",
    ):
        assert block[key] is None, key
    assert block["busy_w_source"] == "unavailable"
    assert block["idle_w"] == pytest.approx(80.0)  # the idle baseline was still measured
    assert capacity_block([], 1, "cpu", None)["capacity_tok_s"] is None


# --- capacity_document ---------------------------------------------------------------------

_CONTRACT_KEYS = {
    "kind",
    "schema_version",
    "name",
    "workload",
    "load_kind",
    "slo",
    "slo_target_attainment",
    "points",
    "saturated",
    "stopped_early",
    "capacity",
    "model",
    "host",
}
_POINT_KEYS = {
    "load",
    "run_dir",
    "requests_completed",
    "requests_failed",
    "request_throughput_rps",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "goodput_rps",
    "slo_attainment",
    "sessions_per_s",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "tpot_ms_p50",
    "tpot_ms_p99",
    "e2el_ms_p50",
    "e2el_ms_p99",
    "avg_power_w",
    "j_per_output_token",
    "meets_slo",
}
_CAPACITY_KEYS = {
    "load",
    "run_dir",
    "devices",
    "device_kind",
    "accelerator",
    "capacity_tok_s",
    "capacity_output_tok_s",
    "capacity_requests_s",
    "capacity_sessions_s",
    "busy_w",
    "busy_w_source",
    "busy_w_window",
    "capacity_window",
    "idle_w",
    "tool_cpu_s_per_session",
    "power_note",
    "next_load_missed",
    "lower_loads_missed",
}


def test_capacity_document_keys_match_the_contract() -> None:
    points = [_point(1), _point(2, attainment=0.5, total_tok_s=1010.0)]
    doc = capacity_document(
        name="sweep-x",
        workload="chat",
        load_kind="rate",
        slo=Slo(ttft_ms=500.0),
        target_attainment=TARGET,
        points=points,
        status="finished",
        stopped="saturated",
        devices=1,
        device_kind="gpu",
        accelerator=None,
        model={"name": "m", "n_params": None},
        host={"cpu": "x"},
    )
    # the contract's keys, plus `status` (whether the sweep finished), `stop_reason` and the
    # `server` measured (None here: none was named)
    assert set(doc) == _CONTRACT_KEYS | {"status", "stop_reason", "server"}
    assert doc["server"] is None
    assert doc["kind"] == CAPACITY_KIND == "harness-capacity"
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert doc["slo"] == {"ttft_ms": 500.0, "tpot_ms": None, "e2el_ms": None}
    assert doc["slo_target_attainment"] == TARGET
    assert doc["saturated"] is True and doc["stopped_early"] is True
    assert doc["stop_reason"] == "saturated"
    assert [p["run_index"] for p in doc["points"]] == [0, 1]
    assert set(doc["capacity"]) == _CAPACITY_KEYS
    assert doc["capacity"]["load"] == 1.0
    for point in doc["points"]:
        assert set(point) >= _POINT_KEYS


def test_points_are_sorted_by_load_with_their_run_order() -> None:
    doc = capacity_document(
        name="s",
        workload="w",
        load_kind="rate",
        slo=Slo(ttft_ms=1.0),
        target_attainment=TARGET,
        points=[_point(4), _point(8, attainment=0.1), _point(6)],  # 6 ran last (refinement)
        status="finished",
        stopped=None,
        devices=1,
        device_kind="cpu",
        accelerator=None,
        model={},
        host={},
    )
    assert [(p["load"], p["run_index"]) for p in doc["points"]] == [(4, 0), (6, 2), (8, 1)]
    assert doc["capacity"]["load"] == 6.0 and doc["capacity"]["next_load_missed"] == 8.0


def test_mean_context_over_all_tokens_by_hand() -> None:
    # 128/128: prompt tokens attend to 64 on average, outputs to 128 + 64 = 192: mean 128.
    assert mean_context_tok([(128, 128)]) == pytest.approx(128.0)
    # (1000, 0): 500; with (0, 100): outputs attend to 50 -> (500·1000 + 50·100) / 1100.
    assert mean_context_tok([(1000, 0), (0, 100)]) == pytest.approx(505_000 / 1100)
    assert mean_context_tok([]) is None


def test_point_keys_are_the_capacity_json_contract() -> None:
    """capacity.json's point keys are read by `harness fleet` and `harness compare`."""
    figures = {
        "requests_completed",
        "requests_failed",
        "request_throughput_rps",
        "output_throughput_tok_s",
        "total_throughput_tok_s",
        "goodput_rps",
        "slo_attainment",
        "sessions_per_s",
        "avg_power_w",
        "idle_power_w",
        "j_per_output_token",
        "tool_cpu_s_per_session",
        *(f"{m}_{s}" for m in ("ttft_ms", "tpot_ms", "e2el_ms") for s in ("p50", "p99")),
        "steady_avg_power_w",
        "steady_j_per_output_token",
        "steady_output_throughput_tok_s",
        "steady_total_throughput_tok_s",
    }
    keys = {"load", "run_dir", "gpu_source", "error", "meets_slo", "client_bound", *figures}
    keys |= {"gpu_devices", "gpu_attribution"}
    assert set(_point(1)) == keys
    assert set(failed_point(1, "p", "no summary")) == keys
    assert _point(1)["avg_power_w"] == 600.0 and _point(1)["ttft_ms_p99"] == 40.0


def test_a_point_says_whether_the_client_set_its_pace() -> None:
    """A load the client could not keep up with is marked, so a sweep can say so."""
    summary = Summary.model_validate(_summary())
    assert point_figures(1, "p", summary, TARGET)["client_bound"] is None  # no client block
    bound = {
        "workers": [],
        "loop_lag_p99_ms_worst": 9.0,
        "cpu_util_max": 0.99,
        "cpu_s_total": 3.0,
        "limits": {"loop_lag_p99_ms": 5.0, "cpu_util": 0.9},
        "client_bound": True,
        "client_bound_reasons": ["worker 0 used 99 % of a core"],
        "unavailable_reasons": [],
    }
    busy = Summary.model_validate({**_summary(), "client": bound})
    assert point_figures(1, "p", busy, TARGET)["client_bound"] is True


def test_point_figures_are_the_summary_figures_of_the_same_name() -> None:
    """A point copies `Summary.figures()` under the same names: one name per figure."""
    summary = Summary.model_validate(_summary())
    point = point_figures(1, "p", summary, TARGET)
    figures = summary.figures()
    assert {k: point[k] for k in POINT_FIGURES} == {k: figures[k] for k in POINT_FIGURES}


def test_version_1_points_are_read_under_this_version_s_names() -> None:
    """capacity.json version 1 named the GPU power figures avg_gpu_power_w and
    idle_gpu_power_w; its points are read under the summary's names."""
    old = {"schema_version": 1, "points": [{"load": 1.0, "avg_gpu_power_w": 300.0}, "junk"]}
    assert capacity_points(old) == [{"load": 1.0, "avg_power_w": 300.0}]
    new = {"schema_version": 2, "points": [{"load": 1.0, "avg_power_w": 200.0}]}
    assert capacity_points(new) == [{"load": 1.0, "avg_power_w": 200.0}]
    assert capacity_points({"points": None}) == []


# --- attainment shown as the verdict reads it ------------------------------------------------


def test_a_points_verdict_is_its_attainment_against_the_target() -> None:
    assert _point(1, attainment=0.897)["meets_slo"] is False
    assert _point(1, attainment=0.9)["meets_slo"] is True
    assert meets_target(0.9, 0.9) and not meets_target(None, 0.9)


def test_capacity_is_analysis_and_loads_no_presentation_module() -> None:
    """harness.capacity computes; how its figures read is harness.figures' (and the
    report's) concern, so importing it loads none of them."""
    code = (
        "import sys, harness.capacity; print(sorted(m for m in sys.modules if m in PRESENTATION))"
    ).replace("PRESENTATION", repr(("harness.figures", "harness.report", "harness.sweep_report")))
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


# --- lower loads to try ------------------------------------------------------------------------


def _missed(*loads: float) -> list[dict[str, Any]]:
    return [_point(x, attainment=0.5) for x in loads]


def test_lower_loads_halve_down_from_the_lowest_tried() -> None:
    assert lower_loads(_missed(1, 2, 4), integer=False) == [0.125, 0.25, 0.5]
    assert lower_loads(_missed(8, 16), integer=True) == [1.0, 2.0, 4.0]
    assert lower_loads(_missed(4), integer=True) == [1.0, 2.0]
    assert lower_loads(_missed(3), integer=True) == [1.0]


def test_no_lower_loads_where_one_met_none_ran_or_none_is_lower() -> None:
    assert lower_loads([_point(1), *_missed(2)], integer=False) == []
    assert lower_loads([], integer=False) == []
    assert lower_loads(_missed(1), integer=True) == []
