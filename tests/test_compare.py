"""Unit tests for harness.compare: figures from summaries and capacity.json, ratios to the
first run (hand-checked), n/a (never 0) where a figure is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from summary_builders import energy_block, split_block, stats, summary_dict

from harness.compare import (
    METRICS,
    comparison_json,
    comparison_sections,
    figures_from_capacity,
    figures_from_summary,
    fleet_comparison_section,
    ratio,
    ratios_to_first,
    run_entry,
    sweep_entry,
)
from harness.figures import MISSING, Section
from harness.summary import FIGURES, Summary


def _stats(p50: float, p90: float, p99: float) -> dict[str, Any]:
    return stats(p50, p90, p99)


def _summary_a() -> dict[str, Any]:
    """Baseline: no energy, no latency split."""
    return summary_dict(
        **{
            "request_throughput_rps": 2.0,
            "output_throughput_tok_s": 100.0,
            "total_throughput_tok_s": 1000.0,
            "ttft_ms": _stats(20.0, 30.0, 40.0),
            "tpot_ms": _stats(5.0, 6.0, 8.0),
            "itl_ms": _stats(4.0, 5.0, 10.0),
            "e2el_ms": _stats(200.0, 300.0, 400.0),
            "goodput_rps": 0.0,
            "slo_attainment": 0.5,
            "slo": {"ttft_ms": 100.0, "tpot_ms": 50.0},
        }
    )


def _summary_b() -> dict[str, Any]:
    """Faster run, with energy and a latency split; ITL missing."""
    return summary_dict(
        **{
            "request_throughput_rps": 3.0,
            "output_throughput_tok_s": 250.0,
            "total_throughput_tok_s": 1500.0,
            "ttft_ms": _stats(10.0, 15.0, 30.0),
            "tpot_ms": _stats(4.0, 5.0, 6.0),
            "e2el_ms": _stats(100.0, 150.0, 500.0),
            "goodput_rps": 1.5,
            "slo_attainment": 0.9,
            "itl_ms": stats(),
            "energy": energy_block(
                j_per_output_token=0.25,
                avg_power_w=300.0,
                gpu_energy_j=3000.0,
                gpu_source="nvml-counter",
            ),
            "latency_split": split_block(llm_s=4.0, tool_s=5.0, orchestration_s=1.0),
        }
    )


def _write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _load(path: Path) -> Summary:
    return Summary.model_validate_json(path.read_text())


@pytest.fixture
def entries(tmp_path: Path) -> list[Any]:
    """Two run entries built from summaries written to and read back from tmp_path."""
    a = _load(_write(tmp_path / "a" / "summary.json", _summary_a()))
    b = _load(_write(tmp_path / "b" / "summary.json", _summary_b()))
    manifest = {"workload": {"name": "chat"}, "server": {"model": "tiny"}}
    return [run_entry("a", "a", a, manifest), run_entry("b", "b", b, manifest)]


def test_ratio_is_none_where_a_side_is_missing_or_the_base_is_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(2.0, None) is None
    assert ratio(2.0, 0.0) is None


def test_figures_from_summary_flatten_and_keep_missing_as_none() -> None:
    figures = figures_from_summary(Summary.model_validate(_summary_b()))
    assert figures["ttft_ms_p99"] == 30.0
    assert figures["e2el_ms_p50"] == 100.0
    assert figures["j_per_output_token"] == 0.25
    assert figures["avg_power_w"] == 300.0
    assert figures["cpu_share"] == 0.6
    assert figures["itl_ms_p50"] is None
    assert figures["capacity_tok_s"] is None
    assert all(v is None for v in figures_from_summary(None).values())
    empty = Summary.model_validate(
        summary_dict(
            **{k: stats() for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")},
            request_throughput_rps=None,
            output_throughput_tok_s=None,
            total_throughput_tok_s=None,
            energy=energy_block(),
        )
    )
    assert all(v is None for v in figures_from_summary(empty).values())


def test_every_compared_run_figure_is_a_summary_figure() -> None:
    """A compared figure that is not a sweep's capacity is one of `Summary.figures()`'s
    names, so no metric is silently n/a for a misspelt key."""
    capacity = {m.key for m in METRICS if m.group.startswith("Capacity")}
    assert {m.key for m in METRICS} - capacity <= set(FIGURES)


def test_ratios_hand_checked(entries: list[Any]) -> None:
    base, other = ratios_to_first(entries)
    assert other["output_throughput_tok_s"] == pytest.approx(2.5)  # 250 / 100
    assert other["total_throughput_tok_s"] == pytest.approx(1.5)  # 1500 / 1000
    assert other["request_throughput_rps"] == pytest.approx(1.5)  # 3 / 2
    assert other["ttft_ms_p99"] == pytest.approx(0.75)  # 30 / 40
    assert other["tpot_ms_p50"] == pytest.approx(0.8)  # 4 / 5
    assert other["e2el_ms_p99"] == pytest.approx(1.25)  # 500 / 400
    assert other["slo_attainment"] == pytest.approx(1.8)  # 0.9 / 0.5
    # Baseline goodput 0: no ratio rather than an infinity; missing figures: no ratio.
    assert other["goodput_rps"] is None
    assert other["j_per_output_token"] is None
    assert other["itl_ms_p50"] is None
    assert base["output_throughput_tok_s"] == 1.0
    assert base["j_per_output_token"] is None


def _rows(sections: list[Section], title: str) -> dict[str, tuple[str, ...]]:
    (section,) = [s for s in sections if s.title == title]
    return {row[0]: row for row in section.rows}


def test_sections_show_values_ratios_and_na_never_zero(entries: list[Any]) -> None:
    sections = comparison_sections(entries)
    titles = [s.title for s in sections]
    assert titles[0] == "Compared runs"
    assert not any(t.startswith("Capacity") for t in titles)  # no sweep compared
    tput = _rows(sections, "Throughput")
    assert tput["Output throughput (tok/s)"] == (
        "Output throughput (tok/s)",
        "100.00",
        "250.00",
        "2.50×",
    )
    lat = _rows(sections, "Latency (ms)")
    assert lat["TTFT p99"] == ("TTFT p99", "40.00", "30.00", "0.75×")
    assert lat["ITL p50"] == ("ITL p50", "4.00", MISSING, MISSING)
    energy = _rows(sections, "Energy")
    assert energy["J per output token"] == ("J per output token", MISSING, "0.2500", MISSING)
    assert energy["Average GPU power (W)"] == ("Average GPU power (W)", MISSING, "300.0", MISSING)
    good = _rows(sections, "Goodput")
    assert good["Goodput (req/s)"] == ("Goodput (req/s)", "0.000", "1.500", MISSING)
    assert good["SLO attainment"] == ("SLO attainment", "50.0 %", "90.0 %", "1.80×")
    split = _rows(sections, "Latency split (CPU vs GPU)")
    assert split["CPU share (tools + orchestration)"][1:] == (MISSING, "60.0 %", MISSING)
    header = next(s for s in sections if s.title == "Throughput").headers
    assert header == ("metric", "a", "b", "b / a")
    runs = _rows(sections, "Compared runs")
    assert runs["a"] == ("a", "run", "chat", "tiny", "", "TTFT <= 100 ms, TPOT <= 50 ms")


def _capacity(meets: bool = True) -> dict[str, Any]:
    points = [
        {
            "load": 1.0,
            "run_dir": "load-1",
            "request_throughput_rps": 1.0,
            "output_throughput_tok_s": 50.0,
            "total_throughput_tok_s": 500.0,
            "goodput_rps": 1.0,
            "slo_attainment": 1.0,
            "ttft_ms_p50": 10.0,
            "ttft_ms_p99": 20.0,
            "tpot_ms_p50": 2.0,
            "tpot_ms_p99": 3.0,
            "e2el_ms_p50": 100.0,
            "e2el_ms_p99": 150.0,
            "avg_gpu_power_w": None,
            "j_per_output_token": None,
            "meets_slo": True,
        },
        {
            "load": 2.0,
            "run_dir": "load-2",
            "request_throughput_rps": 1.8,
            "output_throughput_tok_s": 90.0,
            "total_throughput_tok_s": 900.0,
            "goodput_rps": 1.7,
            "slo_attainment": 0.95,
            "ttft_ms_p50": 15.0,
            "ttft_ms_p99": 40.0,
            "tpot_ms_p50": 3.0,
            "tpot_ms_p99": 5.0,
            "e2el_ms_p50": 150.0,
            "e2el_ms_p99": 250.0,
            "avg_gpu_power_w": 250.0,
            "j_per_output_token": 0.5,
            "meets_slo": True,
        },
    ]
    capacity = {
        "load": 2.0 if meets else None,
        "run_dir": "load-2" if meets else None,
        "devices": 1,
        "device_kind": "gpu",
        "accelerator": None,
        "capacity_tok_s": 900.0 if meets else None,
        "capacity_output_tok_s": 90.0 if meets else None,
        "capacity_requests_s": 1.8 if meets else None,
        "capacity_sessions_s": None,
        "busy_w": 250.0 if meets else None,
        "busy_w_source": "nvml-counter",
        "idle_w": 60.0,
        "tool_cpu_s_per_session": None,
    }
    return {
        "kind": "harness-capacity",
        "schema_version": 1,
        "name": "sweep",
        "workload": "chat",
        "load_kind": "rate",
        "slo": {"ttft_ms": 100.0, "tpot_ms": 50.0, "e2el_ms": None},
        "slo_target_attainment": 0.9,
        "points": points,
        "saturated": True,
        "stopped_early": False,
        "capacity": capacity,
        "model": {"name": "tiny", "n_params": None},
    }


def test_sweep_uses_its_capacity_point_and_fills_gaps_from_it() -> None:
    point_summary = summary_dict(
        ttft_ms=_stats(14.0, 30.0, 41.0),
        itl_ms=_stats(1.0, 2.0, 3.0),
        tpot_ms=stats(),
        request_throughput_rps=None,
        output_throughput_tok_s=None,
        total_throughput_tok_s=None,
    )
    figures = figures_from_capacity(_capacity(), Summary.model_validate(point_summary))
    assert figures["ttft_ms_p99"] == 41.0  # the point run's own summary wins
    assert figures["itl_ms_p90"] == 2.0  # only the summary has ITL
    assert figures["total_throughput_tok_s"] == 900.0  # from the capacity point
    assert figures["avg_power_w"] == 250.0
    assert figures["capacity_tok_s"] == 900.0
    assert figures["idle_w"] == 60.0
    assert figures["capacity_sessions_s"] is None
    assert figures["tpot_ms_p90"] is None  # neither source has it


def test_sweep_without_capacity_point_is_na_with_a_note(entries: list[Any]) -> None:
    entry = sweep_entry("s", "s", _capacity(meets=False))
    assert entry.load is None
    assert entry.figures["total_throughput_tok_s"] is None
    assert entry.figures["idle_w"] == 60.0
    assert entry.notes and "no load point met the SLO" in entry.notes[0]
    assert len(entry.points) == 2
    sections = comparison_sections([entries[0], entry])
    cap = _rows(sections, "Capacity at the SLO (sweeps, per device)")
    assert cap["Capacity, input + output (tok/s)"][1:] == (MISSING, MISSING, MISSING)
    assert _rows(sections, "Compared runs")["s"][4] == MISSING


def test_comparison_json_holds_figures_ratios_and_nulls(entries: list[Any]) -> None:
    sweep = sweep_entry("s", "path/s", _capacity())
    doc = comparison_json([*entries, sweep], fleet=None)
    text = json.dumps(doc, allow_nan=False)  # strictly valid JSON
    assert json.loads(text)["kind"] == "harness-comparison"
    assert doc["baseline"] == "a"
    runs = {r["name"]: r for r in doc["runs"]}
    assert runs["s"]["kind"] == "sweep" and runs["s"]["load_at_capacity"] == 2.0
    assert runs["s"]["ratios_to_baseline"]["total_throughput_tok_s"] == pytest.approx(0.9)
    assert runs["b"]["figures"]["itl_ms_p50"] is None
    assert runs["b"]["ratios_to_baseline"]["j_per_output_token"] is None
    assert doc["fleet"] is None
    assert {m["key"] for m in doc["metrics"]} >= {"ttft_ms_p99", "j_per_output_token"}


def test_fleet_section_ratios() -> None:
    section = fleet_comparison_section(
        "30T",
        {
            "gen1": {"gpus": 1000, "it_power_avg_mw": 1.0, "cpu_cores_needed": None},
            "gen2": {"gpus": 250, "it_power_avg_mw": 0.5, "cpu_cores_needed": 12},
        },
    )
    rows = {r[0]: r for r in section.rows}
    assert section.title == "Fleet for scenario 30T"
    assert rows["GPUs"] == ("GPUs", "1,000", "250", "0.25×")
    assert rows["IT power, average (MW)"] == ("IT power, average (MW)", "1.000", "0.500", "0.50×")
    assert rows["CPU cores needed"] == ("CPU cores needed", MISSING, "12", MISSING)
    assert rows["Servers"] == ("Servers", MISSING, MISSING, MISSING)


def test_each_compared_run_has_its_settings_beside_it(entries: list[Any]) -> None:
    from harness.compare import run_settings, settings_section, sweep_entry

    manifest = {
        "replay": {"pattern": "poisson", "rate_per_s": 5.0, "max_concurrency": 8},
        "workload": {"request": {"api": "chat"}},
        "server": {"base_url": "http://h:8000", "server_version": "0.9.2"},
        "host": {"cpu_model": "EPYC", "cpu_logical_cores": 16},
    }
    settings = run_settings(manifest)
    # A summary without `load` (schema 1): the manifest's arrivals, in the summary's words.
    assert settings["arrivals"] == "Poisson arrivals at 5 sessions/s, at most 8 requests in flight"
    assert settings["max concurrency"] == "8" and settings["API"] == "chat"
    assert settings["server"] == "http://h:8000 vLLM 0.9.2" and "routing" not in settings
    replicas = [{"base_url": "http://h:8000"}, {"base_url": "http://g:8000"}]
    several = {
        **manifest,
        "server": {**manifest["server"], "replicas": replicas, "launch": {"kind": "replicas"}},
        "workload": {"routing": "session-affinity"},
    }
    routed = run_settings(several)
    assert routed["server"] == "2 replicas from http://h:8000 vLLM 0.9.2"
    assert routed["routing"] == "session-affinity"
    sweep = sweep_entry("s", "s", _capacity())
    assert sweep.settings["load ladder"].startswith("rate: ")
    entries = [*entries, sweep]
    entries[0].settings = settings
    section = settings_section(entries)
    assert section.headers == ("setting", *(e.name for e in entries))
    rows = {r[0]: r[1:] for r in section.rows}
    assert rows["arrivals"][0] == settings["arrivals"] and rows["arrivals"][2] == MISSING
    titles = [s.title for s in comparison_sections(entries)]
    assert titles[:2] == ["Compared runs", "Settings of each run"]


def test_a_runs_arrivals_are_its_summarys_load_where_it_has_one(tmp_path: Path) -> None:
    """summary.load.description is the arrivals setting; the manifest is only the fallback."""
    load = {
        "pattern": "poisson",
        "description": "Poisson arrivals at 5 sessions/s (from the summary)",
        "time_scale": None,
        "rate_per_s": 5.0,
        "concurrency": None,
        "max_concurrency": None,
        "max_requests": None,
        "duration_s": None,
        "warmup_requests": 0,
        "workers": 1,
        "trace_timing_replaced": True,
        "note": "--rate 5 replaced the trace's own timestamps",
    }
    summary = _load(_write(tmp_path / "s.json", {**_summary_a(), "load": load}))
    manifest = {"replay": {"pattern": "trace", "time_scale": 1.0}}
    entry = run_entry("a", "a", summary, manifest)
    assert entry.settings["arrivals"] == load["description"]
    older = run_entry("b", "b", _load(_write(tmp_path / "o.json", _summary_a())), manifest)
    assert older.settings["arrivals"] == "trace timestamps × 1"
