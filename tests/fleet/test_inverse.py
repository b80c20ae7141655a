"""The inverse question: what a fixed facility power serves, by hand."""

from __future__ import annotations

import pytest
from fleet_builders import SCENARIOS_DIR, make_profile, make_scenario

from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_figures
from harness.fleet.profile import load_profile
from harness.fleet.scenario import load_scenario

INVERSE = {
    "tokens_per_day": None,
    "facility_power_mw": 1.5,
    "tokens_per_session": 1e5,
    "tool_cpu_s_per_session": 100.0,
    "cpu_cores_per_server": 4,
    "cpu_target_utilization": 0.5,
}


def test_inverse_by_hand(catalog: dict[str, Accelerator]) -> None:
    fig = fleet_figures(make_scenario(**INVERSE), make_profile(), catalog)
    inv = fig["inverse"]
    # IT budget = 1.5 MW / 1.5 = 1 MW; a server peaks at 8 × 500 + 1000 = 5,000 W → 200 servers
    assert inv["it_power_budget_mw"] == pytest.approx(1.0)
    assert inv["server_peak_w"] == 5000
    assert inv["servers"] == 200 and inv["gpus"] == 1600
    # tokens = 1,600 × 1,000 × 0.5 / 2 × 86,400 = 34.56e9 → 345,600 sessions of 1e5 tokens
    assert inv["sessions_per_day_gpu_bound"] == pytest.approx(345_600)
    # CPU: 200 × 4 cores × 0.5 × 86,400 s / 100 s = 345,600 sessions: a tie, GPU wins
    assert inv["sessions_per_day_cpu_bound"] == pytest.approx(345_600)
    assert inv["binding"] == "gpu"
    assert inv["tokens_per_day"] == pytest.approx(34.56e9)
    # the forward model at that demand needs exactly the campus's GPUs, at its peak power
    assert fig["gpus"] == 1600 and fig["servers"] == 200
    assert fig["facility_power_peak_mw"] == pytest.approx(1.5)
    assert fig["inputs"]["demand_basis"].startswith("no demand")


def test_inverse_bound_by_cpu(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(**{**INVERSE, "cpu_cores_per_server": 2})
    inv = fleet_figures(sc, make_profile(), catalog)["inverse"]
    # 200 × 2 × 0.5 × 86,400 / 100 = 172,800 sessions < 345,600 GPU-bound
    assert inv["binding"] == "cpu"
    assert inv["sessions_per_day"] == pytest.approx(172_800)
    assert inv["tokens_per_day"] == pytest.approx(17.28e9)


def test_inverse_without_power_is_null_with_reason(catalog: dict[str, Accelerator]) -> None:
    profile = make_profile(busy_w=None, unavailable={"busy_w": "no power measured"})
    fig = fleet_figures(make_scenario(**INVERSE), profile, catalog)
    assert fig["inverse"]["sessions_per_day"] is None
    assert fig["inverse"]["reasons"]["sessions_per_day"] == "no power measured"
    assert fig["gpus"] is None and "no power measured" in fig["reasons"]["gpus"]


def test_campus_serves_more_with_more_capacity_per_watt(catalog: dict[str, Accelerator]) -> None:
    sc = load_scenario(SCENARIOS_DIR / "campus-1gw.yaml")
    h200 = load_profile(SCENARIOS_DIR.parent / "profiles" / "h200-llama70b-fp8-trtllm.yaml")
    inv = fleet_figures(sc, h200, catalog)["inverse"]
    # 833.33 MW IT / 10,200 W per server = 81,699 servers, 653,592 GPUs;
    # 653,592 × 6,028 × 0.8 / 1.5 × 86,400 = 181.55e12 tokens → / 535,000 = 339.3e6 sessions
    assert inv["servers"] == 81_699 and inv["gpus"] == 653_592
    assert inv["sessions_per_day"] == pytest.approx(339.34e6, rel=1e-4)
