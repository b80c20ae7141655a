"""Fleet tables: sections present, nulls shown as n/a with reasons, every assumption listed."""

from __future__ import annotations

from fleet_builders import make_profile, make_scenario

from harness.fleet.calibrate import calibration_document
from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_study
from harness.fleet.report import calibration_sections, fleet_sections, fleet_title
from harness.report import sections_markdown


def _titles(result: dict[str, object]) -> list[str]:
    return [s.title for s in fleet_sections(result)]


def test_sections_of_a_plain_study(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(assumptions=["pue 1.5: test"])
    result = fleet_study(sc, [make_profile(), make_profile(name="b", idle_w=None)], catalog)
    sections = fleet_sections(result)
    titles = [s.title for s in sections]
    assert titles[:4] == [
        "Scenario",
        "Fleet per profile (default model)",
        "FLOPs cross-check (the seeds' forecast model)",
        "Utilisation (MFU) implied by each profile",
    ]
    assert "Figures not available" in titles and titles[-1] == "Assumptions"
    fleet = sections[1]
    assert fleet.headers == ("figure", "hand-gpu", "b")
    gpus = next(r for r in fleet.rows if r[0] == "GPUs")
    assert gpus == ("GPUs", "40", "40")
    avg = next(r for r in fleet.rows if r[0] == "IT power, average (MW)")
    assert avg[2] == "n/a"
    reasons = next(s for s in sections if s.title == "Figures not available")
    assert ("b", "it_power_avg_mw", "profile 'b' gives no idle_w") in reasons.rows
    assumptions = [r[0] for r in sections[-1].rows]
    assert "1. scenario: pue 1.5: test" in assumptions
    assert fleet_title(result) == "Fleet study: hand"
    assert "| GPUs | 40 | 40 |" in sections_markdown(fleet_title(result), sections)


def test_inverse_and_sweep_sections(catalog: dict[str, Accelerator]) -> None:
    sc = make_scenario(
        tokens_per_day=None,
        facility_power_mw=1.5,
        mix={
            "users_per_day": 1e6,
            "chatbot_tokens_per_user_day": 864.0,
            "agent_share": 0.5,
            "agent_token_multiplier": 1.0,
        },
        sweep={"parameter": "mix.agent_token_multiplier", "values": [1, 10]},
    )
    titles = _titles(fleet_study(sc, [make_profile()], catalog))
    assert "What the facility power serves (inverse)" in titles
    assert "Sweep: mix.agent_token_multiplier" in titles


def test_scenario_given_as_a_name(catalog: dict[str, Accelerator]) -> None:
    """harness compare passes the scenario's file name instead of its summary."""
    study = fleet_study(make_scenario(), [make_profile()], catalog)
    sections = fleet_sections({"scenario": "s.yaml", "profiles": study["profiles"]})
    assert sections[0].rows == [("scenario", "s.yaml")]


def test_calibration_sections(catalog: dict[str, Accelerator]) -> None:
    sections = calibration_sections(calibration_document([make_profile()], catalog))
    rows = {r[0]: r[1] for r in sections[0].rows}
    assert rows["J per token at capacity (GPU)"] == "0.5000"
