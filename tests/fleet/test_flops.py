"""The seeds' FLOPs cross-check and the MFU a profile implies, with the inputs stated."""

from __future__ import annotations

from typing import Any

import pytest
from fleet_builders import PROFILES_DIR, make_profile, make_scenario

from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_figures
from harness.fleet.profile import load_profile
from harness.fleet.shape import ModelShape, flops_per_token

LLAMA_70B: dict[str, Any] = {
    "name": "Llama-70B",
    "n_params": 70.6e9,
    "n_layers": 80,
    "d_attn": 8192,
}


def test_flops_per_token_is_kaplans_rule() -> None:
    # 2N + 2·n_layer·n_ctx·d_attn = 141.2e9 + 2 × 80 × 2000 × 8192 = 141.2e9 + 2.62144e9
    shape = ModelShape(**LLAMA_70B, n_ctx=2000)
    assert flops_per_token(shape) == pytest.approx(143.82144e9)


def test_attention_term_of_an_8b_model_at_32k_adds_54_percent() -> None:
    # reference.md: "+54% for an 8B model at 32k": 2 × 32 × 32,768 × 4,096 / (2 × 8e9) = 0.537
    shape = ModelShape(n_params=8e9, n_layers=32, d_attn=4096, n_ctx=32768)
    assert flops_per_token(shape) / (2 * 8e9) - 1 == pytest.approx(0.537, abs=1e-3)


def test_seeds_cards_from_flops(catalog: dict[str, Accelerator]) -> None:
    # 30e12 tokens/day × 143.82144e9 FLOP/token = 4.3146432e24 FLOP/day;
    # H100 BF16 peak 989e12 FLOP/s at 30%: 86400 × 989e12 × 0.3 = 2.563488e19 FLOP/day per card;
    # cards = 4.3146432e24 / 2.563488e19 = 168,311.43
    sc = make_scenario(
        tokens_per_day=30e12, model={**LLAMA_70B, "n_ctx": 2000}, flops_utilization=0.3
    )
    flops = fleet_figures(sc, make_profile(precision="bf16"), catalog)["flops"]
    assert flops["flops_per_token"] == pytest.approx(143.82144e9)
    assert flops["flop_per_day"] == pytest.approx(4.3146432e24)
    assert flops["peak_flop_s"] == pytest.approx(989e12)
    assert flops["gpus"] == pytest.approx(168_311.43, abs=0.01)
    assert flops["model_from"] == "scenario"
    # at FP8 (1,979 TFLOPS) the same demand needs 84,113.19 cards
    flops8 = fleet_figures(sc, make_profile(precision="fp8"), catalog)["flops"]
    assert flops8["gpus"] == pytest.approx(84_113.19, abs=0.01)


def test_implied_mfu_of_the_h200_anchor(catalog: dict[str, Accelerator]) -> None:
    # 6,028 tok/s × (141.2e9 + 2 × 80 × 128 × 8192 = 141.36777216e9) / 1,979e12 = 0.4306
    profile = load_profile(PROFILES_DIR / "h200-llama70b-fp8-trtllm.yaml")
    flops = fleet_figures(make_scenario(), profile, catalog)["flops"]
    assert flops["profile_flops_per_token"] == pytest.approx(141.36777216e9)
    assert flops["implied_mfu"] == pytest.approx(0.43060, abs=1e-5)
    # without a scenario shape the cross-check falls back to the profile's model
    assert flops["model_from"] == "profile"


def test_cross_check_ratio_to_default_model(catalog: dict[str, Accelerator]) -> None:
    # hand scenario: 40 GPUs by the default model. FLOPs: 864e6 × fpt / (86400 × 989e12 × u)
    shape = {"n_params": 1e9, "n_layers": 1, "d_attn": 1, "n_ctx": 0}
    sc = make_scenario(model=shape, flops_utilization=0.5)
    flops = fleet_figures(sc, make_profile(), catalog)["flops"]
    # 864e6 × 2e9 / (86400 × 989e12 × 0.5) = 1.728e18 / 4.27248e19 = 0.040445 (average load)
    assert flops["gpus"] == pytest.approx(0.040445, rel=1e-4)
    # on the default model's basis: × peak_to_average 2 / headroom 0.5 = 0.16178
    assert flops["gpus_peak_basis"] == pytest.approx(0.040445 * 4, rel=1e-4)
    assert flops["gpus_ratio_to_default_model"] == pytest.approx(0.040445 * 4 / 40, rel=1e-4)


def test_ratio_is_one_when_the_flops_rule_uses_the_profiles_own_mfu(
    catalog: dict[str, Accelerator],
) -> None:
    """Like with like: at the MFU the profile implies, for the profile's own model, the FLOPs
    rule on the peak ÷ headroom basis gives the default model's cards (40), ratio 1."""
    shape = {"n_params": 1e9, "n_layers": 1, "d_attn": 1, "n_ctx": 0}
    profile = make_profile(model=shape)
    mfu = 1000.0 * 2e9 / 989e12  # capacity × FLOPs per token / peak = 0.0020222
    flops = fleet_figures(make_scenario(flops_utilization=mfu), profile, catalog)["flops"]
    assert flops["implied_mfu"] == pytest.approx(mfu)
    # average load: 10,000 tok/s at 1,000 tok/s per card = 10 cards; × 2 / 0.5 = 40
    assert flops["gpus"] == pytest.approx(10.0)
    assert flops["gpus_peak_basis"] == pytest.approx(40.0)
    assert flops["gpus_ratio_to_default_model"] == pytest.approx(1.0)


def test_flops_basis_is_listed_as_an_assumption(catalog: dict[str, Accelerator]) -> None:
    shape = {"n_params": 1e9, "n_layers": 1, "d_attn": 1, "n_ctx": 0}
    sc = make_scenario(model=shape, flops_utilization=0.5)
    with_rule = fleet_figures(sc, make_profile(), catalog)
    assert any("daily average load" in a for a in with_rule["assumptions"])
    without = fleet_figures(make_scenario(), make_profile(), catalog)
    assert without["flops"]["gpus_peak_basis"] is None
    assert without["flops"]["reasons"]["gpus_ratio_to_default_model"]
    assert not any(a.startswith("flops:") for a in without["assumptions"])


def test_missing_inputs_give_null_with_reason(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario()  # no model shape, no utilisation
    flops = fleet_figures(sc, make_profile(precision=None), catalog)["flops"]
    for key in ("flops_per_token", "gpus", "implied_mfu", "peak_flop_s"):
        assert flops[key] is None and flops["reasons"][key]
    assert flops["reasons"]["flops_utilization"] == "scenario gives no flops_utilization"
    assert "precision" in flops["reasons"]["peak_flop_s"]


def test_accelerator_without_the_precision_has_no_peak(catalog: dict[str, Accelerator]) -> None:
    profile = make_profile(accelerator="A100-SXM-80GB", precision="fp8")
    flops = fleet_figures(make_scenario(), profile, catalog)["flops"]
    assert flops["peak_flop_s"] is None
    assert flops["reasons"]["peak_flop_s"] == "the catalog gives A100-SXM-80GB no fp8 peak"


def test_unknown_accelerator_is_a_reason_not_a_guess(catalog: dict[str, Accelerator]) -> None:
    flops = fleet_figures(make_scenario(), make_profile(accelerator="X9"), catalog)["flops"]
    assert flops["reasons"]["peak_flop_s"] == "accelerator 'X9' is not in the catalog"
