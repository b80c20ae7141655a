"""End-to-end tests of `harness compare` on run directories written into tmp_path: two plain
runs and a sweep (capacity.json with its load-point runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from summary_builders import energy_block, stats, summary_dict

from harness.cli import main

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _stats(p50: float, p99: float) -> dict[str, Any]:
    return stats(p50, (p50 + p99) / 2, p99, count=4)


def _summary(scale: float, energy: bool = False) -> dict[str, Any]:
    return summary_dict(
        requests_completed=4,
        requests_failed=0,
        request_throughput_rps=2.0 * scale,
        output_throughput_tok_s=100.0 * scale,
        total_throughput_tok_s=1000.0 * scale,
        ttft_ms=_stats(20.0 / scale, 40.0 / scale),
        tpot_ms=_stats(5.0, 8.0),
        itl_ms=_stats(4.0, 10.0),
        e2el_ms=_stats(200.0, 400.0),
        slo={"ttft_ms": 100.0, "tpot_ms": 50.0},
        goodput_rps=2.0 * scale,
        slo_attainment=1.0,
        energy=(
            energy_block(
                j_per_output_token=0.5,
                avg_power_w=300.0,
                gpu_energy_j=300.0,
                gpu_source="nvml-counter",
            )
            if energy
            else None
        ),
    )


def _write_run(run_dir: Path, summary: dict[str, Any]) -> Path:
    run_dir.mkdir(parents=True)
    manifest = {"run_name": run_dir.name, "workload": {"name": "chat"}, "server": {"model": "m"}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _point(load: float, scale: float, meets: bool) -> dict[str, Any]:
    s = _summary(scale)
    return {
        "load": load,
        "run_dir": f"load-{load:g}",
        "requests_completed": 4,
        "requests_failed": 0,
        "request_throughput_rps": s["request_throughput_rps"],
        "output_throughput_tok_s": s["output_throughput_tok_s"],
        "total_throughput_tok_s": s["total_throughput_tok_s"],
        "goodput_rps": s["goodput_rps"],
        "slo_attainment": 1.0 if meets else 0.5,
        "sessions_per_s": None,
        "ttft_ms_p50": s["ttft_ms"]["p50"],
        "ttft_ms_p99": s["ttft_ms"]["p99"] if meets else 500.0,
        "tpot_ms_p50": 5.0,
        "tpot_ms_p99": 8.0,
        "e2el_ms_p50": 200.0,
        "e2el_ms_p99": 400.0,
        "avg_gpu_power_w": None,
        "j_per_output_token": None,
        "meets_slo": meets,
    }


def _write_sweep(
    sweep_dir: Path, capacity_tok_s: float = 2000.0, busy_w: float | None = None
) -> Path:
    """A sweep of three rates; capacity at rate 2 (whose run has its own summary.json)."""
    sweep_dir.mkdir(parents=True)
    points = [_point(1.0, 1.0, True), _point(2.0, 2.0, True), _point(4.0, 3.0, False)]
    for point, scale in zip(points, (1.0, 2.0, 3.0), strict=True):
        _write_run(sweep_dir / point["run_dir"], _summary(scale))
    capacity = {
        "kind": "harness-capacity",
        "schema_version": 1,
        "name": sweep_dir.name,
        "workload": "chat",
        "load_kind": "rate",
        "slo": {"ttft_ms": 100.0, "tpot_ms": 50.0, "e2el_ms": None},
        "slo_target_attainment": 0.9,
        "points": points,
        "saturated": True,
        "stopped_early": True,
        "capacity": {
            "load": 2.0,
            "run_dir": "load-2",
            "devices": 1,
            "device_kind": "cpu",
            "accelerator": None,
            "capacity_tok_s": capacity_tok_s,
            "capacity_output_tok_s": 200.0,
            "capacity_requests_s": 4.0,
            "capacity_sessions_s": None,
            "busy_w": busy_w,
            "busy_w_source": "unavailable" if busy_w is None else "nvml-counter",
            "idle_w": None if busy_w is None else 50.0,
            "tool_cpu_s_per_session": None,
        },
        "model": {
            "name": "m",
            "n_params": None,
            "n_layers": None,
            "d_model": None,
            "d_attn": None,
            "mean_context_tok": None,
        },
        "host": {"cpu_model": "test", "cpu_logical_cores": 2},
    }
    (sweep_dir / "capacity.json").write_text(json.dumps(capacity))
    return sweep_dir


def test_compare_two_runs_and_a_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_run(tmp_path / "runs" / "base", _summary(1.0))
    b = _write_run(tmp_path / "runs" / "fast", _summary(2.0, energy=True))
    sweep = _write_sweep(tmp_path / "runs" / "sweep-x")
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), str(sweep), "--out", str(out)]) == 0
    console = capsys.readouterr().out
    assert "Throughput" in console and "compare.json" in console

    doc = json.loads((out / "compare.json").read_text())
    assert doc["kind"] == "harness-comparison" and doc["baseline"] == "base"
    runs = {r["name"]: r for r in doc["runs"]}
    assert list(runs) == ["base", "fast", "sweep-x"]
    assert runs["fast"]["ratios_to_baseline"]["output_throughput_tok_s"] == pytest.approx(2.0)
    assert runs["fast"]["ratios_to_baseline"]["ttft_ms_p99"] == pytest.approx(0.5)
    # Energy only in "fast": the baseline's is null, so is the ratio (never 0).
    assert runs["base"]["figures"]["j_per_output_token"] is None
    assert runs["fast"]["figures"]["j_per_output_token"] == 0.5
    assert runs["fast"]["ratios_to_baseline"]["j_per_output_token"] is None
    # The sweep is represented by its capacity point (rate 2, twice the baseline).
    assert runs["sweep-x"]["kind"] == "sweep"
    assert runs["sweep-x"]["load_at_capacity"] == 2.0
    assert runs["sweep-x"]["figures"]["total_throughput_tok_s"] == 2000.0
    assert runs["sweep-x"]["figures"]["itl_ms_p50"] == 4.0  # from the point's summary.json
    assert runs["sweep-x"]["figures"]["capacity_tok_s"] == 2000.0
    assert runs["sweep-x"]["figures"]["busy_w"] is None
    assert doc["fleet"] is None

    md = (out / "compare.md").read_text()
    assert md.startswith("# Comparison: base vs fast vs sweep-x")
    assert "(throughput_latency.png)" in md and "(ratios.png)" in md
    assert "| Output throughput (tok/s) | 100.00 | 200.00 | 2.00× | 200.00 | 2.00× |" in md
    assert "| J per output token | n/a | 0.5000 | n/a | n/a | n/a |" in md
    assert "## Capacity at the SLO (sweeps, per device)" in md
    assert "| 0.00 |" not in md and "| 0 |" not in md

    html_page = (out / "compare.html").read_text()
    assert html_page.count("<img ") == 2
    assert "http://" not in html_page and "https://" not in html_page
    for png in ("throughput_latency.png", "ratios.png"):
        assert (out / png).read_bytes().startswith(_PNG_MAGIC)


def test_default_out_is_comparison_beside_the_first_run(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", _summary(1.0))
    b = _write_run(tmp_path / "b", _summary(1.5))
    assert main(["compare", str(a), str(b), "--x-axis", "output"]) == 0
    assert {p.name for p in (tmp_path / "comparison").iterdir()} == {
        "compare.md",
        "compare.html",
        "compare.json",
        "ratios.png",
    }


def test_duplicate_names_get_their_parent(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "gen1" / "run", _summary(1.0))
    b = _write_run(tmp_path / "gen2" / "run", _summary(1.5))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert [r["name"] for r in doc["runs"]] == ["gen1/run", "gen2/run"]


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def test_errors_are_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_run(tmp_path / "a", _summary(1.0))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "manifest.json").write_text("{}")
    assert main(["compare", str(a), str(unfinished)]) == 2
    assert "no summary.json" in _err(capsys)
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    bad = tmp_path / "bad-sweep"
    bad.mkdir()
    (bad / "capacity.json").write_text('{"kind": "other"}')
    assert main(["compare", str(a), str(bad)]) == 2
    assert "not a harness-capacity file" in _err(capsys)
    assert main(["compare", str(a), "--profile-from-runs"]) == 2
    assert "need --scenario" in _err(capsys)


_SCENARIO = """\
name: test-30T
tokens_per_day: 30.0e12
peak_to_average: 2.0
headroom: 0.8
pue: 1.2
gpus_per_server: 8
server_other_w: 2000
"""


def test_fleet_figures_for_a_scenario_from_the_sweeps(tmp_path: Path) -> None:
    base = _write_run(tmp_path / "base", _summary(1.0))
    gen1 = _write_sweep(tmp_path / "gen1", capacity_tok_s=2000.0)
    gen2 = _write_sweep(tmp_path / "gen2", capacity_tok_s=4000.0, busy_w=300.0)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO)
    out = tmp_path / "o"
    args = ["compare", str(base), str(gen1), str(gen2), "--out", str(out)]
    assert main([*args, "--scenario", str(scenario), "--profile-from-runs"]) == 0
    doc = json.loads((out / "compare.json").read_text())
    profiles = doc["fleet"]["profiles"]
    assert list(profiles) == ["gen1", "gen2"]  # the plain run gives no profile
    # gpus = ceil(30e12 / 86400 * 2 / (capacity * 0.8)): 434,028 and 217,014.
    assert profiles["gen1"]["gpus"] == 434_028
    assert profiles["gen2"]["gpus"] == 217_014
    assert profiles["gen1"]["it_power_avg_mw"] is None  # no measured power: null, never 0
    assert doc["fleet"]["scenario"]["name"] == "test-30T"
    md = (out / "compare.md").read_text()
    assert "base is a single run, not a sweep: no fleet profile." in md
    assert "## Fleet for scenario test-30T" in md
    assert "| GPUs | 434,028 | 217,014 | 0.50× |" in md
    assert "| IT power, average (MW) | n/a | 86.806 | n/a |" in md
    assert "## Assumptions" in md
    html_page = (out / "compare.html").read_text()
    assert "Fleet for scenario test-30T" in html_page


def test_scenario_needs_profiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _write_run(tmp_path / "base", _summary(1.0))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO)
    assert main(["compare", str(base), "--scenario", str(scenario)]) == 2
    assert "--profile-from-runs" in _err(capsys)
    assert main(["compare", str(base), "--scenario", str(scenario), "--profile-from-runs"]) == 2
    assert "none of the compared runs is a sweep" in _err(capsys)
    gen = _write_sweep(tmp_path / "gen", capacity_tok_s=4000.0, busy_w=300.0)
    out = tmp_path / "o"
    cmd = ["compare", str(base), "--out", str(out), "--scenario", str(scenario)]
    assert main([*cmd, "--profile", str(gen)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    assert list(doc["fleet"]["profiles"]) == ["gen"]


def test_a_profile_name_twice_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two sweeps whose capacity.json share a name give one profile name twice: an error, as
    in `harness fleet`, not a renamed copy."""
    gen1 = _write_sweep(tmp_path / "gen1" / "sweep")
    gen2 = _write_sweep(tmp_path / "gen2" / "sweep", capacity_tok_s=4000.0)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO)
    fleet = ["--out", str(tmp_path / "o"), "--scenario", str(scenario)]
    assert main(["compare", str(gen1), str(gen2), *fleet, "--profile-from-runs"]) == 2
    assert "key 'name': profile 'sweep' is also in" in _err(capsys)
    # The same sweep compared and passed with --profile: its profile twice.
    assert main(["compare", str(gen1), *fleet, "--profile-from-runs", "--profile", str(gen1)]) == 2
    assert "is also in" in _err(capsys)
    assert main(["compare", str(gen1), *fleet, "--profile", str(gen1)]) == 0


_CATALOG = """\
accelerators:
  X1:
    board_power_w: 500
    hbm_gb: 96
    hbm_bandwidth_tb_s: 3.0
    bf16_dense_tflops: 500
    fp8_dense_tflops: null
    source: test
"""


def test_a_profile_accelerator_must_be_in_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in `harness fleet`: a sweep matched against an extra catalog needs that --catalog."""
    gen = _write_sweep(tmp_path / "gen", busy_w=300.0)
    capacity = json.loads((gen / "capacity.json").read_text())
    capacity["capacity"]["accelerator"] = "X1"
    (gen / "capacity.json").write_text(json.dumps(capacity))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(_CATALOG)
    cmd = ["compare", str(gen), "--out", str(tmp_path / "o"), "--scenario", str(scenario)]
    assert main([*cmd, "--profile-from-runs"]) == 2
    assert "key 'accelerator': 'X1' is not in the catalog" in _err(capsys)
    assert main([*cmd, "--profile-from-runs", "--catalog", str(catalog)]) == 0
    doc = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert doc["fleet"]["profiles"]["gen"]["accelerator"] == "X1"
    assert main(["compare", str(gen), "--catalog", str(catalog)]) == 2
    assert "--catalog needs --scenario" in _err(capsys)
