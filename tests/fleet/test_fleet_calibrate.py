"""Forecast-model parameters per profile (harness fleet --calibrate)."""

from __future__ import annotations

import pytest
from fleet_builders import PROFILES_DIR, make_profile

from harness.fleet.calibrate import calibration, calibration_document
from harness.fleet.catalog import Accelerator
from harness.fleet.profile import load_profile


def test_h200_parameters(catalog: dict[str, Accelerator]) -> None:
    cal = calibration(load_profile(PROFILES_DIR / "h200-llama70b-fp8-trtllm.yaml"), catalog)
    # 700 W / 6,028 tok/s = 0.11612 J per token; 700 / 3,014 = 0.23225 J per output token
    assert cal["j_per_token_at_capacity"] == pytest.approx(700 / 6028)
    assert cal["j_per_output_token_at_capacity"] == pytest.approx(700 / 3014)
    assert cal["implied_mfu"] == pytest.approx(0.4306, abs=1e-4)
    assert cal["origin"] == "published" and cal["reasons"] == {}


def test_missing_power_gives_reasons(catalog: dict[str, Accelerator]) -> None:
    profile = make_profile(busy_w=None, unavailable={"busy_w": "not measured"})
    cal = calibration(profile, catalog)
    assert cal["j_per_token_at_capacity"] is None
    assert cal["reasons"]["j_per_token_at_capacity"] == "not measured"
    assert "capacity_output_tok_s" in cal["reasons"]


def test_document_shape(catalog: dict[str, Accelerator]) -> None:
    doc = calibration_document([make_profile(), make_profile(name="b")], catalog)
    assert doc["kind"] == "harness-fleet-calibration" and list(doc["profiles"]) == ["hand-gpu", "b"]
