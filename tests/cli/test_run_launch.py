"""`harness run --model DIR`: the launch's own options, the checks made before any server
starts, and (integration) the first command a new user runs, with no extra flags."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli.dash_values import attach_dash_values
from harness.cli.run_options import split_vllm_args
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "workloads" / "demo-chatbot.yaml"


def _fake_vllm(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `vllm` first on PATH that records each launch (its arguments, one line per run) and
    exits 1 at once: the proof of whether, and how, a server was started."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    record = bin_dir / "launches.txt"
    exe = bin_dir / "vllm"
    exe.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(record)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "print('RuntimeError: this stand-in never serves')\nsys.exit(1)\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_dash_values_are_attached_to_vllm_arg() -> None:
    """`--vllm-arg --enforce-eager` becomes `--vllm-arg=--enforce-eager`; other options,
    plain values and everything after `--` stay as they are."""
    argv = ["run", "w.yaml", "--vllm-arg", "--enforce-eager", "--vllm-arg", "x", "--seed", "1"]
    assert attach_dash_values(argv) == [
        "run",
        "w.yaml",
        "--vllm-arg=--enforce-eager",
        "--vllm-arg",
        "x",
        "--seed",
        "1",
    ]
    assert attach_dash_values(["--", "--vllm-arg", "-x"]) == ["--", "--vllm-arg", "-x"]
    assert attach_dash_values(["--vllm-arg"]) == ["--vllm-arg"]


def test_vllm_arg_values_split_as_a_shell_would() -> None:
    """One value may hold an option and its argument; quotes keep words together."""
    assert split_vllm_args(["--enforce-eager", "--max-model-len 2048", "--x 'a b'"]) == (
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--x",
        "a b",
    )
    with pytest.raises(ConfigError, match="--vllm-arg"):
        split_vllm_args(["--chat-template 'unclosed"])


def test_spaced_vllm_args_reach_vllm_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--vllm-arg --enforce-eager --vllm-arg "--max-model-len 2048"` parses (argparse alone
    says "expected one argument") and both reach `vllm serve` as separate arguments; the
    failed start names the stand-in's error line."""
    record = _fake_vllm(tmp_path / "bin", monkeypatch)
    code = main(
        [
            "run",
            str(DEMO),
            "--model",
            "some/model",
            "--vllm-arg",
            "--enforce-eager",
            "--vllm-arg",
            "--max-model-len 2048",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    (launch,) = record.read_text().splitlines()
    assert launch.startswith("serve some/model --host 127.0.0.1 --port ")
    assert launch.endswith(" --enforce-eager --max-model-len 2048")
    err = capsys.readouterr().err
    assert "RuntimeError: this stand-in never serves" in err
    assert "full log: " in err


def test_execute_tools_without_a_calibration_fail_before_any_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--tools execute` with no calibration: exit 2 in a moment, saying how to make one, and
    no server process was started."""
    record = _fake_vllm(tmp_path / "bin", monkeypatch)
    monkeypatch.chdir(tmp_path)  # no results/tool-calibration.json here
    code = main(["run", str(DEMO), "--model", "some/model", "--tools", "execute"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no tool calibration" in err and "harness tools calibrate" in err
    assert not record.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tools", "execute", "--calibration", "bad.json"], "invalid calibration"),
        (["--tokenizer", "no/such-tokenizer-dir"], "cannot load tokenizer"),
        (["--out", "done"], "already holds a run"),
    ],
)
def test_bad_input_fails_before_any_server(
    extra: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unreadable calibration, a tokenizer that does not load, a run directory that holds
    a run: each fails before the server starts."""
    record = _fake_vllm(tmp_path / "bin", monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "manifest.json").write_text("{}")
    code = main(["run", str(DEMO), "--model", "some/model", *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not record.exists()


@pytest.mark.integration
def test_first_run_with_the_cpu_build_needs_no_flags(tmp_path: Path) -> None:
    """`harness run workloads/demo-chatbot.yaml --model .vllm/model` with the CPU build's
    `vllm` on PATH and nothing else set: it starts its own vLLM (CPU defaults applied,
    recorded and said), shows the start-up's phases, runs and writes its results."""
    venv_bin = REPO / ".vllm" / "venv" / "bin"
    if not (venv_bin / "vllm").exists():
        pytest.fail("the vLLM CPU server is not set up (make setup-server)", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "HF_"))}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env['PATH']}"
    out = tmp_path / "first"
    harness = Path(sys.executable).with_name("harness")
    command = [str(harness), "run", "workloads/demo-chatbot.yaml", "--model", ".vllm/model"]
    done = subprocess.run(
        [*command, "--max-requests", "6", "--out", str(out)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "server: loading weights" in output or "server: weights loaded" in output, output
    assert "server: ready after" in output
    assert "CPU build of vLLM" in output and "--enforce-eager" in output
    manifest = json.loads((out / "manifest.json").read_text())
    launch = manifest["server"]["launch"]
    assert launch["kind"] == "launched" and launch["vllm_build"]["cpu"] is True
    settings = [d["setting"] for d in launch["defaults"]]
    assert settings[0] == "--enforce-eager"
    assert settings[1].startswith("VLLM_CPU_KVCACHE_SPACE=")
    assert "--enforce-eager" in launch["command"]
    assert launch["env"]["VLLM_CPU_KVCACHE_SPACE"] == settings[1].split("=")[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests_completed"] == 4  # the demo's first 2 are warm-up
    assert summary["requests_failed"] == 0
    with pytest.raises(ProcessLookupError):
        os.kill(launch["pid"], 0)  # the launched server is gone
