"""Tests of harness.server_process: starting, failing and stopping a server process (unit)."""

from __future__ import annotations

import os
import socket
import stat
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
