"""Hardware profiles: the shipped published ones, YAML errors, and measured profiles read
from a sweep's capacity.json (nulls carried through with reasons, never 0)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fleet_builders import PROFILES_DIR, make_scenario

from harness.errors import ConfigError
from harness.fleet.catalog import Accelerator
from harness.fleet.model import fleet_figures
from harness.fleet.profile import load_profile

SHIPPED = sorted(PROFILES_DIR.glob("*.yaml"))

CAPACITY: dict[str, Any] = {
    "kind": "harness-capacity",
    "schema_version": 1,
    "name": "cpu-sweep",
    "workload": "demo-chatbot",
    "load_kind": "concurrency",
    "slo": {"ttft_ms": 5000.0, "tpot_ms": 200.0, "e2el_ms": None},
    "slo_target_attainment": 0.9,
    "points": [],
    "saturated": True,
    "stopped_early": True,
    "capacity": {
        "load": 16.0,
        "run_dir": "c16",
        "devices": 1,
        "device_kind": "cpu",
        "accelerator": None,
        "capacity_tok_s": 400.0,
        "capacity_output_tok_s": 200.0,
        "capacity_requests_s": 1.5,
        "capacity_sessions_s": None,
        "busy_w": None,
        "busy_w_source": "unavailable",
        "idle_w": None,
        "tool_cpu_s_per_session": None,
    },
    "model": {
        "name": "tiny-llama",
        "n_params": 2.0e6,
        "n_layers": 2,
        "d_model": 128,
        "d_attn": None,
        "mean_context_tok": 192.0,
    },
    "host": {"cpu_model": "test", "cpu_logical_cores": 2},
}


def _sweep_dir(tmp_path: Path, data: dict[str, Any]) -> Path:
    sweep = tmp_path / "sweep-a"
    sweep.mkdir()
    (sweep / "capacity.json").write_text(json.dumps(data))
    return sweep


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_profiles_are_published_with_sources_and_assumptions(
    path: Path, catalog: dict[str, Accelerator]
) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem and profile.origin == "published"
    assert profile.accelerator in catalog
    assert "TensorRT-LLM" in profile.source
    assert profile.model is not None and profile.model.n_params == 70.6e9
    assert profile.device_kind == "gpu"
    text = " ".join(profile.assumptions)
    for figure in ("busy_w", "idle_w", "not at an SLO", "token basis"):
        assert figure in text, figure
    # N is the total parameter count, embeddings included, and the profile says so
    assert "total parameter count, embeddings included" in text
    if "derived" in path.stem:
        assert "capacity_tok_s" in text and "roofline" in text


def test_anchor_profile_is_the_published_figure() -> None:
    profile = load_profile(PROFILES_DIR / "h200-llama70b-fp8-trtllm.yaml")
    # 3,014 output tok/s at 128 in / 128 out → 6,028 input+output tok/s
    assert profile.capacity_output_tok_s == 3014
    assert profile.capacity_tok_s == 6028
    assert profile.precision == "fp8"


ANCHOR = "h200-llama70b-fp8-trtllm"
BYTES_PER_WEIGHT = {"fp8": 1.0, "bf16": 2.0}
# hand-computed: 6,028 × min(bandwidth ratio per weight byte, dense FLOP/s ratio to H200 FP8)
ROOFLINE = {
    # 6,028 × min(2.04 / 4.8 × 0.5 = 0.2125, 312 / 1,979 = 0.15766) = 950.35: compute-bound
    "a100-llama70b-bf16-derived": (950.3, "compute-bound"),
    # 6,028 × min(3.35 / 4.8 = 0.6979, 1,979 / 1,979 = 1) = 4,207.04
    "h100-llama70b-fp8-derived": (4207.0, "bandwidth-bound"),
    # 6,028 × min(8 / 4.8 = 1.6667, 4,500 / 1,979 = 2.2739) = 10,046.67
    "b200-llama70b-fp8-derived": (10047.0, "bandwidth-bound"),
    # 6,028 × min(8 / 4.8 = 1.6667, 5,000 / 1,979 = 2.5265) = 10,046.67
    "gb200-llama70b-fp8-derived": (10047.0, "bandwidth-bound"),
    # 6,028 × min(5.3 / 4.8 = 1.1042, 2,615 / 1,979 = 1.3214) = 6,655.92
    "mi300x-llama70b-fp8-derived": (6656.0, "bandwidth-bound"),
    ANCHOR: (6028.0, None),
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_derived_profiles_scale_by_the_roofline_bound(
    path: Path, catalog: dict[str, Accelerator]
) -> None:
    """capacity = anchor × min(HBM bandwidth ratio per weight byte, dense FLOP/s ratio), from
    the catalog; the bound that applies is the one the assumptions name."""
    profile = load_profile(path)
    expected, bound = ROOFLINE[path.stem]
    assert profile.capacity_tok_s == expected
    acc, h200 = catalog[str(profile.accelerator)], catalog["H200-SXM"]
    assert profile.precision is not None
    bandwidth = acc.hbm_bandwidth_tb_s / h200.hbm_bandwidth_tb_s
    bandwidth /= BYTES_PER_WEIGHT[profile.precision]
    compute = (acc.peak_flops(profile.precision) or 0.0) / (h200.peak_flops("fp8") or 1.0)
    # published figures are rounded to whole tok/s (A100's to 0.1)
    assert profile.capacity_tok_s == pytest.approx(6028 * min(bandwidth, compute), abs=0.5)
    assert profile.capacity_output_tok_s == pytest.approx(3014 * min(bandwidth, compute), abs=0.5)
    if bound is not None:
        assert (bound == "compute-bound") == (compute < bandwidth)
        assert any(a.startswith("capacity_tok_s") and bound in a for a in profile.assumptions)
    assert profile.busy_w == acc.board_power_w


def test_no_derived_profile_implies_more_mfu_than_the_anchor(
    catalog: dict[str, Accelerator],
) -> None:
    """The roofline rule never credits a GPU with a higher MFU than the anchor's ≈43 %; the
    A100, compute-bound, sits at the anchor's MFU (bandwidth alone gave it 58 %)."""
    mfu = {
        p.stem: fleet_figures(make_scenario(), load_profile(p), catalog)["flops"]["implied_mfu"]
        for p in SHIPPED
    }
    anchor = mfu[ANCHOR]
    assert anchor == pytest.approx(0.4306, abs=1e-4)
    for name, value in mfu.items():
        assert value <= anchor + 1e-4, name
    assert mfu["a100-llama70b-bf16-derived"] == pytest.approx(anchor, abs=1e-4)
    assert mfu["h100-llama70b-fp8-derived"] == pytest.approx(0.3005, abs=1e-4)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


BASE = "name: p\nsource: s\naccelerator: null\ncapacity_tok_s: 10\nbusy_w: 500\nidle_w: 50\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (BASE.replace("capacity_tok_s: 10", "capacity_tok_s: 0"), "key 'capacity_tok_s'"),
        (BASE.replace("busy_w: 500", "busy_w: -1"), "key 'busy_w'"),
        (BASE.replace("idle_w: 50", "idle_w: 600"), "idle_w (600) is above busy_w (500)"),
        (BASE + "colour: red\n", "unknown key 'colour'"),
        (BASE + "precision: fp4\n", "key 'precision'"),
        (BASE + "model: {n_params: 1, n_layers: 0, d_attn: 1, n_ctx: 1}\n", "'model.n_layers'"),
        (BASE.replace("source: s\n", ""), "key 'source': Field required"),
        (BASE + "origin: measured\n", "key 'origin'"),
        # accepted before: an infinite or NaN capacity gave OverflowError or Infinity
        (
            BASE.replace("capacity_tok_s: 10", "capacity_tok_s: .inf"),
            "'capacity_tok_s': expected a finite",
        ),
        (BASE.replace("busy_w: 500", "busy_w: .nan"), "key 'busy_w': expected a finite number"),
        (BASE.replace("idle_w: 50", "idle_w: 1e308"), "key 'idle_w': 1e+308 is out of range"),
        (
            BASE.replace("capacity_tok_s: 10", "capacity_tok_s: 5e-324"),
            "'capacity_tok_s': 5e-324 is out",
        ),
        (BASE + "devices: " + "9" * 30 + "\n", "key 'devices'"),
        (BASE + "devices: yes\n", "key 'devices': expected a number, got bool"),
        (BASE + "model: {n_params: 1, n_layers: 1, d_attn: 1, n_ctx: .inf}\n", "'model.n_ctx'"),
    ],
)
def test_profile_errors_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_null_power_in_yaml_is_allowed(tmp_path: Path) -> None:
    profile = load_profile(_yaml(tmp_path, BASE.replace("busy_w: 500", "busy_w: null")))
    assert profile.busy_w is None


def test_measured_profile_carries_nulls_with_reasons(
    tmp_path: Path, catalog: dict[str, Accelerator]
) -> None:
    sweep = _sweep_dir(tmp_path, CAPACITY)
    profile = load_profile(sweep)
    assert profile.origin == "measured" and profile.name == "cpu-sweep"
    assert str(sweep) in profile.source and "TTFT ≤ 5000 ms" in profile.source
    assert profile.device_kind == "cpu" and profile.devices == 1
    assert profile.capacity_tok_s == 400.0 and profile.capacity_requests_s == 1.5
    assert profile.busy_w is None and profile.idle_w is None
    assert "busy_w_source unavailable" in profile.unavailable["busy_w"]
    # d_attn is taken as d_model, and that is listed as an assumption
    assert profile.model is not None and profile.model.d_attn == 128
    assert any("d_attn taken as d_model" in a for a in profile.assumptions)
    assert any("CPU server" in a for a in profile.assumptions)

    fig = fleet_figures(make_scenario(), profile, catalog)
    # 10,000 tok/s × 2 / (400 × 0.5) = 100 GPUs (here: CPU hosts)
    assert fig["gpus"] == 100
    for key in ("it_power_peak_mw", "it_power_avg_mw", "it_energy_mwh_per_day"):
        assert fig[key] is None, key
        assert "GPU power unavailable" in fig["reasons"][key]
    assert fig["flops"]["implied_mfu"] is None
    assert fig["flops"]["reasons"]["implied_mfu"] == profile.unavailable["accelerator"]


def test_measured_gpu_profile_with_power(tmp_path: Path) -> None:
    data = copy.deepcopy(CAPACITY)
    data["capacity"].update(
        device_kind="gpu",
        accelerator="H100-SXM",
        devices=2,
        busy_w=650.0,
        busy_w_source="nvml-counter",
        idle_w=70.0,
    )
    profile = load_profile(_sweep_dir(tmp_path, data))
    assert (profile.busy_w, profile.idle_w, profile.accelerator) == (650.0, 70.0, "H100-SXM")
    assert "busy_w" not in profile.unavailable
    assert profile.precision is None and "precision" in profile.unavailable
    assert any("2 devices" in a for a in profile.assumptions)


def test_sweep_where_no_load_met_the_slo(tmp_path: Path, catalog: dict[str, Accelerator]) -> None:
    data = copy.deepcopy(CAPACITY)
    data["capacity"].update(load=None, run_dir=None, capacity_tok_s=None)
    profile = load_profile(_sweep_dir(tmp_path, data))
    fig = fleet_figures(make_scenario(), profile, catalog)
    assert fig["gpus"] is None
    assert fig["reasons"]["gpus"] == "no load point of the sweep met the SLO"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"kind": "other"}, "key 'kind'"),
        ({"schema_version": 3}, "key 'schema_version'"),
        ({"capacity": {**CAPACITY["capacity"], "capacity_tok_s": 0}}, "'capacity.capacity_tok_s'"),
        ({"capacity": {**CAPACITY["capacity"], "busy_w_source": "guess"}}, "busy_w_source"),
        # json.dumps writes Infinity and NaN, which Python's json reads back
        (
            {"capacity": {**CAPACITY["capacity"], "capacity_tok_s": float("inf")}},
            "expected a finite",
        ),
        ({"capacity": {**CAPACITY["capacity"], "idle_w": float("nan")}}, "'capacity.idle_w'"),
        ({"slo_target_attainment": 1.5}, "key 'slo_target_attainment'"),
        ({"model": {**CAPACITY["model"], "n_layers": "80"}}, "'model.n_layers': expected a number"),
    ],
)
def test_bad_capacity_json_names_file_and_key(
    tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    sweep = _sweep_dir(tmp_path, {**CAPACITY, **change})
    with pytest.raises(ConfigError) as info:
        load_profile(sweep)
    assert str(sweep / "capacity.json") in str(info.value) and needle in str(info.value)


def test_directory_without_capacity_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no capacity\.json"):
        load_profile(tmp_path)
    with pytest.raises(ConfigError, match="no such profile"):
        load_profile(tmp_path / "none.yaml")


def test_measured_n_excludes_the_input_embeddings(tmp_path: Path) -> None:
    """N for the FLOPs rule is n_params_non_embedding (the input-embedding table is a lookup,
    no FLOPs); the total n_params is kept in the assumption that says so."""
    data = copy.deepcopy(CAPACITY)
    data["model"].update(n_params=2.0e6, n_params_non_embedding=1.5e6)
    profile = load_profile(_sweep_dir(tmp_path, data))
    assert profile.model is not None and profile.model.n_params == 1.5e6
    n_line = next(a for a in profile.assumptions if a.startswith("model N = "))
    assert "without the input-embedding table" in n_line and "2e+06 with it" in n_line


def test_measured_n_falls_back_to_all_weights_listed(tmp_path: Path) -> None:
    """An older capacity.json without n_params_non_embedding: N is every weight, and the
    assumptions say the FLOPs are slightly high for it."""
    profile = load_profile(_sweep_dir(tmp_path, CAPACITY))
    assert profile.model is not None and profile.model.n_params == 2.0e6
    n_line = next(a for a in profile.assumptions if a.startswith("model N = "))
    assert "no n_params_non_embedding" in n_line and "including the input-embedding" in n_line
