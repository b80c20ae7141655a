"""Fleet tables: sections present, nulls shown as n/a with reasons, every assumption listed;
the series behind the fleet charts, and the charts drawn with absent figures."""

from __future__ import annotations

from fleet_builders import make_profile, make_scenario

from harness.fleet.calibrate import calibration_document
from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_study
from harness.fleet.report import (
    DEMAND_CHART_PANELS,
    calibration_sections,
    fleet_sections,
    fleet_title,
    profile_chart_series,
    sweep_chart_series,
)
from harness.fleet.scenario import Scenario
from harness.plots import NotDrawn, fleet_profiles_chart, fleet_sweep_chart
from harness.report import sections_markdown

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
    # one row per reason, naming the figures and profiles it holds for
    idle = next(r for r in reasons.rows if r[0] == "profile 'b' gives no idle_w")
    assert "it_power_avg_mw" in idle[1].split(", ") and idle[2] == "b"
    assert len({r[0] for r in reasons.rows}) == len(reasons.rows)
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
    """A bare scenario name (not its summary) still gives a Scenario section."""
    study = fleet_study(make_scenario(), [make_profile()], catalog)
    sections = fleet_sections({"scenario": "s.yaml", "profiles": study["profiles"]})
    assert sections[0].rows == [("scenario", "s.yaml")]


def test_calibration_sections(catalog: dict[str, Accelerator]) -> None:
    sections = calibration_sections(calibration_document([make_profile()], catalog))
    rows = {r[0]: r[1] for r in sections[0].rows}
    assert rows["J per token at capacity (GPU)"] == "0.5000"


def _mix_sweep_scenario() -> Scenario:
    return make_scenario(
        tokens_per_day=None,
        mix={
            "users_per_day": 1e6,
            "chatbot_tokens_per_user_day": 864.0,
            "agent_share": 0.5,
            "agent_token_multiplier": 1.0,
        },
        sweep={"parameter": "mix.agent_token_multiplier", "values": [10, 1], "label": "x"},
    )


def test_profile_chart_series_keep_absent_figures_null(catalog: dict[str, Accelerator]) -> None:
    profiles = [make_profile(), make_profile(name="no-power", busy_w=None)]
    series = profile_chart_series(fleet_study(make_scenario(), profiles, catalog))
    assert [name for name, _ in series] == ["hand-gpu", "no-power"]
    full, bare = series[0][1], series[1][1]
    assert set(full) == {
        "gpus",
        "facility_power_avg_mw",
        "facility_power_peak_mw",
        "inverse.sessions_per_day",
        "inverse.gpus",
    }
    assert full["inverse.gpus"] is None  # no power budget: no inverse figures
    assert full["gpus"] == 40 and full["facility_power_avg_mw"] > 0
    assert bare["gpus"] == 40
    assert bare["facility_power_avg_mw"] is None and bare["facility_power_peak_mw"] is None
    assert sweep_chart_series(fleet_study(make_scenario(), profiles, catalog)) is None


def test_sweep_chart_series(catalog: dict[str, Accelerator]) -> None:
    study = fleet_study(_mix_sweep_scenario(), [make_profile(), make_profile(name="b")], catalog)
    found = sweep_chart_series(study)
    assert found is not None
    axis, curves = found
    assert axis == "x (mix.agent_token_multiplier)"
    assert [name for name, _ in curves] == ["hand-gpu", "b"]
    assert [row["value"] for row in curves[0][1]] == [10, 1]
    assert curves[0][1][0]["gpus"] > curves[0][1][1]["gpus"]


def test_charts_draw_absent_figures_as_na(catalog: dict[str, Accelerator]) -> None:
    """A profile without power, or without capacity, still gives a chart (no bar, n/a)."""
    profiles = [
        make_profile(),
        make_profile(name="no-power", busy_w=None),
        make_profile(name="no-capacity", capacity_tok_s=None),
    ]
    study = fleet_study(_mix_sweep_scenario(), profiles, catalog)
    series = profile_chart_series(study)
    assert series[2][1] == {k: None for k in series[2][1]}
    chart = fleet_profiles_chart(series, "t", DEMAND_CHART_PANELS)
    assert isinstance(chart, bytes) and chart.startswith(_PNG_MAGIC)
    found = sweep_chart_series(study)
    assert found is not None
    swept = fleet_sweep_chart(found[1], found[0], "t")
    assert isinstance(swept, bytes) and swept.startswith(_PNG_MAGIC)


def test_charts_with_nothing_measured_are_not_drawn() -> None:
    """No profile with any figure: no chart of 'not available' panels, a reason instead."""
    chart = fleet_profiles_chart([("none", {"gpus": None})], "t", DEMAND_CHART_PANELS)
    assert isinstance(chart, NotDrawn)
    assert "GPUs or facility power (MW)" in chart.reason
    swept = fleet_sweep_chart([("empty", [])], "x", "t")
    assert isinstance(swept, NotDrawn) and "swept value" in swept.reason


def test_cpu_measured_profiles_are_labelled_as_cpu_hosts(catalog: dict[str, Accelerator]) -> None:
    """A profile measured on a CPU server counts CPU hosts, not GPUs: its cells and chart
    label say so, the JSON keeps `gpus` with `device_kind` beside it, nulls stay n/a."""
    cpu = make_profile(name="cpu-host", accelerator=None, device_kind="cpu", busy_w=None)
    gpu = make_profile(device_kind="gpu")
    study = fleet_study(_mix_sweep_scenario(), [gpu, cpu], catalog)
    fig = study["profiles"]["cpu-host"]
    assert fig["gpus"] == 40 and fig["device_kind"] == "cpu"
    sections = {s.title: s for s in fleet_sections(study)}
    fleet = sections["Fleet per profile (default model)"]
    rows = {r[0]: r[1:] for r in fleet.rows}
    assert rows["GPUs"] == ("40", "40 (CPU hosts)")
    assert rows["Capacity per GPU (tok/s, input+output)"] == ("1,000", "1,000 (per CPU host)")
    assert rows["IT power, peak (MW)"][1] == "n/a"  # no suffix on an absent figure
    flops_section = sections["FLOPs cross-check (the seeds' forecast model)"]
    flops = {r[0]: r[1:] for r in flops_section.rows}
    assert flops["GPUs by the default model (peak ÷ headroom)"][1] == "40 (CPU hosts)"
    # n/a for both profiles: one line under the table, not a row of n/a
    assert "GPUs by the FLOPs rule (average load)" not in flops
    assert flops_section.note is not None
    assert "GPUs by the FLOPs rule (average load)" in flops_section.note
    sweep = next(s for t, s in sections.items() if t.startswith("Sweep"))
    gpus_col = sweep.headers.index("GPUs")
    assert {r[gpus_col].endswith("(CPU hosts)") for r in sweep.rows if r[1] == "cpu-host"} == {True}
    assert not any("CPU hosts" in r[gpus_col] for r in sweep.rows if r[1] == "hand-gpu")
    profiles = {r[0]: r[2] for r in sections["Profiles"].rows}
    assert profiles == {"hand-gpu": "gpu", "cpu-host": "cpu"}
    assert [n for n, _ in profile_chart_series(study)] == ["hand-gpu", "cpu-host (CPU hosts)"]
    found = sweep_chart_series(study)
    assert found is not None and [n for n, _ in found[1]] == ["hand-gpu", "cpu-host (CPU hosts)"]


def test_flops_rows_state_their_basis(catalog: dict[str, Accelerator]) -> None:
    shape = {"n_params": 1e9, "n_layers": 1, "d_attn": 1, "n_ctx": 0}
    sc = make_scenario(flops_utilization=1000.0 * 2e9 / 989e12)  # the profile's implied MFU
    study = fleet_study(sc, [make_profile(model=shape)], catalog)
    sections = {s.title: s for s in fleet_sections(study)}
    rows = {r[0]: r[1] for r in sections["FLOPs cross-check (the seeds' forecast model)"].rows}
    # 10 cards for the average load, × 2 / 0.5 = 40 at peak ÷ headroom, as the default model
    assert rows["GPUs by the FLOPs rule (average load)"] == "10"
    assert rows["GPUs by the FLOPs rule × peak_to_average / headroom"] == "40"
    assert rows["GPUs by the default model (peak ÷ headroom)"] == "40"
    assert rows["FLOPs rule × peak_to_average / headroom ÷ default"] == "1.00"
