"""Fuzzing the workload, scenario and profile files (and capacity.json): any file gives a
result whose figures are finite, or a ConfigError naming the file, never any other
exception. Loaded workloads generate sessions; loaded scenarios and profiles go through
the fleet model, whose JSON must hold no Infinity or NaN."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz_inputs import DEEP, FUZZ, NASTY_NUMBERS, json_values, mutated, texts
from hypothesis import example, given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.fleet.catalog import Accelerator, load_catalog
from harness.fleet.model import fleet_figures, scenario_summary
from harness.fleet.profile import HardwareProfile, load_profile
from harness.fleet.scenario import Scenario, load_scenario
from harness.workload.limits import MAX_TOKENS
from harness.workload.source import open_source
from harness.workload.spec import WorkloadSpec, load_workload
from harness.workload.stats import workload_stats

CATALOG: dict[str, Accelerator] = load_catalog()

WORKLOADS: tuple[dict[str, Any], ...] = (
    {
        "name": "trace",
        "source": {"trace": "t.csv", "format": "azure", "limit_requests": 5},
        "arrival": {"pattern": "poisson", "time_scale": 1.0, "rate_per_s": 2.0, "seed": 1},
        "request": {"api": "chat", "temperature": 0.0, "timeout_s": 60, "overlength": "clip"},
        "limits": {"max_requests": 10, "max_concurrency": 4, "duration_s": 30.0},
        "tools": {"mode": "replay"},
        "slo": {"ttft_ms": 500, "tpot_ms": 50, "e2el_ms": 5000},
    },
    {
        "name": "chat",
        "source": {
            "synthetic": "chatbot",
            "seed": 3,
            "params": {"sessions": 3, "turns_max": 4, "think_ms_mean": 10, "scale": 0.1},
        },
        "arrival": {"pattern": "closed", "concurrency": 2},
        "limits": {"warmup_requests": 1},
    },
    {
        "name": "agent",
        "source": {
            "synthetic": "agent",
            "params": {
                "sessions": 2,
                "steps_min": 1,
                "steps_max": 3,
                "tools_per_step_max": 2,
                "max_context_tokens": 5000,
                "tool_mix": {"parse": {"share": 1, "duration_ms": 5}},
            },
        },
        "arrival": {"pattern": "trace", "time_scale": 0},
    },
    {
        "name": "random",
        "source": {
            "synthetic": "random",
            "params": {"requests": 4, "input_tokens": 64, "output_tokens": 8, "range_ratio": 0.5},
        },
        "arrival": {"pattern": "constant", "rate_per_s": 5},
    },
)

FACILITY: dict[str, Any] = {
    "peak_to_average": 1.5,
    "headroom": 0.8,
    "pue": 1.2,
    "gpus_per_server": 8,
    "server_other_w": 4600,
}
MODEL: dict[str, Any] = {"name": "m", "n_params": 70.6e9, "n_layers": 80, "d_attn": 8192}
SCENARIOS: tuple[dict[str, Any], ...] = (
    {
        "name": "tokens",
        "tokens_per_day": 30e12,
        "tokens_per_session": 2000,
        "cpu_cores_per_server": 112,
        "cpu_target_utilization": 0.7,
        "tool_cpu_s_per_session": 11,
        "model": {**MODEL, "n_ctx": 2000},
        "flops_utilization": 0.3,
        "sweep": {"parameter": "headroom", "values": [0.5, 0.9]},
        **FACILITY,
    },
    {
        "name": "mix",
        "mix": {
            "users_per_day": 1e8,
            "chatbot_tokens_per_user_day": 20000,
            "agent_share": 0.1,
            "agent_token_multiplier": 100,
            "agent_sessions_per_user_day": 4,
        },
        "facility_power_mw": 100,
        "sweep": {"parameter": "mix.agent_token_multiplier", "values": [1, 1000]},
        **FACILITY,
    },
    {"name": "requests", "requests_per_day": 1e9, "tokens_per_request": 2000, **FACILITY},
)
PROFILE: dict[str, Any] = {
    "name": "p",
    "source": "s",
    "accelerator": "H100-SXM",
    "precision": "bf16",
    "capacity_tok_s": 10000,
    "busy_w": 700,
    "idle_w": 100,
    "capacity_sessions_s": 2.5,
    "tool_cpu_s_per_session": 3,
    "devices": 8,
    "model": {**MODEL, "n_ctx": 2000},
    "assumptions": ["a"],
}
CAPACITY: dict[str, Any] = {
    "kind": "harness-capacity",
    "schema_version": 1,
    "name": "cpu-sweep",
    "workload": "demo-chatbot",
    "load_kind": "concurrency",
    "slo": {"ttft_ms": 5000.0, "tpot_ms": 200.0, "e2el_ms": None},
    "slo_target_attainment": 0.9,
    "capacity": {
        "load": 16.0,
        "run_dir": "c16",
        "devices": 1,
        "device_kind": "gpu",
        "accelerator": "H100-SXM",
        "capacity_tok_s": 400.0,
        "capacity_output_tok_s": 200.0,
        "capacity_requests_s": 1.5,
        "capacity_sessions_s": 0.5,
        "busy_w": 600.0,
        "busy_w_source": "nvml-counter",
        "idle_w": 90.0,
        "tool_cpu_s_per_session": 2.0,
    },
    "model": {
        "name": "tiny",
        "n_params": 2.0e6,
        "n_layers": 2,
        "d_model": 128,
        "mean_context_tok": 192.0,
    },
}

YAML_NASTY: tuple[str, ...] = (
    "a: " + "9" * 5000,
    "a: 2001-02-30",
    "a: !!float abc",
    "a: !!binary '%%%'",
    "a: !!python/object/apply:os.system [ls]",
    "a: &a [*a]",
    "? [1, 2]\n: 3",
    "\tname: x",
    "name: [/x]",
    "[/x]: 1",
    "name: '\\ud800'",
    'name: "\\ud800"',
    "name: x\n---\nname: y",
    "%YAML 9.9\n---\na: 1",
)


def _laughs(depth: int = 25) -> str:
    """A billion-laughs document: 2**depth strings if the aliases were expanded."""
    lines = ["l0: &l0 [lol, lol]"]
    lines += [f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def _documents(bases: tuple[dict[str, Any], ...]) -> st.SearchStrategy[str]:
    """A valid file mutated (any JSON value, or a nasty number, in place of a field), or any
    text, or a document no parser should survive unhurt."""
    values = json_values | st.sampled_from(NASTY_NUMBERS)
    mutants = st.sampled_from(bases).flatmap(lambda base: mutated(base, values))
    return (
        mutants.map(lambda d: yaml.safe_dump(d, allow_unicode=False))
        | mutants.map(lambda d: yaml.safe_dump(d, allow_unicode=False, default_flow_style=True))
        | texts
        | st.sampled_from(DEEP + YAML_NASTY + (_laughs(),))
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("yaml")


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path


def _result_or_config_error(path: Path, load: Callable[[Path], Any]) -> Any:
    """`load(path)`, or None after a ConfigError whose every line names the file."""
    try:
        return load(path)
    except ConfigError as err:
        message = str(err)
        message.encode("utf-8")  # printable: no lone surrogate
        for line in message.splitlines():
            assert line.startswith(str(path)), message
        return None


def _finite_json(data: Any) -> None:
    json.dumps(data, allow_nan=False)  # raises on Infinity and NaN


@FUZZ
@given(text=_documents(WORKLOADS))
@example(text="name: w\nsource: {trace: t.csv}\narrival: {time_scale: .inf}\n")
@example(text="name: w\nsource: {synthetic: random, params: {requests: 1000000000000}}\n")
@example(text="name: w\nsource: {synthetic: chatbot, params: {scale: .inf}}\n")
@example(text="name: w\nsource: {synthetic: agent, params: {tools_per_step_max: 1e308}}\n")
@example(text="name: w\nsource: {synthetic: agent, params: {session_rate_per_s: .nan}}\n")
@example(text="name: w\nsource: {trace: t.csv, seed: -1}\n")
@example(text="[" * 100_000)
def test_workload_yaml(folder: Path, text: str) -> None:
    spec = _result_or_config_error(_write(folder, "w.yaml", text), load_workload)
    if spec is None:
        return
    assert isinstance(spec, WorkloadSpec)
    assert math.isfinite(spec.arrival.time_scale) and spec.arrival.time_scale >= 0
    if spec.source.synthetic is not None:
        sessions = list(itertools.islice(open_source(spec.source), 3))
        assert all(n <= MAX_TOKENS for s in sessions for n in s.input_lengths())
        _finite_json(workload_stats(sessions).to_json_dict())


@FUZZ
@given(text=_documents(SCENARIOS))
@example(text=yaml.safe_dump({**SCENARIOS[0], "tokens_per_day": float("inf")}))
@example(text=yaml.safe_dump({**SCENARIOS[0], "tokens_per_day": 1e308}))
@example(text=yaml.safe_dump({**SCENARIOS[0], "headroom": 5e-324}))
@example(text=yaml.safe_dump({**SCENARIOS[1], "facility_power_mw": float("nan")}))
@example(text=yaml.safe_dump({**SCENARIOS[2], "gpus_per_server": 10**40}))
@example(text=yaml.safe_dump({**SCENARIOS[0], "sweep": {"parameter": "pue", "values": [1e308]}}))
@example(text=yaml.safe_dump({**SCENARIOS[0], "name": "[/x]"}))
def test_scenario_yaml(folder: Path, text: str) -> None:
    scenario = _result_or_config_error(_write(folder, "s.yaml", text), load_scenario)
    if scenario is None:
        return
    assert isinstance(scenario, Scenario)
    profile = HardwareProfile.model_validate(PROFILE)
    _finite_json(fleet_figures(scenario, profile, CATALOG))
    _finite_json(scenario_summary(scenario))


@FUZZ
@given(text=_documents((PROFILE,)))
@example(text=yaml.safe_dump({**PROFILE, "capacity_tok_s": float("inf")}))
@example(text=yaml.safe_dump({**PROFILE, "capacity_tok_s": 5e-324}))
@example(text=yaml.safe_dump({**PROFILE, "busy_w": 1e308, "idle_w": 1e308}))
@example(text=yaml.safe_dump({**PROFILE, "accelerator": "[/x]"}))
def test_profile_yaml(folder: Path, text: str) -> None:
    profile = _result_or_config_error(_write(folder, "p.yaml", text), load_profile)
    if profile is None:
        return
    assert isinstance(profile, HardwareProfile)
    for scenario in SCENARIOS:
        _finite_json(fleet_figures(Scenario.model_validate(scenario), profile, CATALOG))


@FUZZ
@given(data=mutated(CAPACITY, json_values | st.sampled_from(NASTY_NUMBERS)))
@example(data={**CAPACITY, "capacity": {**CAPACITY["capacity"], "capacity_tok_s": float("inf")}})
def test_capacity_json(folder: Path, data: Any) -> None:
    sweep = folder / "sweep"
    sweep.mkdir(exist_ok=True)
    _write(sweep, "capacity.json", json.dumps(data))
    profile = _result_or_config_error(sweep, load_profile)
    if profile is None:
        return
    for scenario in SCENARIOS:
        _finite_json(fleet_figures(Scenario.model_validate(scenario), profile, CATALOG))
