"""Tests of harness.server: the real vLLM CPU server (integration) and the failure paths (unit)."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.errors import ServerError
from harness.server import (
    AttachedServer,
    EmbeddedServer,
    LaunchedServer,
    ServerInfo,
    api_key_from_args,
    normalize_base_url,
    redact_args,
)


async def _post(info: ServerInfo, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a JSON body to the server and return the JSON answer (asserting HTTP 200)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{info.base_url}{path}", json=body, headers=info.headers()) as resp,
    ):
        text = await resp.text()
        assert resp.status == 200, text
        data: dict[str, Any] = json.loads(text)
        return data


def _closed_port() -> int:
    """A local TCP port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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


# --- integration: the real vLLM CPU server -------------------------------------------------


@pytest.mark.integration
def test_inventory(vllm_server: ServerInfo) -> None:
    """The inventory names the served model, its 8192-token context and the vLLM version."""
    assert vllm_server.model
    assert vllm_server.max_model_len == 8192
    assert vllm_server.server_version
    assert vllm_server.base_url.startswith("http://")
    out = vllm_server.to_dict()
    assert out["model"] == vllm_server.model
    json.dumps(out)  # plain data, ready for the manifest


@pytest.mark.integration
async def test_token_id_completion_exact_lengths(vllm_server: ServerInfo) -> None:
    """A token-id prompt with ignore_eos gives exactly the asked-for output length."""
    ids = [10, 20, 30, 40, 50, 60, 70]
    data = await _post(
        vllm_server,
        "/v1/completions",
        {
            "model": vllm_server.model,
            "prompt": ids,
            "max_tokens": 8,
            "ignore_eos": True,
            "return_token_ids": True,
        },
    )
    assert data["usage"]["completion_tokens"] == 8
    assert data["usage"]["prompt_tokens"] == len(ids)
    choice = data["choices"][0]
    assert len(choice["token_ids"]) == 8
    assert choice["prompt_token_ids"] == ids  # no BOS added to token-id prompts


@pytest.mark.integration
async def test_chat_completion(vllm_server: ServerInfo) -> None:
    """The tiny model's chat template works through /v1/chat/completions."""
    data = await _post(
        vllm_server,
        "/v1/chat/completions",
        {
            "model": vllm_server.model,
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 4,
            "ignore_eos": True,
        },
    )
    assert data["usage"]["completion_tokens"] == 4
    assert data["usage"]["prompt_tokens"] > 4


@pytest.mark.integration
def test_attach_to_running_server(vllm_server: ServerInfo) -> None:
    """AttachedServer takes the same inventory from a running server's URL (with /v1 too)."""
    with AttachedServer(vllm_server.base_url + "/v1/") as info:
        assert info.model == vllm_server.model
        assert info.max_model_len == vllm_server.max_model_len
        assert info.server_version == vllm_server.server_version
        assert info.launch["kind"] == "attached"


# --- unit: no server ---------------------------------------------------------------------


def test_attached_closed_port_fails_fast() -> None:
    """Attaching to a port nobody listens on raises a ServerError naming the URL, quickly."""
    url = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=url.replace(".", r"\.")):
        AttachedServer(url).start()
    assert time.monotonic() - t0 < 5.0


def test_attached_sends_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bearer token comes from the named environment variable and stays out of to_dict()."""
    monkeypatch.setenv("MY_KEY_ENV", "s3cret")
    server = AttachedServer("127.0.0.1:1", api_key_env="MY_KEY_ENV")
    assert server.base_url == "http://127.0.0.1:1"
    info = ServerInfo("http://x", "m", 1, "v", {"kind": "attached"}, api_key="s3cret")
    assert info.headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in json.dumps(info.to_dict())
    assert "s3cret" not in repr(info)
    assert ServerInfo("http://x", "m", 1, "v").headers() == {}


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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://h:1/", "http://h:1"),
        ("http://h:1/v1", "http://h:1"),
        ("https://h/prefix/v1/", "https://h/prefix"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    """Server URLs are normalised to scheme://host:port[/prefix] without /v1."""
    assert normalize_base_url(given) == expected


def test_normalize_base_url_rejects_garbage() -> None:
    """A URL that is not http(s) is a ServerError."""
    with pytest.raises(ServerError):
        normalize_base_url("ftp://x")
