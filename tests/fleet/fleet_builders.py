"""Builders for the fleet tests: a scenario and a profile with round, hand-checkable figures
(imported as a top-level module, like tests/fake_nvml.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.fleet.profile import HardwareProfile
from harness.fleet.scenario import Scenario

REPO = Path(__file__).resolve().parents[2]
PROFILES_DIR = REPO / "profiles"
SCENARIOS_DIR = REPO / "scenarios"

BASE_SCENARIO: dict[str, Any] = {
    "name": "hand",
    "tokens_per_day": 864e6,  # avg_tok_s = 864e6 / 86400 = 10,000
    "peak_to_average": 2.0,
    "headroom": 0.5,
    "pue": 1.5,
    "gpus_per_server": 8,
    "server_other_w": 1000.0,
}
BASE_PROFILE: dict[str, Any] = {
    "name": "hand-gpu",
    "source": "hand-written test figures",
    "accelerator": "H100-SXM",
    "precision": "bf16",
    "capacity_tok_s": 1000.0,
    "busy_w": 500.0,
    "idle_w": 100.0,
}


def make_scenario(**overrides: Any) -> Scenario:
    """BASE_SCENARIO with `overrides` (a None value removes the key)."""
    data = {**BASE_SCENARIO, **overrides}
    return Scenario.model_validate({k: v for k, v in data.items() if v is not None})


def make_profile(**overrides: Any) -> HardwareProfile:
    """BASE_PROFILE with `overrides`."""
    return HardwareProfile.model_validate({**BASE_PROFILE, **overrides})
