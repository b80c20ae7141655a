"""Scenario files: demand forms, the mix, sweeps, and errors naming the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fleet_builders import SCENARIOS_DIR, make_profile, make_scenario

from harness.config_files import MAX_MAGNITUDE, MIN_MAGNITUDE
from harness.errors import ConfigError
from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_figures
from harness.fleet.scenario import load_scenario, sweep_points, with_value

FACILITY = (
    "peak_to_average: 1.5\nheadroom: 0.8\npue: 1.2\ngpus_per_server: 8\nserver_other_w: 4600\n"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message
    return message


@pytest.mark.parametrize("name", ["china-30t", "china-60t", "chatbot-to-agent-mix", "campus-1gw"])
def test_shipped_scenarios_load_and_list_assumptions(name: str) -> None:
    sc = load_scenario(SCENARIOS_DIR / f"{name}.yaml")
    assert sc.name == name and sc.assumptions
    for key in ("peak_to_average", "headroom", "pue", "server_other_w"):
        assert any(a.startswith(key) for a in sc.assumptions), key


def test_china_demands() -> None:
    assert load_scenario(SCENARIOS_DIR / "china-30t.yaml").demand_tokens_per_day() == 30e12
    assert load_scenario(SCENARIOS_DIR / "china-60t.yaml").demand_tokens_per_day() == 60e12


@pytest.mark.parametrize(
    ("demand", "tokens", "sessions"),
    [
        ("tokens_per_day: 1000\n", 1000, None),
        ("tokens_per_day: 1000\ntokens_per_session: 10\n", 1000, 100),
        ("requests_per_day: 5\ntokens_per_request: 20\n", 100, None),
        ("sessions_per_day: 5\ntokens_per_session: 20\n", 100, 5),
        (
            "mix: {users_per_day: 10, chatbot_tokens_per_user_day: 100, agent_share: 0.2, "
            "agent_token_multiplier: 100, agent_sessions_per_user_day: 3}\n",
            # 10 × 100 × (0.8 + 0.2 × 100) = 20,800 tokens; 10 × 0.2 × 3 = 6 sessions
            20_800,
            6,
        ),
        ("facility_power_mw: 10\ntokens_per_session: 20\n", None, None),
    ],
)
def test_demand_forms(
    tmp_path: Path, demand: str, tokens: float | None, sessions: float | None
) -> None:
    sc = load_scenario(_write(tmp_path, "name: s\n" + demand + FACILITY))
    assert sc.demand_tokens_per_day() == pytest.approx(tokens)
    assert sc.demand_sessions_per_day() == pytest.approx(sessions)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tokens_per_day: -1\n" + FACILITY, "key 'tokens_per_day'"),
        ("sessions_per_day: -3\ntokens_per_session: 9\n" + FACILITY, "key 'sessions_per_day'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("0.8", "0"), "key 'headroom'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("0.8", "1.5"), "key 'headroom'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("pue: 1.2", "pue: 0.9"), "key 'pue'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("1.5", "0.5"), "key 'peak_to_average'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("8\n", "0\n"), "key 'gpus_per_server'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("4600", "-1"), "key 'server_other_w'"),
        ("tokens_per_day: 1\n" + FACILITY.replace("pue: 1.2\n", ""), "key 'pue': Field required"),
        ("tokens_per_day: 1\ncpu_target_utilization: 0\n" + FACILITY, "'cpu_target_utilization'"),
        ("tokens_per_day: 1\ncolour: red\n" + FACILITY, "unknown key 'colour'"),
        ("tokens_per_day: lots\n" + FACILITY, "key 'tokens_per_day'"),
        ("tokens_per_day: 1\nrequests_per_day: 1\n" + FACILITY, "give one demand"),
        (FACILITY, "give a demand"),
        ("requests_per_day: 4\n" + FACILITY, "'requests_per_day' needs 'tokens_per_request'"),
        (
            "mix: {users_per_day: 1, chatbot_tokens_per_user_day: 1, agent_share: 1.2, "
            "agent_token_multiplier: 1}\n" + FACILITY,
            "key 'mix.agent_share'",
        ),
        (
            "tokens_per_day: 1\nmodel: {n_params: 1, n_layers: 1, d_attn: 1, n_ctx: 1, x: 2}\n"
            + FACILITY,
            "unknown key 'model.x'",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    assert needle in _error(tmp_path, "name: s\n" + text)


def test_negative_demand_message(tmp_path: Path) -> None:
    message = _error(tmp_path, "name: s\ntokens_per_day: -5\n" + FACILITY)
    assert message.endswith("key 'tokens_per_day': Input should be greater than or equal to 0")


def test_sweep_values_are_validated_and_named(tmp_path: Path) -> None:
    text = (
        "name: s\nmix: {users_per_day: 1, chatbot_tokens_per_user_day: 1, agent_share: 0.5, "
        "agent_token_multiplier: 1}\nsweep: {parameter: mix.agent_share, values: [0.1, 1.5]}\n"
    )
    message = _error(tmp_path, text + FACILITY)
    assert "key 'sweep.values.1'" in message and "mix.agent_share" in message


@pytest.mark.parametrize(
    ("parameter", "needle"),
    [
        ("nothing", "'nothing' is not a scenario key"),
        ("mix.x", "no section 'mix'"),
        ("name", "'name' is not a number"),
    ],
)
def test_sweep_parameter_must_be_a_number_of_the_scenario(
    tmp_path: Path, parameter: str, needle: str
) -> None:
    text = f"name: s\ntokens_per_day: 5\nsweep: {{parameter: {parameter}, values: [1]}}\n"
    message = _error(tmp_path, text + FACILITY)
    assert "key 'sweep.parameter'" in message and needle in message


def test_sweep_points_and_with_value() -> None:
    sc = load_scenario(SCENARIOS_DIR / "chatbot-to-agent-mix.yaml")
    points = sweep_points(sc)
    assert [v for v, _ in points] == [1, 10, 100, 300, 1000]
    tokens = [p.demand_tokens_per_day() or 0 for _, p in points]
    assert tokens == sorted(tokens)
    assert all(p.sweep is None for _, p in points)
    assert with_value(sc, "pue", 1.1).pue == 1.1


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    assert "invalid YAML" in _error(tmp_path, "name: [s\n")
    with pytest.raises(ConfigError, match="no such scenario file"):
        load_scenario(tmp_path / "none.yaml")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        # accepted before, then OverflowError (ceil of inf) or Infinity in the JSON
        ("tokens_per_day: .inf\n", "key 'tokens_per_day': expected a finite number, got inf"),
        ("tokens_per_day: .nan\n", "key 'tokens_per_day': expected a finite number, got nan"),
        ("tokens_per_day: 1e308\n", "key 'tokens_per_day': 1e+308 is out of range"),
        ("tokens_per_day: 1e-300\n", "key 'tokens_per_day': 1e-300 is out of range"),
        ("tokens_per_day: '5'\n", "key 'tokens_per_day': expected a number, got str"),
        ("tokens_per_day: true\n", "key 'tokens_per_day': expected a number, got bool"),
        ("tokens_per_day: 1\ngpus_per_server: " + "9" * 40 + "\n", "key 'gpus_per_server'"),
        ("tokens_per_day: 1\nsweep: {parameter: pue, values: [1.5, .inf]}\n", "'sweep.values.1'"),
        (
            "tokens_per_day: 1\nmodel: {n_params: .inf, n_layers: 1, d_attn: 1, n_ctx: 1}\n",
            "'model.n_params'",
        ),
    ],
)
def test_numbers_are_finite_and_of_sane_magnitude(tmp_path: Path, line: str, needle: str) -> None:
    facility = (
        FACILITY.replace("gpus_per_server: 8\n", "") if "gpus_per_server" in line else FACILITY
    )
    message = _error(tmp_path, "name: s\n" + line + facility)
    assert needle in message and "\n" not in message


def test_figures_stay_finite_at_the_bounds(catalog: dict[str, Accelerator]) -> None:
    big, tiny = MAX_MAGNITUDE, MIN_MAGNITUDE
    scenario = make_scenario(
        tokens_per_day=big,
        peak_to_average=big,
        headroom=tiny,
        pue=big,
        server_other_w=big,
        facility_power_mw=big,
        tokens_per_session=tiny,
        tool_cpu_s_per_session=tiny,
        cpu_cores_per_server=10**18,
        cpu_target_utilization=tiny,
    )
    profile = make_profile(capacity_tok_s=tiny, busy_w=big, idle_w=big, tool_cpu_s_per_session=tiny)
    figures = fleet_figures(scenario, profile, catalog)
    json.dumps(figures, allow_nan=False)  # raises on Infinity or NaN


def test_a_scenario_without_a_name_is_named_after_its_file(tmp_path: Path) -> None:
    path = tmp_path / "dc-east.yaml"
    path.write_text("tokens_per_day: 1e12\n" + FACILITY)
    assert load_scenario(path).name == "dc-east"
    path.write_text("name: given\ntokens_per_day: 1e12\n" + FACILITY)
    assert load_scenario(path).name == "given"


def test_a_missing_scenario_file_suggests_close_names(tmp_path: Path) -> None:
    (tmp_path / "china-30t.yaml").write_text("")
    with pytest.raises(ConfigError) as info:
        load_scenario(tmp_path / "china-3ot.yaml")
    # Close names beside the path first, then the shipped scenarios/ (where the tests run).
    assert str(info.value).startswith(
        f"{tmp_path / 'china-3ot.yaml'}: no such scenario file "
        f"(did you mean '{tmp_path / 'china-30t.yaml'}'"
    )
