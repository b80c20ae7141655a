"""The default fleet model against hand-computed figures, unit consistency, monotonicity,
CPU cores and null figures with reasons."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fleet_builders import PROFILES_DIR, SCENARIOS_DIR, make_profile, make_scenario

from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_figures, fleet_study
from harness.fleet.profile import load_profile
from harness.fleet.scenario import load_scenario


def test_hand_computed_example(catalog: dict[str, Accelerator]) -> None:
    fig = fleet_figures(make_scenario(), make_profile(), catalog)
    # avg_tok_s = 864e6 / 86400 = 10,000; gpus = ceil(10,000 × 2 / (1,000 × 0.5)) = 40
    assert fig["gpus"] == 40
    # servers = ceil(40 / 8) = 5
    assert fig["servers"] == 5
    # average load = 10,000 / (40 × 1,000) = 0.25
    assert fig["avg_load_fraction"] == pytest.approx(0.25)
    # GPU J/day = 40 × 100 × 86400 + 864e6 × (500 − 100) / 1000 = 345.6e6 + 345.6e6 = 691.2e6
    assert fig["gpu_energy_mwh_per_day"] == pytest.approx(691.2e6 / 3.6e9)
    # IT J/day = 691.2e6 + 5 × 1000 × 86400 = 691.2e6 + 432e6 = 1,123.2e6 J = 0.312 MWh
    assert fig["it_energy_mwh_per_day"] == pytest.approx(0.312)
    # average IT power = 0.312 MWh / 24 h = 0.013 MW; facility × 1.5 = 0.0195 MW
    assert fig["it_power_avg_mw"] == pytest.approx(0.013)
    assert fig["facility_power_avg_mw"] == pytest.approx(0.0195)
    # peak IT = (40 × 500 + 5 × 1000) W = 25,000 W = 0.025 MW; facility × 1.5 = 0.0375 MW
    assert fig["it_power_peak_mw"] == pytest.approx(0.025)
    assert fig["facility_power_peak_mw"] == pytest.approx(0.0375)
    # facility GWh/year = 0.312 × 1.5 × 365 / 1000 = 0.17082
    assert fig["facility_energy_gwh_per_year"] == pytest.approx(0.17082)
    # J per token = 1,123.2e6 J / 864e6 tokens = 1.3
    assert fig["it_energy_j_per_token"] == pytest.approx(1.3)
    assert fig["inputs"]["avg_tok_s"] == pytest.approx(10_000)
    assert fig["inputs"]["capacity_tok_s"] == 1000.0
    assert fig["inputs"]["demand_basis"] == "tokens_per_day as stated"


def test_h200_at_30t_by_hand(catalog: dict[str, Accelerator]) -> None:
    fig = fleet_figures(
        make_scenario(tokens_per_day=30e12, peak_to_average=1.5, headroom=0.8, pue=1.56),
        load_profile(PROFILES_DIR / "h200-llama70b-fp8-trtllm.yaml"),
        catalog,
    )
    # 30e12 / 86400 = 347,222.2 tok/s; × 1.5 / (6,028 × 0.8) = 108,002.93 → 108,003 GPUs
    assert fig["gpus"] == 108_003
    # ceil(108,003 / 8) = 13,501 servers
    assert fig["servers"] == 13_501
    # peak IT = 108,003 × 700 + 13,501 × 1000 (this scenario's other W) = 89.1031 MW
    assert fig["it_power_peak_mw"] == pytest.approx(89.1031)


def test_exact_quotient_is_not_rounded_up_by_float_noise(catalog: dict[str, Accelerator]) -> None:
    # demand for exactly 7 GPUs: avg = 0.1 × 0.9 × 7 / 1.5 tok/s; in floating point the
    # quotient avg × 1.5 / (0.1 × 0.9) comes out 7.000000000000001, a plain ceil would give 8
    tokens = 0.1 * 0.9 * 7 / 1.5 * 86400
    sc = make_scenario(tokens_per_day=tokens, peak_to_average=1.5, headroom=0.9)
    assert (tokens / 86400) * 1.5 / (0.1 * 0.9) > 7
    assert fleet_figures(sc, make_profile(capacity_tok_s=0.1), catalog)["gpus"] == 7


SHIPPED = sorted(PROFILES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("profile_path", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("scenario_name", ["china-30t", "china-60t", "chatbot-to-agent-mix"])
def test_units_are_consistent(
    profile_path: Any, scenario_name: str, catalog: dict[str, Accelerator]
) -> None:
    sc = load_scenario(SCENARIOS_DIR / f"{scenario_name}.yaml")
    fig = fleet_figures(sc, load_profile(profile_path), catalog)
    # MWh per day = average MW × 24 h; GWh per year = facility MW × 24 × 365 / 1000
    assert fig["it_energy_mwh_per_day"] == pytest.approx(fig["it_power_avg_mw"] * 24)
    assert fig["facility_energy_gwh_per_year"] == pytest.approx(
        fig["facility_power_avg_mw"] * 24 * 365 / 1000
    )
    assert fig["facility_power_avg_mw"] == pytest.approx(fig["it_power_avg_mw"] * sc.pue)
    # the average never exceeds the peak, and the GPUs never run above the planned headroom
    assert fig["it_power_avg_mw"] <= fig["it_power_peak_mw"]
    assert fig["avg_load_fraction"] * sc.peak_to_average <= sc.headroom + 1e-12
    # J per token × tokens per day = IT energy per day (J)
    tokens = fig["inputs"]["tokens_per_day"]
    assert fig["it_energy_j_per_token"] * tokens == pytest.approx(
        fig["it_energy_mwh_per_day"] * 3.6e9
    )


DEMANDS = [0.0, 1.0, 86_400.0, 1e9, 3.3e11, 1e12, 3e13, 6e13, 1.4e14, 1e15]


@pytest.mark.parametrize(
    ("peak_to_average", "headroom", "capacity_tok_s"),
    list(itertools.product([1.0, 1.5, 3.0], [0.3, 0.8, 1.0], [7.0, 1000.0, 6028.0])),
)
def test_more_demand_never_needs_fewer_cards_or_less_power(
    peak_to_average: float,
    headroom: float,
    capacity_tok_s: float,
    catalog: dict[str, Accelerator],
) -> None:
    profile = make_profile(capacity_tok_s=capacity_tok_s)
    previous: dict[str, Any] | None = None
    for tokens in DEMANDS:
        sc = make_scenario(
            tokens_per_day=tokens, peak_to_average=peak_to_average, headroom=headroom
        )
        fig = fleet_figures(sc, profile, catalog)
        if previous is not None:
            for key in ("gpus", "servers", "it_power_peak_mw", "it_energy_mwh_per_day"):
                assert fig[key] >= previous[key], (key, tokens)
        previous = fig
    assert previous is not None and previous["gpus"] > 0


def test_zero_demand_needs_no_cards(catalog: dict[str, Accelerator]) -> None:
    fig = fleet_figures(make_scenario(tokens_per_day=0.0), make_profile(), catalog)
    assert fig["gpus"] == 0 and fig["servers"] == 0 and fig["it_power_peak_mw"] == 0
    assert fig["it_energy_j_per_token"] is None and "it_energy_j_per_token" in fig["reasons"]


def test_cpu_cores_for_agent_sessions(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(
        tokens_per_day=None,
        sessions_per_day=86_400.0,
        tokens_per_session=10_000.0,
        cpu_target_utilization=0.5,
        cpu_cores_per_server=4,
        tool_cpu_s_per_session=2.0,
    )
    fig = fleet_figures(sc, make_profile(), catalog)
    # tokens = 86,400 × 10,000 = 864e6 → 40 GPUs, 5 servers as in the hand example
    assert fig["gpus"] == 40 and fig["servers"] == 5
    # cores = 2 s × 86,400 sessions / 86,400 s / 0.5 = 4; the servers bring 5 × 4 = 20
    assert fig["cpu_cores_needed"] == pytest.approx(4.0)
    assert fig["cpu_cores_available"] == 20
    assert fig["cpu_cores_sufficient"] is True
    assert fig["inputs"]["tool_cpu_s_per_session_from"] == "scenario"
    # cores follow the daily average, GPUs the peak: listed, with what the peak does to them
    cpu_line = next(a for a in fig["assumptions"] if a.startswith("model: CPU cores"))
    assert "daily average session rate" in cpu_line and "sized for the peak" in cpu_line
    assert cpu_line.endswith("at the peak (2× the average) tool work would keep those cores "
                             "100% busy, not the planned 50%")  # fmt: skip


def test_cpu_cores_take_the_profiles_tool_seconds(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(
        tokens_per_day=None,
        sessions_per_day=43_200.0,
        tokens_per_session=20_000.0,
        cpu_target_utilization=1.0,
    )
    fig = fleet_figures(sc, make_profile(tool_cpu_s_per_session=8.0), catalog)
    # 8 s × 43,200 / 86,400 / 1.0 = 4 cores; no cores per server given → available is null
    assert fig["cpu_cores_needed"] == pytest.approx(4.0)
    assert fig["cpu_cores_available"] is None
    assert fig["reasons"]["cpu_cores_available"] == "scenario gives no cpu_cores_per_server"
    assert fig["cpu_cores_sufficient"] is None


def test_cpu_cores_are_null_with_a_reason_without_sessions(
    catalog: dict[str, Accelerator],
) -> None:
    fig = fleet_figures(make_scenario(), make_profile(), catalog)
    assert fig["cpu_cores_needed"] is None
    assert "no agent sessions" in fig["reasons"]["cpu_cores_needed"]
    assert not any(a.startswith("model: CPU cores") for a in fig["assumptions"])


def test_missing_idle_power_leaves_peak_but_nulls_energy(catalog: dict[str, Accelerator]) -> None:
    profile = make_profile(idle_w=None, unavailable={"idle_w": "no idle baseline"})
    fig = fleet_figures(make_scenario(), profile, catalog)
    assert fig["gpus"] == 40
    assert fig["it_power_peak_mw"] == pytest.approx(0.025)
    for key in ("it_energy_mwh_per_day", "it_power_avg_mw", "facility_energy_gwh_per_year"):
        assert fig[key] is None
        assert fig["reasons"][key] == "no idle baseline"


def test_missing_capacity_nulls_everything_with_the_reason(
    catalog: dict[str, Accelerator],
) -> None:
    fig = fleet_figures(make_scenario(), make_profile(capacity_tok_s=None), catalog)
    for key in ("gpus", "servers", "it_power_peak_mw", "it_power_avg_mw"):
        assert fig[key] is None
        assert fig["reasons"][key] == "profile 'hand-gpu' gives no capacity_tok_s"


def test_assumptions_list_scenario_profile_and_model(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(assumptions=["pue 1.5: a test"])
    fig = fleet_figures(sc, make_profile(assumptions=["busy_w: a test"]), catalog)
    assert "scenario: pue 1.5: a test" in fig["assumptions"]
    assert "profile hand-gpu: busy_w: a test" in fig["assumptions"]
    assert any(a.startswith("model: GPU power is linear") for a in fig["assumptions"])


def test_sweep_rows_follow_the_parameter(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(
        tokens_per_day=None,
        mix={
            "users_per_day": 1e6,
            "chatbot_tokens_per_user_day": 864.0,
            "agent_share": 0.5,
            "agent_token_multiplier": 1.0,
        },
        sweep={"parameter": "mix.agent_token_multiplier", "values": [1, 3, 100]},
    )
    fig = fleet_figures(sc, make_profile(), catalog)
    rows = fig["sweep"]["rows"]
    assert [r["value"] for r in rows] == [1, 3, 100]
    # tokens = 1e6 × 864 × (0.5 + 0.5 × M): 864e6, 1,728e6, 43,632e6
    assert [r["tokens_per_day"] for r in rows] == pytest.approx([864e6, 1728e6, 43632e6])
    # gpus = ceil(tokens / 86400 × 2 / 500): 40, 80, 2,020
    assert [r["gpus"] for r in rows] == [40, 80, 2020]
    assert fig["gpus"] == 40  # the base scenario (multiplier 1)
    # no model shape: the FLOPs-rule columns are null, each with its reason
    for row in rows:
        assert row["flops_gpus"] is None and row["flops_gpus_peak_basis"] is None
        assert row["reasons"]["flops_gpus"] and row["reasons"]["flops_gpus_peak_basis"]


def test_sweep_rows_carry_the_flops_rule_on_both_bases(catalog: dict[str, Accelerator]) -> None:
    shape = {"n_params": 1e9, "n_layers": 1, "d_attn": 1, "n_ctx": 0}
    sc = make_scenario(
        model=shape,
        flops_utilization=1000.0 * 2e9 / 989e12,  # the profile's implied MFU
        sweep={"parameter": "tokens_per_day", "values": [864e6, 1728e6]},
    )
    rows = fleet_figures(sc, make_profile(model=shape), catalog)["sweep"]["rows"]
    # average load: 10 and 20 cards; × peak_to_average 2 / headroom 0.5: 40 and 80 = gpus
    assert [r["flops_gpus"] for r in rows] == pytest.approx([10.0, 20.0])
    assert [r["flops_gpus_peak_basis"] for r in rows] == pytest.approx([40.0, 80.0])
    assert [r["gpus"] for r in rows] == [40, 80]


def test_fleet_study_keys_profiles_by_name(catalog: dict[str, Accelerator]) -> None:
    study = fleet_study(make_scenario(), [make_profile(), make_profile(name="b")], catalog)
    assert list(study["profiles"]) == ["hand-gpu", "b"]
    assert study["scenario"]["demand_tokens_per_day"] == 864e6


def test_a_profile_measured_with_another_model_is_flagged(catalog: dict[str, Accelerator]) -> None:
    shape = {"n_params": 1e9, "n_layers": 16, "d_attn": 2048, "n_ctx": 1000}
    scenario = make_scenario(model={"name": "Llama-70B", **shape})
    other = fleet_figures(scenario, make_profile(model={"name": "tiny-llama", **shape}), catalog)
    same = fleet_figures(scenario, make_profile(model={"name": "llama-70b", **shape}), catalog)
    flagged = [a for a in other["assumptions"] if "measured with model tiny-llama" in a]
    assert len(flagged) == 1 and "Llama-70B" in flagged[0]
    assert not any("measured with model" in a for a in same["assumptions"])
