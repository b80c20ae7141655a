"""`harness sweep` rejects bad input with exit code 2 and a message naming the flag or file,
before any server is started (ServerChoice.server is replaced by one that fails the test)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.run.plan import ServerChoice
from harness.server import Server, ServerInfo

REPO = Path(__file__).resolve().parents[2]

_WORKLOAD = """\
name: synth
source:
  synthetic: chatbot
arrival:
  pattern: poisson
  rate_per_s: 1
"""
_SLO = """\
slo:
  ttft_ms: 1000
"""


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Every bad-input case here must fail before a server is made (the integration test
    at the end uses the real one)."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: ServerChoice, *_: object, **__: object) -> Server:
        raise AssertionError("a server was made: bad input must fail before a server")

    monkeypatch.setattr(ServerChoice, "server", refuse)


def _workload(tmp_path: Path, slo: bool = True) -> Path:
    path = tmp_path / ("with-slo.yaml" if slo else "no-slo.yaml")
    path.write_text(_WORKLOAD + (_SLO if slo else ""))
    return path


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def _sweep(tmp_path: Path, *extra: str, slo: bool = True) -> int:
    out = tmp_path / "sweep"
    argv = ["sweep", str(_workload(tmp_path, slo)), "--out", str(out), *extra]
    return main(argv)


def test_no_slo_anywhere_names_the_file_and_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sweep(tmp_path, "--rates", "1,2", slo=False) == 2
    err = _err(capsys)
    assert "no-slo.yaml" in err and "needs an SLO" in err
    for flag in ("--slo-ttft-ms", "--slo-tpot-ms", "--slo-e2el-ms"):
        assert flag in err
    assert not (tmp_path / "sweep").exists()


def test_slo_flag_stands_in_for_the_workloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --slo-ttft-ms the SLO-less workload gets past the SLO check (to the next error)."""
    code = _sweep(
        tmp_path, "--rates", "1", "--slo-ttft-ms", "500", "--accelerator", "Z9", slo=False
    )
    assert code == 2
    err = _err(capsys)
    assert "needs an SLO" not in err and "--accelerator 'Z9'" in err


def test_invalid_slo_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep(tmp_path, "--rates", "1", "--slo-tpot-ms", "-5") == 2
    assert _err(capsys) == "error: --slo-tpot-ms -5.0: Input should be greater than 0"


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--rates", "1,4,2", "--rates: loads must rise"),
        ("--rates", "1,1", "--rates: loads must rise"),
        ("--rates", "1,x", "--rates: expected comma-separated numbers"),
        ("--rates", "0,1", "--rates: every load must be positive"),
        ("--rates", "-1", "--rates: every load must be positive"),
        ("--rates", "nan", "--rates: every load must be positive"),
        ("--rates", "1,inf", "--rates: every load must be positive"),
        ("--rates", "", "--rates: every load must be positive"),
        ("--concurrencies", "4,2", "--concurrencies: loads must rise"),
        ("--concurrencies", "1.5", "--concurrencies: expected comma-separated numbers"),
        ("--concurrencies", "0", "--concurrencies: every load must be positive"),
    ],
)
def test_bad_loads_name_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, needle: str
) -> None:
    assert _sweep(tmp_path, flag, value) == 2
    assert needle in _err(capsys)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("value", ["0", "-0.5", "1.01", "nan"])
def test_slo_attainment_outside_0_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert _sweep(tmp_path, "--rates", "1", "--slo-attainment", value) == 2
    assert "--slo-attainment must be in (0, 1]" in _err(capsys)


def test_slo_attainment_of_one_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1.0 passes the attainment check (the run then stops at the next bad input)."""
    assert _sweep(tmp_path, "--rates", "1", "--slo-attainment", "1", "--devices", "0") == 2
    err = _err(capsys)
    assert "--slo-attainment" not in err and "--devices must be at least 1" in err


def test_accelerator_not_in_the_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _sweep(tmp_path, "--rates", "1,2", "--accelerator", "Z9000") == 2
    err = _err(capsys)
    assert "--accelerator 'Z9000' is not in the catalog" in err
    assert "H100-SXM" in err  # the known names are listed
    assert not (tmp_path / "sweep" / "capacity.json").exists()


@pytest.mark.parametrize("written", ["H100 SXM", "h100_sxm"])
def test_accelerator_written_loosely_is_the_catalogs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str
) -> None:
    """`H100 SXM` is the catalog's `H100-SXM`: past the catalog check to the next error."""
    assert _sweep(tmp_path, "--rates", "1", "--accelerator", written, "--devices", "0") == 2
    err = _err(capsys)
    assert "not in the catalog" not in err and "--devices must be at least 1" in err


def test_a_mistyped_accelerator_suggests_the_catalogs_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sweep(tmp_path, "--rates", "1", "--accelerator", "H100 SXMM") == 2
    assert "'H100 SXMM' is not in the catalog (did you mean 'H100-SXM'" in _err(capsys)


def test_existing_sweep_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "capacity.json").write_text("{}")
    assert _sweep(tmp_path, "--rates", "1,2") == 2
    err = _err(capsys)
    assert "a sweep is already there" in err and "--overwrite" in err
    assert (out / "capacity.json").read_text() == "{}"


def test_overwrite_gets_past_the_existing_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "capacity.json").write_text("{}")
    assert _sweep(tmp_path, "--rates", "1,2", "--overwrite", "--accelerator", "Z9") == 2
    err = _err(capsys)
    assert "already there" not in err and "not in the catalog" in err


def test_rates_and_concurrencies_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _sweep(tmp_path, "--rates", "1", "--concurrencies", "2")
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.integration
def test_sweep_against_the_real_server_writes_points_and_capacity(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sweep workload replayed from its trace's own timing, so each --rates point says
    that its rate replaced it; each point gets its reports and CSV as a run does."""
    out = tmp_path / "sweep"
    workload = tmp_path / "sweep-trace.yaml"
    text = (REPO / "workloads" / "sweep-chatbot.yaml").read_text()
    trace = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"
    text = text.replace("trace: traces/", f"trace: {trace.parent}/")
    workload.write_text(text.replace("pattern: poisson", "pattern: trace"))
    code = main(
        [
            "sweep",
            str(workload),
            "--csv",
            "--percentiles",
            "50,99",
            "--server",
            vllm_server.base_url,
            "--rates",
            "2,4",
            "--duration",
            "3",
            "--slo-ttft-ms",
            "60000",
            "--slo-tpot-ms",
            "10000",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    doc = json.loads((out / "capacity.json").read_text())
    assert doc["kind"] == "harness-capacity" and doc["status"] == "finished"
    assert [p["load"] for p in doc["points"]] == [2.0, 4.0]
    printed = " ".join(capsys.readouterr().out.split())
    for point in doc["points"]:
        run_dir = out / point["run_dir"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert point["total_throughput_tok_s"] == summary["total_throughput_tok_s"]
        assert point["requests_completed"] == summary["requests_completed"] > 0
        load = summary["load"]
        assert load["pattern"] == "poisson" and load["trace_timing_replaced"] is True
        note = f"--rate {point['load']:g} replaced the trace's own timestamps with Poisson"
        assert load["note"].startswith(note) and f"note: {note}" in printed
        assert summary["percentiles"] == [50.0, 99.0]
        for name in ("report.md", "report.html", "requests.csv", "summary.csv"):
            assert (run_dir / name).is_file(), name
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    cap = doc["capacity"]
    met = [p for p in doc["points"] if p["meets_slo"]]
    assert met, "a 60 s TTFT SLO is met on this server at 2-4 requests/s"
    best = max(met, key=lambda p: p["load"])
    assert cap["load"] == best["load"] and cap["devices"] == 1 and cap["device_kind"] == "cpu"
    assert cap["capacity_tok_s"] == best["total_throughput_tok_s"]
    # No GPU here: power is unavailable, never 0.
    assert cap["busy_w"] is None and cap["busy_w_source"] == "unavailable"
    assert doc["model"]["n_params"] and doc["model"]["n_layers"]
    assert doc["model"]["mean_context_tok"] > 0
    assert doc["server"] == {
        "urls": [vllm_server.base_url],
        "model": vllm_server.model,
        "server_version": vllm_server.server_version,
        "launch_kind": "attached",
    }


@pytest.mark.integration
def test_sigterm_stops_a_sweep_and_keeps_its_points(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    """SIGTERM during the first point: that point's results are written, no further point
    runs, capacity.json says interrupted, and the exit is 143."""
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "sweep",
            str(REPO / "workloads" / "sweep-chatbot.yaml"),
            "--server",
            vllm_server.base_url,
            "--rates",
            "2,4,8",
            "--duration",
            "20",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    journal = out / "points" / "rate-2" / "requests.partial.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (journal.exists() and journal.stat().st_size):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output.decode()[-2000:]
    doc = json.loads((out / "capacity.json").read_text())
    assert doc["status"] == "interrupted"
    assert [p["load"] for p in doc["points"]] == [2]
    assert (out / "points" / "rate-2" / "summary.json").exists()
    assert not (out / "points" / "rate-4").exists()


def test_rerun_command_sets_the_ladder_and_a_new_out_keeping_the_rest() -> None:
    from harness.cli.sweep_cmd import rerun_command

    argv = [
        "sweep",
        "w.yaml",
        "--rates",
        "1,2",
        "--server",
        "http://h",
        "--out",
        "o",
        "--overwrite",
    ]
    assert rerun_command(argv, "--rates", "0.25,0.5", Path("o-lower")) == [
        "harness", "sweep", "w.yaml", "--server", "http://h", "--rates", "0.25,0.5",
        "--out", "o-lower", "--overwrite",
    ]  # fmt: skip
    argv = ["sweep", "w.yaml", "--concurrencies=4,8", "--duration", "3"]
    assert rerun_command(argv, "--concurrencies", "1,2", Path("results/s-lower")) == [
        "harness", "sweep", "w.yaml", "--duration", "3", "--concurrencies", "1,2",
        "--out", "results/s-lower", "--overwrite",
    ]  # fmt: skip


@pytest.mark.integration
def test_a_sweep_whose_every_load_misses_suggests_lower_loads_and_writes_its_report(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SLO no load can meet (TTFT under 1 µs): the sweep stops after two misses, says
    which lower rates to try and the command that runs them, and writes its own report."""
    out = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            str(REPO / "workloads" / "sweep-chatbot.yaml"),
            "--server",
            vllm_server.base_url,
            "--rates",
            "1,2,4",
            "--duration",
            "2",
            "--refine",
            "0",
            "--slo-ttft-ms",
            "0.001",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = " ".join(capsys.readouterr().out.split())
    doc = json.loads((out / "capacity.json").read_text())
    assert [p["meets_slo"] for p in doc["points"]] == [False, False]
    assert doc["stop_reason"] in ("slo_missed_twice", "saturated")
    assert "no load met the SLO" in printed
    assert "try lower loads, --rates 0.125,0.25,0.5" in printed
    assert "--rates 0.125,0.25,0.5 --out" in printed and f"{out}-lower" in printed
    md = (out / "report.md").read_text()
    assert "## Load ladder" in md and "missed" in md and "--rates 0.125,0.25,0.5" in md
    assert (out / "report.html").is_file() and (out / "throughput_latency.png").is_file()


def _sweep_args(*argv: str) -> argparse.Namespace:
    from harness.cli import sweep_cmd

    parser = argparse.ArgumentParser()
    sweep_cmd.add_parser(parser.add_subparsers())
    return parser.parse_args(["sweep", *argv])


def test_a_rate_on_a_trace_workload_is_said_for_each_point(tmp_path: Path) -> None:
    """--rates on a trace workload: each point's plan carries the note that its rate
    replaced the trace's timing and the workload's own pattern (summary.load's flag)."""
    from harness.cli.common import resolve_workload
    from harness.cli.run_cmd import run_plan
    from harness.cli.sweep_cmd import point_plan
    from harness.run.finish import load_applied

    workload = REPO / "workloads" / "chatbot-azure.yaml"
    args = _sweep_args(str(workload), "--rates", "2,4")
    base = resolve_workload(workload, None)
    plan = point_plan(run_plan(args, base, tmp_path / "points"), base, args, "rate", 4.0)
    assert plan.out == tmp_path / "points" / "rate-4"
    assert plan.spec.arrival.pattern == "poisson" and plan.spec.arrival.rate_per_s == 4.0
    assert plan.load_note is not None
    assert plan.load_note.startswith("--rate 4 replaced the trace's own timestamps with Poisson")
    load = load_applied(plan.spec, 1, plan.load_note, plan.workload_pattern)
    assert load.trace_timing_replaced is True and load.note == plan.load_note
    # A Poisson workload's own timing is what a rate sets: nothing replaced, no note.
    poisson = _sweep_args(str(_workload(tmp_path)), "--rates", "2")
    spec = resolve_workload(_workload(tmp_path), None)
    plan = point_plan(run_plan(poisson, spec, tmp_path / "p"), spec, poisson, "rate", 2.0)
    assert plan.load_note is None
    assert load_applied(plan.spec, 1, None, plan.workload_pattern).trace_timing_replaced is False


def test_the_suggested_lower_ladder_can_be_run_twice(tmp_path: Path) -> None:
    """The printed command replaces the lower ladder a first run of it left (--overwrite),
    so running it again never stops at "a sweep is already there"."""
    from harness.cli.sweep_cmd import rerun_command

    out = tmp_path / "s-lower"
    command = rerun_command(["sweep", "w.yaml", "--rates", "1,2"], "--rates", "0.5", out)
    args = _sweep_args(*command[2:])
    assert args.out == out and args.rates == "0.5" and args.overwrite is True


def _stopped_while_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's start-up is cut short by a real SIGTERM to this process (what a user's
    `kill` does while vLLM starts); no server is made."""

    @contextlib.contextmanager
    def starting(
        self: ServerChoice, progress: object = None, log_path: object = None
    ) -> Iterator[ServerInfo]:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises here, at once
        raise AssertionError("SIGTERM did not stop the sweep")
        yield  # pragma: no cover

    monkeypatch.setattr(ServerChoice, "server", starting)


def test_a_sweep_stopped_before_its_points_still_writes_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stopped_while_starting(monkeypatch)
    assert _sweep(tmp_path, "--rates", "1,2") == 143
    out = tmp_path / "sweep"
    assert json.loads((out / "capacity.json").read_text())["status"] == "interrupted"
    assert "## Load ladder" in (out / "report.md").read_text()
    assert (out / "report.html").is_file()


def test_no_report_leaves_the_interrupted_sweep_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stopped_while_starting(monkeypatch)
    assert _sweep(tmp_path, "--rates", "1,2", "--no-report") == 143
    out = tmp_path / "sweep"
    assert (out / "capacity.json").is_file() and not (out / "report.md").exists()


def test_a_sweep_report_that_fails_is_a_warning_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As at the end of `harness run`: capacity.json is written, so a report that cannot be
    rendered is a warning naming the command that tries again; the exit is the sweep's."""
    from harness.cli import sweep_cmd

    def broken(sweep_dir: Path) -> list[Path]:
        raise OSError("disk full")

    monkeypatch.setattr(sweep_cmd, "write_sweep_report", broken)
    _stopped_while_starting(monkeypatch)
    assert _sweep(tmp_path, "--rates", "1,2") == 143
    out = tmp_path / "sweep"
    captured = capsys.readouterr()
    printed = " ".join((captured.out + captured.err).split())
    assert "report not written (OSError: disk full)" in printed
    assert f"the sweep's capacity.json and points are kept: harness report {out}" in printed
    assert "internal error" not in printed and (out / "capacity.json").is_file()


def test_a_sweep_takes_the_runs_answer_options(tmp_path: Path) -> None:
    """--percentiles, --csv and --no-report as `harness run` has them, for every point."""
    from harness.cli.common import resolve_workload
    from harness.cli.run_cmd import run_plan

    workload = _workload(tmp_path)
    args = _sweep_args(str(workload), "--rates", "1", "--percentiles", "50,99", "--csv")
    assert args.percentiles == (50.0, 99.0) and args.csv is True and args.no_report is False
    plan = run_plan(args, resolve_workload(workload, None), tmp_path / "points")
    assert plan.percentiles == (50.0, 99.0)
    assert _sweep_args(str(workload), "--rates", "1", "--no-report").no_report is True


def test_a_sweep_with_gpu_metrics_counts_the_exporters_gpus() -> None:
    """The GPU nodes' GPUs are the server's devices (count, catalog accelerator by the
    exporter's modelName), and a count that differs from them is said in their words."""
    from dcgm_exposition import DcgmExposition, ServedGpu, serve

    from harness.cli import sweep_cmd
    from harness.telemetry.dcgm import dcgm_inventory

    node = DcgmExposition(
        [ServedGpu("GPU-a", 0, 300.0, 1_000_000), ServedGpu("GPU-b", 1, 300.0, 1_000_000)]
    )
    with serve(node) as url:
        gpus = dcgm_inventory([url])
    args = _sweep_args("w.yaml", "--rates", "1", "--gpu-metrics", url)
    devices, kind, accelerator = sweep_cmd._devices(args, gpus)
    assert (devices, kind, accelerator) == (2, "gpu", "H100-SXM")
    assert sweep_cmd._power_note(gpus, 2, "gpu") is None
    note = sweep_cmd._power_note(gpus, 1, "gpu")
    assert note is not None and note.startswith("the DCGM exporters report 2 GPUs but")


def _device_args(**given: object) -> argparse.Namespace:
    defaults: dict[str, object] = {"devices": None, "gpus": None, "accelerator": None}
    return argparse.Namespace(**{**defaults, "catalog": None, **given})


def test_the_device_count_follows_gpus_and_what_a_point_told() -> None:
    from harness.cli.sweep_cmd import _devices, _told_devices

    eight = {"available": True, "gpus": [{"name": "NVIDIA H100 80GB HBM3"}] * 8}
    assert _devices(_device_args(), eight)[0] == 8
    assert _devices(_device_args(gpus=("2", "5")), eight)[0] == 2
    assert _devices(_device_args(devices=4, gpus=("2", "5")), eight)[0] == 4
    told = {"gpu_devices": 2, "gpu_attribution": "processes"}
    assert _told_devices(_device_args(), told, 8) == 2
    assert _told_devices(_device_args(), told, 2) is None  # already so
    assert _told_devices(_device_args(devices=8), told, 8) is None  # the user's count stands
    assert _told_devices(_device_args(), {"gpu_devices": None}, 8) is None  # not told
