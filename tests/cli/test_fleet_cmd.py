"""`harness fleet` end to end on the shipped scenarios and profiles, writing JSON, Markdown
and the self-contained HTML page (rendered in headless Chromium where it is installed)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness.browser import check_rendered, count_images, find_chromium
from harness.cli import main

REPO = Path(__file__).resolve().parents[2]
PROFILES = sorted(str(p) for p in (REPO / "profiles").glob("*.yaml"))
SCENARIOS = REPO / "scenarios"
FIGURES = (
    "gpus",
    "servers",
    "it_power_avg_mw",
    "it_power_peak_mw",
    "facility_power_avg_mw",
    "it_energy_mwh_per_day",
    "facility_energy_gwh_per_year",
    "cpu_cores_needed",
)


def _fleet(tmp_path: Path, scenario: str, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{scenario}.json"
    code = main(["fleet", str(SCENARIOS / f"{scenario}.yaml"), "--profile", *PROFILES,
                 "--json", str(out), *extra])  # fmt: skip
    assert code == 0
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_china_30t_and_60t_give_cards_and_mw_for_every_profile(tmp_path: Path) -> None:
    r30, r60 = _fleet(tmp_path, "china-30t"), _fleet(tmp_path, "china-60t")
    assert len(PROFILES) == 6
    assert set(r30["profiles"]) == {Path(p).stem for p in PROFILES}
    assert r30["scenario"]["name"] == "china-30t" and r30["scenario"]["assumptions"]
    for name, fig in r30["profiles"].items():
        for key in FIGURES:
            assert key in fig, key
        for key in FIGURES[:-1]:
            assert isinstance(fig[key], int | float) and fig[key] > 0, (name, key)
        assert fig["cpu_cores_needed"] is None and fig["reasons"]["cpu_cores_needed"]
        assert fig["inputs"]["tokens_per_day"] == 30e12
        assert any(a.startswith("scenario: pue 1.56") for a in fig["assumptions"])
        assert any(a.startswith(f"profile {name}: busy_w") for a in fig["assumptions"])
        # twice the demand: about twice the cards (ceil) and never fewer
        fig60 = r60["profiles"][name]
        assert 2 * fig["gpus"] - 1 <= fig60["gpus"] <= 2 * fig["gpus"]
    assert r30["profiles"]["h200-llama70b-fp8-trtllm"]["gpus"] == 108_003


def test_mix_sweep_and_campus(tmp_path: Path) -> None:
    mix = _fleet(tmp_path, "chatbot-to-agent-mix")
    for fig in mix["profiles"].values():
        rows = fig["sweep"]["rows"]
        assert [r["value"] for r in rows] == [1, 10, 100, 300, 1000]
        gpus = [r["gpus"] for r in rows]
        assert gpus == sorted(gpus) and gpus[-1] > 50 * gpus[0]
        assert fig["cpu_cores_needed"] > 0 and fig["cpu_cores_sufficient"] is True
        # sessions and tool seconds per session are held fixed: the cores do not move,
        # 100e6 users × 0.1 × 4 sessions × 11 s / 86,400 / 0.7 = 7,275.1 cores
        assert {round(r["cpu_cores_needed"], 6) for r in rows} == {
            round(40e6 * 11 / 86400 / 0.7, 6)
        }
        assert any("cpu_cores_needed is constant" in a for a in fig["assumptions"])
        assert any(a.startswith("model: CPU cores") for a in fig["assumptions"])
    campus = _fleet(tmp_path, "campus-1gw")
    for fig in campus["profiles"].values():
        inv = fig["inverse"]
        assert inv["sessions_per_day"] > 0 and inv["binding"] in ("gpu", "cpu")
        assert fig["facility_power_peak_mw"] <= 1000.0


def test_markdown_and_calibration_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    md, cal = tmp_path / "out" / "fleet.md", tmp_path / "out" / "cal.json"
    _fleet(tmp_path, "china-30t", "--md", str(md), "--calibrate", "--calibrate-out", str(cal))
    text = md.read_text()
    assert text.startswith("# Fleet study: china-30t") and "## Assumptions" in text
    doc = json.loads(cal.read_text())
    assert doc["kind"] == "harness-fleet-calibration"
    h200 = doc["profiles"]["h200-llama70b-fp8-trtllm"]
    assert h200["implied_mfu"] == pytest.approx(0.4306, abs=1e-4)
    assert "Forecast-model parameters" in capsys.readouterr().out


def test_calibrate_alone_on_a_measured_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    capacity = {
        "kind": "harness-capacity", "schema_version": 1, "name": "gpu-sweep",
        "workload": "w", "load_kind": "rate", "slo": {"ttft_ms": 450.0, "tpot_ms": 40.0},
        "slo_target_attainment": 0.9, "points": [], "saturated": True, "stopped_early": False,
        "capacity": {
            "load": 8.0, "run_dir": "r8", "devices": 1, "device_kind": "gpu",
            "accelerator": "H100-SXM", "capacity_tok_s": 5000.0, "capacity_output_tok_s": 1000.0,
            "capacity_requests_s": 2.0, "capacity_sessions_s": None, "busy_w": 600.0,
            "busy_w_source": "nvml-counter", "idle_w": 80.0, "tool_cpu_s_per_session": None,
        },
        "model": {"name": "m", "n_params": 8e9, "n_layers": 32, "d_model": 4096,
                  "d_attn": 4096, "mean_context_tok": 1000.0},
        "host": {},
    }  # fmt: skip
    (sweep / "capacity.json").write_text(json.dumps(capacity))
    cal = tmp_path / "cal.json"
    args = ["fleet", "--profile", str(sweep), "--calibrate", "--calibrate-out", str(cal)]
    assert main([*args, "--precision", "bf16"]) == 0
    params = json.loads(cal.read_text())["profiles"]["gpu-sweep"]
    # 600 W / 5,000 tok/s = 0.12 J/token; MFU = 5,000 × (16e9 + 2·32·1000·4096) / 989e12
    assert params["origin"] == "measured"
    assert params["j_per_token_at_capacity"] == pytest.approx(0.12)
    assert params["implied_mfu"] == pytest.approx(5000 * (16e9 + 262_144_000) / 989e12)
    assert main(args) == 0  # without --precision: MFU null with the reason
    params = json.loads(cal.read_text())["profiles"]["gpu-sweep"]
    assert params["implied_mfu"] is None and "precision" in params["reasons"]["implied_mfu"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fleet", "--profile", PROFILES[0]], "give a scenario YAML"),
        (["fleet", "SCEN", "--profile", PROFILES[0], PROFILES[0]], "key 'name'"),
        (["fleet", "SCEN", "--profile", "BADACC"], "key 'accelerator'"),
        (["fleet", "BADSCEN", "--profile", PROFILES[0]], "key 'headroom'"),
    ],
)
def test_errors_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    bad_acc = tmp_path / "p.yaml"
    bad_acc.write_text(
        "name: p\nsource: s\naccelerator: Z9\ncapacity_tok_s: 1\nbusy_w: 1\nidle_w: 0\n"
    )
    bad_scenario = tmp_path / "s.yaml"
    text = (SCENARIOS / "china-30t.yaml").read_text().replace("headroom: 0.8", "headroom: 1.5")
    bad_scenario.write_text(text)
    replace = {
        "SCEN": str(SCENARIOS / "china-30t.yaml"),
        "BADACC": str(bad_acc),
        "BADSCEN": str(bad_scenario),
    }
    assert main([replace.get(a, a) for a in argv]) == 2
    assert needle in capsys.readouterr().err


def _html(tmp_path: Path, scenario: str) -> tuple[Path, str]:
    page = tmp_path / "html" / f"{scenario}.html"
    _fleet(tmp_path, scenario, "--html", str(page))
    return page, page.read_text(encoding="utf-8")


def test_html_page_of_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page, text = _html(tmp_path, "china-30t")
    assert f"fleet HTML: {page}" in " ".join(capsys.readouterr().out.split())
    assert count_images(text) == 1  # GPUs and MW per profile; no sweep, no sweep chart
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 1
    assert "<title>Fleet study: china-30t</title>" in text
    for name in (Path(p).stem for p in PROFILES):
        assert name in text
    for title in ("Fleet per profile (default model)", "FLOPs cross-check", "Assumptions"):
        assert title in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing loads from outside


def test_html_page_of_a_sweep_has_the_sweep_chart(tmp_path: Path) -> None:
    _, text = _html(tmp_path, "chatbot-to-agent-mix")
    assert count_images(text) == 2
    assert "against agent tokens per user" in text and "one line per profile" in text
    assert "Sweep: agent tokens per user" in text


def test_outputs_need_a_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "f.html"
    argv = ["fleet", "--profile", PROFILES[0], "--calibrate", "--html", str(page)]
    assert main([*argv, "--calibrate-out", str(tmp_path / "cal.json")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--html: no study to write without a scenario YAML" in err
    assert not page.exists() and not (tmp_path / "cal.json").exists()


@pytest.mark.browser
@pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("CI"),
    reason="Chromium not installed (apt-get install chromium); required when CI is set",
)
def test_china_30t_html_renders_in_chromium(tmp_path: Path) -> None:
    page, _ = _html(tmp_path, "china-30t")
    result = check_rendered(page)
    assert result.rendered == "ok", result.describe()
    assert result.images_expected == result.images_loaded == 1
    assert result.ok


def test_files_are_written_before_the_tables_are_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that goes away (`| head`) or a killed process must not lose the files: the
    printing fails here on the first table, and every file is already there."""

    def gone(*_: object) -> None:
        raise BrokenPipeError

    monkeypatch.setattr("harness.cli.fleet_cmd.print_sections", gone)
    out = {ext: tmp_path / f"f.{ext}" for ext in ("json", "md", "html")}
    cal = tmp_path / "cal.json"
    argv = ["fleet", str(SCENARIOS / "china-30t.yaml"), "--profile", *PROFILES,
            "--json", str(out["json"]), "--md", str(out["md"]), "--html", str(out["html"]),
            "--calibrate", "--calibrate-out", str(cal)]  # fmt: skip
    assert main(argv) == 1  # stdout is no closed pipe here: reported as an internal error
    for path in (*out.values(), cal):
        assert path.is_file() and path.stat().st_size > 0, path
    assert json.loads(out["json"].read_text())["scenario"]["name"] == "china-30t"


def _cpu_sweep(tmp_path: Path) -> Path:
    """A sweep directory measured on a CPU server: capacity, no power."""
    sweep = tmp_path / "cpu-sweep"
    sweep.mkdir()
    capacity = {
        "kind": "harness-capacity", "schema_version": 1, "name": "cpu-seqs4",
        "workload": "w", "load_kind": "concurrency", "slo": {"ttft_ms": 5000.0},
        "slo_target_attainment": 0.9,
        "capacity": {
            "load": 4.0, "run_dir": "c4", "devices": 1, "device_kind": "cpu",
            "accelerator": None, "capacity_tok_s": 100.0, "capacity_output_tok_s": 50.0,
            "capacity_requests_s": 1.0, "capacity_sessions_s": None, "busy_w": None,
            "busy_w_source": "unavailable", "idle_w": None, "tool_cpu_s_per_session": None,
        },
        "model": {"name": "tiny", "n_params": 2e6, "n_params_non_embedding": 1.5e6,
                  "n_layers": 2, "d_attn": 128, "mean_context_tok": 100.0},
    }  # fmt: skip
    (sweep / "capacity.json").write_text(json.dumps(capacity))
    return sweep


def test_a_cpu_measured_profile_counts_cpu_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = _cpu_sweep(tmp_path)
    out, page = tmp_path / "f.json", tmp_path / "f.html"
    argv = ["fleet", str(SCENARIOS / "china-30t.yaml"), "--profile", str(sweep),
            "--json", str(out), "--html", str(page)]  # fmt: skip
    assert main(argv) == 0
    fig = json.loads(out.read_text())["profiles"]["cpu-seqs4"]
    # 30e12 / 86,400 × 1.5 / (100 × 0.8) = 6,510,416.7 → 6,510,417 hosts, under the key `gpus`
    assert fig["gpus"] == 6_510_417 and fig["device_kind"] == "cpu"
    printed = " ".join(capsys.readouterr().out.split())
    assert "6,510,417 (CPU hosts)" in printed
    html = page.read_text(encoding="utf-8")
    assert "6,510,417 (CPU hosts)" in html and "GPUs (CPU hosts for profiles measured" in html


def _profile_with_accelerator(tmp_path: Path, accelerator: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: p\nsource: s\naccelerator: {accelerator}\ncapacity_tok_s: 1000\nbusy_w: 700\n"
        "idle_w: 100\nprecision: bf16\n"
    )
    return path


def test_a_profiles_accelerator_written_with_spaces_is_the_catalogs(tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    profile = _profile_with_accelerator(tmp_path, "'h100 sxm'")
    code = main(["fleet", str(SCENARIOS / "china-30t.yaml"), "--profile", str(profile),
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    assert "H100-SXM" in out.read_text() and "h100 sxm" not in out.read_text()


def test_a_mistyped_accelerator_suggests_the_catalogs_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = _profile_with_accelerator(tmp_path, "H100-SMX")
    assert main(["fleet", str(SCENARIOS / "china-30t.yaml"), "--profile", str(profile)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "key 'accelerator': 'H100-SMX' is not in the catalog (did you mean 'H100-SXM'" in err


@pytest.mark.parametrize(
    ("budget", "shown"), [("0.5", "0.5 MW"), ("1.5", "1.5 MW"), ("1000", "1,000 MW")]
)
def test_a_power_budget_caption_keeps_the_given_figure(
    tmp_path: Path, budget: str, shown: str
) -> None:
    """The campus chart's caption names the budget as given: 0.5 MW, not "0 MW"."""
    text = (SCENARIOS / "campus-1gw.yaml").read_text(encoding="utf-8")
    scenario = tmp_path / "campus.yaml"
    scenario.write_text(text.replace("facility_power_mw: 1000\n", f"facility_power_mw: {budget}\n"))
    page = tmp_path / "campus.html"
    argv = ["fleet", str(scenario), "--profile", *PROFILES, "--html", str(page)]
    assert main(argv) == 0
    html = page.read_text(encoding="utf-8")
    assert f"Sessions per day that {shown} of facility power serves" in html


def test_charts_with_nothing_measured_are_not_drawn_and_the_page_says_why(
    tmp_path: Path,
) -> None:
    """A CPU-measured profile has no power: its demand chart has the GPUs panel only (the
    caption names the panel left out), and the power budget, which it cannot answer, gets
    no chart but a note saying why."""
    sweep = _cpu_sweep(tmp_path)
    demand = tmp_path / "demand.html"
    argv = ["fleet", str(SCENARIOS / "china-30t.yaml"), "--profile", str(sweep)]
    assert main([*argv, "--html", str(demand)]) == 0
    text = demand.read_text(encoding="utf-8")
    assert count_images(text) == 1
    assert "not drawn, no profile has a figure for it: facility power (MW)" in text
    budget = tmp_path / "budget.html"
    argv = ["fleet", str(SCENARIOS / "campus-1gw.yaml"), "--profile", str(sweep)]
    assert main([*argv, "--html", str(budget)]) == 0
    text = budget.read_text(encoding="utf-8")
    assert count_images(text) == 0
    assert (
        "<li>The chart of the sessions per day the power budget serves is not drawn: no "
        "profile has "
        "a figure for sessions per day served or GPUs the power budget runs" in text
    )
