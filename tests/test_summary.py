"""harness.summary: the schema of summary.json against what the producers really write, its
JSON Schema export, old (unversioned) summaries, and the errors a bad summary gives."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
from pydantic import ValidationError
from summary_builders import (
    energy_block,
    misfit_summaries,
    no_steady_block,
    request_record,
    split_block,
    stats,
    steady_block,
    summary,
    summary_dict,
)

from harness.analysis import summarize_requests
from harness.errors import ResultsError
from harness.records import RequestRecord, StepRecord, record_to_row
from harness.results import RunReader, RunWriter
from harness.run.health import LoopLag, WorkerHealth, client_health
from harness.run.telemetry import RunTelemetry
from harness.run_summary import read_summary
from harness.server import ServerInfo
from harness.summary import (
    FIGURES,
    SCHEMA_VERSION,
    Summary,
    new_summary,
    parse_summary,
    read_summary_file,
    summary_schema,
)
from harness.telemetry.energy import summarize_energy
from harness.telemetry.server_metrics import phase_deltas
from harness.workload.slo import Slo

MS = 1_000_000
S = 1_000_000_000


def _record(i: int, ok: bool = True) -> RequestRecord:
    return request_record(i, ok, sessions=2)


def _produced() -> dict[str, Any]:
    """A summary's content as the run's producers build it: request metrics with an SLO, the
    run block, server-side phases, energy from GPU samples, the sampler's status, the client's
    health and the load workers."""
    records = [_record(i, ok=i != 3) for i in range(4)]
    figures = summarize_requests(
        pd.DataFrame([record_to_row(r) for r in records]), Slo(ttft_ms=5.0, tpot_ms=2.0)
    )
    rows = [
        {"t_ns": k * S // 10, "source": "gpu", "device": 0, "power_w": 200.0, "energy_j": 20.0 * k}
        for k in range(11)
    ]
    energy = summarize_energy(
        rows, (0, S), idle_window=(0, S // 10), output_tokens=9, requests=3, sessions=2
    )
    before = {"vllm:e2e_request_latency_seconds_count": 1.0}
    after = {
        "vllm:e2e_request_latency_seconds_count": 4.0,
        "vllm:e2e_request_latency_seconds_sum": 0.3,
    }
    info = ServerInfo(
        base_url="http://127.0.0.1:9", model="m", max_model_len=None, server_version=None
    )
    telemetry = RunTelemetry(info, time.perf_counter_ns, 10.0, 0.0)
    try:
        status = telemetry.status()
    finally:
        telemetry.stop()
    worker = WorkerHealth(worker=0, loop_lag_ms=LoopLag(count=3, p50=0.2, p99=1.1, max=1.5))
    return {
        **figures,
        "run": {
            "requests_planned": 4,
            "requests_sent": 4,
            "requests_not_sent": 0,
            "requests_clipped": 0,
            "requests_skipped_overlength": 0,
            "prompt_token_mismatches": 0,
            "output_token_mismatches": 0,
            "sessions_started": 2,
            "sessions_failed": 0,
            "session_errors": [],
            "worker_errors": [],
            "interrupted": False,
            "aborted_reason": None,
        },
        "server_metrics": {"available": True, **phase_deltas(before, after)},
        "energy": energy,
        "telemetry": status,
        "client": client_health([worker]),
        "workers": {"requested": "auto", "used": 1, "reason": "one worker covers the rate"},
    }


def test_what_the_producers_write_fits_and_round_trips(tmp_path: Path) -> None:
    produced = new_summary(_produced())
    assert produced.schema_version == SCHEMA_VERSION
    assert produced.energy is not None and produced.energy.gpu_source == "nvml-counter"
    assert produced.client is not None and produced.client.client_bound is None  # no CPU figure
    assert produced.workers is not None and produced.workers.requested == "auto"
    assert produced.server_metrics.phases["e2e"].requests == 3
    assert produced.telemetry is not None and produced.telemetry.rate_hz == 10.0
    run_dir = tmp_path / "run"
    writer = RunWriter(run_dir)
    writer.write_manifest({"run_name": "run"})
    writer.append([_record(0)])
    writer.finalize(produced)
    text = (run_dir / "summary.json").read_text()
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert next(iter(json.loads(text))) == "schema_version"  # the first key
    assert read_summary(RunReader(run_dir)) == produced
    assert Summary.model_validate_json(text) == produced


def test_a_recovered_summary_fits_and_keeps_its_from_key(tmp_path: Path) -> None:
    """A run killed mid-way: the summary recovered from its journals (latency split and
    session figures included) fits the schema, `recovered.from` spelled as written."""
    run_dir = tmp_path / "killed"
    writer = RunWriter(run_dir)
    writer.write_manifest({"run_name": "k", "status": "running", "plan": {"requests": 4}})
    writer.append([_record(0), _record(1)])
    writer.append_rows(
        "steps", [StepRecord("s0", 0, "r0", 0, 5 * MS, 0, 4 * MS, None, None, 0, 0, 0, True)]
    )
    writer.close()
    recovered = read_summary(RunReader(run_dir))
    assert recovered.recovered is not None and recovered.latency_split is not None
    assert recovered.session_figures is not None
    assert recovered.to_json()["recovered"]["from"] == "journals"
    assert parse_summary(recovered.to_json(), "x") == recovered


def test_the_exported_json_schema_accepts_what_is_written_and_nothing_misspelt() -> None:
    """The JSON Schema that `harness schema summary` prints checks summaries on its own (a
    JSON Schema validator, not the pydantic model)."""
    schema = summary_schema()
    validator = jsonschema.Draft202012Validator(schema)
    written = new_summary(_produced()).to_json()
    validator.validate(written)
    assert "schema_version" in schema["required"] and "schema_version" in schema["properties"]
    misspelt = {**written, "energy": {**written["energy"], "avg_pwr_w": 1.0}}
    with pytest.raises(jsonschema.ValidationError, match="avg_pwr_w"):
        validator.validate(misspelt)


def test_a_summary_without_schema_version_is_version_0() -> None:
    """A summary written before summaries were versioned reads as version 0 where it fits."""
    old = summary_dict()
    del old["schema_version"]
    assert parse_summary(old, "old/summary.json").schema_version == 0
    old["ttft_ms"] = {"p99": 1.0}  # an older shape: not this schema
    with pytest.raises(ResultsError) as info:
        parse_summary(old, "old/summary.json")
    message = str(info.value)
    assert message.startswith("old/summary.json: invalid summary: key 'ttft_ms.count'")
    assert "no schema_version (written by an older harness)" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"output_thruput_tok_s": 1.0}, "unknown key 'output_thruput_tok_s'"),
        ({"energy": energy_block(avg_pwr_w=1.0)}, "unknown key 'energy.avg_pwr_w'"),
        ({"latency_split": split_block(shares={"llm": 1.0})}, "latency_split.shares.tool"),
        ({"requests_completed": "10"}, "key 'requests_completed': Input should be a valid integer"),
        ({"requests_completed": True}, "key 'requests_completed'"),
        ({"requests_failed": -1}, "key 'requests_failed': Input should be greater than"),
        ({"ttft_ms": stats(p99="fast")}, "key 'ttft_ms.p99': Input should be a valid number"),  # type: ignore[arg-type]
        ({"slo": {"ttft_ms": 0}}, "key 'slo.ttft_ms'"),
        ({"energy": energy_block(gpu_source="guess")}, "key 'energy.gpu_source'"),
        ({"schema_version": "1"}, "key 'schema_version'"),
        ({"run": None}, "key 'run'"),
    ],
)
def test_a_bad_summary_names_the_file_and_the_first_bad_key(
    change: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ResultsError) as info:
        parse_summary(summary_dict(**change), Path("runs/x/summary.json"))
    message = str(info.value)
    assert message.startswith("runs/x/summary.json: invalid summary: ") and needle in message
    assert "\n" not in message  # one line: the CLI prints it as is


def test_a_newer_or_odd_summary_is_a_clear_error(tmp_path: Path) -> None:
    newer = rf"schema_version {SCHEMA_VERSION + 1} is newer .* \({SCHEMA_VERSION}\): upgrade"
    with pytest.raises(ResultsError, match=newer):
        parse_summary(summary_dict(schema_version=SCHEMA_VERSION + 1), "s.json")
    with pytest.raises(ResultsError, match="not a summary: expected a JSON object"):
        parse_summary([1, 2], "s.json")
    broken = tmp_path / "invalid-on-purpose" / "summary.json"
    broken.parent.mkdir()
    broken.write_text("{")
    with pytest.raises(ResultsError, match=r"summary\.json:1: invalid JSON"):
        read_summary_file(broken)


def test_a_vendor_block_keeps_what_it_does_not_know() -> None:
    """Server-side phases come from a vendor's /metrics: a key the schema does not name is
    kept, not an error; the harness's own blocks refuse one."""
    phases = {"prefill": {"requests": 3, "total_s": 0.3, "mean_s": 0.1, "buckets": [1, 2]}}
    parsed = summary(server_metrics={"available": True, "phases": phases, "counters": {"x": 1.0}})
    phase = parsed.server_metrics.phases["prefill"]
    assert phase.requests == 3 and phase.model_extra == {"buckets": [1, 2]}
    assert parsed.to_json()["server_metrics"]["phases"]["prefill"]["buckets"] == [1, 2]
    reset = summary(server_metrics={"available": True, "phases": {"decode": {"reset": True}}})
    assert reset.server_metrics.phases["decode"].reset is True


def test_the_producer_refuses_a_figure_that_does_not_fit() -> None:
    """A NaN or a misspelt key from the harness's own code fails before anything is written."""
    produced = _produced()
    with pytest.raises(ValidationError, match="finite"):
        new_summary({**produced, "duration_s": float("nan")})
    with pytest.raises(ValidationError, match="extra"):
        new_summary({**produced, "run": {**produced["run"], "requests_snt": 1}})
    summary_model = new_summary(produced)
    with pytest.raises(ValidationError):
        summary_model.workers = {"requested": 0, "used": 1, "reason": "x"}  # type: ignore[assignment]


def test_figures_are_named_once() -> None:
    """Summary.figures() gives every FIGURES name and reads them off the blocks."""
    parsed = summary(
        energy=energy_block(gpu_energy_j=3000.0, gpu_source="nvml-power", avg_power_w=300.0),
        latency_split=split_block(),
        session_figures={
            "sessions": 1,
            "sessions_completed": 1,
            "session_latency_s": stats(1.0),
            "steps_per_session": stats(2.0),
            "tokens_per_session": stats(3.0),
            "sessions_per_hour": 7200.0,
        },
    )
    figures = parsed.figures()
    assert tuple(figures) == FIGURES
    assert figures["avg_power_w"] == 300.0 and figures["ttft_ms_p99"] == 40.0
    assert figures["sessions_per_s"] == pytest.approx(2.0)
    assert figures["cpu_share"] == pytest.approx(0.6)
    assert figures["tool_cpu_s_per_session"] is None  # no tool calls
    plain = summary().figures()
    assert plain["avg_power_w"] is None and plain["cpu_share"] is None


def test_the_steady_figures_are_read_off_energy_steady() -> None:
    """steady_* figures come from energy.steady; null where there is no steady window or no
    block (a summary of version 3 or older), never the whole run's."""
    steady = steady_block(avg_power_w=400.0, gpu_source="nvml-counter", j_per_output_token=4.0)
    figures = summary(energy=energy_block(avg_power_w=300.0, steady=steady)).figures()
    assert figures["steady_avg_power_w"] == 400.0 and figures["avg_power_w"] == 300.0
    assert figures["steady_j_per_output_token"] == 4.0
    assert figures["steady_output_throughput_tok_s"] == 100.0
    assert figures["steady_total_throughput_tok_s"] == 1100.0
    for energy in (
        energy_block(avg_power_w=300.0, steady=no_steady_block()),
        energy_block(avg_power_w=300.0),
    ):
        figures = summary(energy=energy).figures()
        assert all(figures[k] is None for k in figures if k.startswith("steady_"))
    old = parse_summary(summary_dict(schema_version=3, energy=energy_block()), "s.json")
    assert old.energy is not None and old.energy.steady is None
    with pytest.raises(ValidationError, match="reason"):
        summary(energy=energy_block(steady={**no_steady_block(), "reason": 3}))


def test_the_session_check_finds_misfits_and_leaves_out_those_broken_on_purpose(
    tmp_path: Path,
) -> None:
    """The check run after the last test (tests/conftest.py): a summary that does not fit is
    named, one under an `invalid-on-purpose` folder is left out."""
    good = tmp_path / "good" / "summary.json"
    good.parent.mkdir()
    good.write_text(json.dumps(summary_dict()))
    assert misfit_summaries(tmp_path) == []
    bad = tmp_path / "invalid-on-purpose" / "run" / "summary.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({**summary_dict(), "typo_s": 1.0}))
    assert misfit_summaries(tmp_path) == []
    # Written here but moved out of the left-out folder: the check names it.
    misfit = tmp_path / "misfit"
    bad.parent.rename(misfit)
    errors = misfit_summaries(tmp_path)
    assert errors == [f"{misfit / 'summary.json'}: invalid summary: unknown key 'typo_s'"]
    (misfit / "summary.json").unlink()  # leave nothing for the session's own check


def test_a_version_1_summary_still_reads_and_knows_less() -> None:
    """Version 2 only added keys, each with a default: a summary written by a harness of
    version 1 reads, with the load, chosen percentiles and flags unknown (null), not empty."""
    old = summary_dict(schema_version=1)
    for key in ("load", "percentiles", "timing_flags"):
        assert key not in old
    parsed = parse_summary(old, "v1/summary.json")
    assert parsed.schema_version == 1
    assert parsed.load is None and parsed.percentiles is None and parsed.timing_flags is None
    assert parsed.ttft_ms.min is None and parsed.ttft_ms.percentiles is None
    assert parsed.percentile_names() == ("p50", "p90", "p99")
    assert parsed.ttft_ms.percentile("p99") == 40.0 and parsed.ttft_ms.percentile("p95") is None


def test_what_a_run_now_writes_has_its_percentiles_flags_and_load(tmp_path: Path) -> None:
    produced = _produced()
    flags = produced["timing_flags"]
    assert flags and all(f["kind"] in ("few_samples", "token_bursts") for f in flags)
    load = {
        "pattern": "trace",
        "description": "trace timestamps × 1",
        "time_scale": 1.0,
        "rate_per_s": None,
        "concurrency": None,
        "max_concurrency": None,
        "max_requests": None,
        "duration_s": None,
        "warmup_requests": 0,
        "workers": 1,
        "trace_timing_replaced": False,
    }
    written = new_summary({**produced, "load": load}).to_json()
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(written))
    parsed = read_summary_file(path)
    assert parsed.percentiles == [50.0, 90.0, 95.0, 99.0]
    assert parsed.percentile_names() == ("p50", "p90", "p95", "p99")
    assert parsed.ttft_ms.percentiles is not None and "p95" in parsed.ttft_ms.percentiles
    assert parsed.load is not None and parsed.load.description == "trace timestamps × 1"
    jsonschema.Draft202012Validator(summary_schema()).validate(written)
    with pytest.raises(ResultsError, match=r"timing_flags\.0\.kind"):
        parse_summary({**written, "timing_flags": [{**flags[0], "kind": "odd"}]}, path)


@pytest.mark.parametrize(
    ("pattern", "figures", "words"),
    [
        ("trace", {"time_scale": 0.5}, "trace timestamps × 0.5"),
        ("trace", {}, "trace timestamps"),
        (
            "trace",
            {"time_scale": 0},
            "trace timestamps, sent as fast as the other limits allow (time scale 0)",
        ),
        ("poisson", {"rate_per_s": 5.0, "max_concurrency": 16}, "Poisson arrivals at 5 sessions/s"),
        ("constant", {}, "constant arrivals at an unrecorded rate"),
        ("closed", {"concurrency": 8}, "a closed loop of 8 concurrent sessions"),
        ("bursty", {}, "bursty"),
    ],
)
def test_arrivals_in_one_wording(pattern: str, figures: dict[str, Any], words: str) -> None:
    from harness.summary import describe_arrivals

    cap = figures.get("max_concurrency")
    tail = f", at most {cap} requests in flight" if cap else ""
    assert describe_arrivals(pattern, **figures) == words + tail
