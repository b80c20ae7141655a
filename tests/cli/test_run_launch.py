"""`harness run --model DIR`: the launch's own options, the checks made before any server
starts, and (integration) the first command a new user runs, with no extra flags: the
launch path of a GPU node, run in CI with the CPU build's `vllm`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
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
    assert "full log: " in err and "server.log" in err
    # The failed start's log is kept in the run directory, where no run was written.
    assert "this stand-in never serves" in (tmp_path / "run" / "server.log").read_text()
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_start_past_its_timeout_names_the_option_and_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--server-start-timeout-s 1` and a server that never serves: exit 2 in seconds, the
    message names the option and its value, the log is the run directory's server.log, and
    the server process is gone."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = bin_dir / "pid"
    exe = bin_dir / "vllm"
    exe.write_text(
        f"#!{sys.executable}\nimport os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('INFO 12-02 06:14:58 [core.py:1] Starting to load model', flush=True)\n"
        "time.sleep(120)\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "run"
    t0 = time.monotonic()
    argv = ["run", str(DEMO), "--model", "some/model", "--server-start-timeout-s", "1"]
    code = main([*argv, "--out", str(out)])
    assert code == 2
    assert time.monotonic() - t0 < 30
    err = " ".join(capsys.readouterr().err.split())  # the console may wrap long lines
    assert "not ready after 1 s (last phase: loading weights)" in err
    assert "raise --server-start-timeout-s (now 1 s)" in err
    assert "Starting to load model" in (out / "server.log").read_text()
    assert not psutil.pid_exists(int(pid_file.read_text()))


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


def test_a_stop_while_the_server_starts_writes_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the launched server starts (its log already in the run directory):
    exit 143 as a shell reports it, no run written, the server stopped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = bin_dir / "pid"
    exe = bin_dir / "vllm"
    exe.write_text(
        f"#!{sys.executable}\nimport os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(120)\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "run"

    def stop_once_started() -> None:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_once_started)
    stopper.start()
    try:
        code = main(["run", str(DEMO), "--model", "some/model", "--out", str(out)])
    finally:
        stopper.join()
    assert code == 143
    assert sorted(p.name for p in out.iterdir()) == ["server.log"]
    assert not psutil.pid_exists(int(pid_file.read_text()))


LAUNCH_TAG_ENV = "HARNESS_TEST_LAUNCH_TAG"
"""Set on the harness under test only; every process it starts inherits it, so whatever of
the launch outlives the run is found however it was reparented."""
FIRST_RUN_DEADLINE_S = 420.0


@dataclass
class _Seen:
    """One process of the run's tree as last seen while the harness ran."""

    cmdline: list[str]
    ppid: int
    sid: int


def _tagged(tag: str) -> list[psutil.Process]:
    """Every live (not zombie) process on this host whose environment carries `tag`."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(LAUNCH_TAG_ENV) == tag and proc.status() != "zombie":
                found.append(proc)
    return found


def _left_behind(tag: str, grace_s: float = 5.0) -> list[psutil.Process]:
    """The tagged processes still alive `grace_s` after the harness exited (none, if it
    stopped what it started)."""
    deadline = time.monotonic() + grace_s
    while (left := _tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _watch(proc: subprocess.Popen[bytes], deadline: float) -> dict[int, _Seen]:
    """Every descendant of the running harness (its latest command line, parent and
    session, while it was alive) until the harness exits; AssertionError if it runs past
    `deadline`."""
    seen: dict[int, _Seen] = {}
    harness = psutil.Process(proc.pid)
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"harness run still running after {FIRST_RUN_DEADLINE_S:.0f} s")
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in harness.children(recursive=True):
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    if child.status() == psutil.STATUS_ZOMBIE:
                        continue  # an exited child's command line reads empty
                    seen[child.pid] = _Seen(child.cmdline(), child.ppid(), os.getsid(child.pid))
        time.sleep(0.25)
    return seen


def _stop_everything(proc: subprocess.Popen[bytes], tag: str) -> None:
    """However the test ends: the harness stopped (SIGINT first, so that it stops its own
    server), then whatever it left behind killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    left = _tagged(tag)
    for leftover in left:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    psutil.wait_procs(left, timeout=10)


@pytest.mark.integration
def test_first_run_with_the_cpu_build_needs_no_flags(tmp_path: Path) -> None:
    """`harness run workloads/demo-chatbot.yaml --model .vllm/model` with the CPU build's
    `vllm` on PATH and nothing else set (the path a GPU node takes): it starts its own vLLM
    on a port the OS hands out (CPU defaults applied, recorded and said), shows the
    start-up's phases, runs, records the launch (pid, command, version, its log kept in the
    run directory) as it happened, and leaves no process of the launch behind."""
    venv_bin = REPO / ".vllm" / "venv" / "bin"
    if not (venv_bin / "vllm").exists():
        pytest.fail("the vLLM CPU server is not set up (make setup-server)", pytrace=False)
    tag = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "HF_"))}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env['PATH']}"
    env[LAUNCH_TAG_ENV] = tag
    out = tmp_path / "first"
    console = tmp_path / "console.txt"
    harness = Path(sys.executable).with_name("harness")
    command = [str(harness), "run", "workloads/demo-chatbot.yaml", "--model", ".vllm/model"]
    with console.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "--max-requests", "6", "--no-report", "--out", str(out)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        seen = _watch(proc, time.monotonic() + FIRST_RUN_DEADLINE_S)
        left = _left_behind(tag)
        output = console.read_text()
        assert proc.returncode == 0, output[-4000:]
        assert "server: loading weights" in output or "server: weights loaded" in output, output
        assert "server: ready after" in output
        assert "CPU build of vLLM" in output and "--enforce-eager" in output

        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "finished"
        server = manifest["server"]
        launch = server["launch"]
        assert launch["kind"] == "launched" and launch["vllm_build"]["cpu"] is True
        settings = [d["setting"] for d in launch["defaults"]]
        assert settings[0] == "--enforce-eager"
        assert settings[1].startswith("VLLM_CPU_KVCACHE_SPACE=")
        assert launch["env"]["VLLM_CPU_KVCACHE_SPACE"] == settings[1].split("=")[1]
        # The port: none was given, so the OS handed out a free one; the run used it.
        port = launch["port"]
        low, high = (
            int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
        assert low <= port <= high
        assert server["base_url"] == f"http://127.0.0.1:{port}"
        vllm_serve = [str(venv_bin / "vllm"), "serve", ".vllm/model", "--host", "127.0.0.1"]
        assert launch["command"][:7] == [*vllm_serve, "--port", str(port)]
        assert "--enforce-eager" in launch["command"]
        # The version: the server's /version and the installed package's metadata agree.
        build_version = launch["vllm_build"]["version"]
        assert server["server_version"] and build_version
        assert build_version.split("+")[0] == server["server_version"]
        # The pid: the harness's own child, leader of a session of its own (so a group
        # signal stops it all), running exactly the recorded command; vLLM's engine ran in
        # that session too.
        pid = launch["pid"]
        assert pid in seen, seen
        assert seen[pid].ppid == proc.pid and seen[pid].sid == pid
        assert seen[pid].cmdline[-len(launch["command"]) :] == launch["command"]
        assert [p for p, s in seen.items() if s.sid == pid and p != pid], seen
        # Its output is the run directory's server.log, named so (relative) by the manifest.
        assert launch["log_path"] == "server.log"
        assert "Application startup complete" in (out / "server.log").read_text()

        summary = json.loads((out / "summary.json").read_text())
        assert summary["requests_completed"] == 4  # the demo's first 2 are warm-up
        assert summary["requests_failed"] == 0
        requests = pd.read_parquet(out / "requests.parquet")
        assert len(requests) == 6
        assert requests["ok"].all() and (requests["http_status"] == 200).all()
        assert (requests["output_tokens"] == requests["output_tokens_expected"]).all()
        measured = requests[~requests["warmup"]]
        assert summary["input_tokens"] == measured["prompt_tokens"].sum() > 0
        assert summary["output_tokens"] == measured["output_tokens"].sum() > 0
        # The launched server's own counters saw the run's six requests and no others.
        assert summary["server_metrics"]["phases"]["e2e"]["requests"] == 6

        # Gone: no process of the launch is left, and nothing listens on its port.
        assert not left, [p.cmdline() for p in left]
        assert not psutil.pid_exists(pid)
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        _stop_everything(proc, tag)
