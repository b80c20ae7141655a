"""Tests of harness.server: the real vLLM CPU server (integration), attaching and URLs (unit)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness.errors import ServerError
from harness.server import AttachedServer, ServerInfo, normalize_base_url, take_inventory


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


# --- unit: /v1/models answers of unexpected shapes (an HTTP fixture, not a vLLM server) ----


@pytest.fixture
async def models_fixture() -> AsyncIterator[Callable[[bytes], Awaitable[str]]]:
    """Start an HTTP fixture on 127.0.0.1 whose `/v1/models` answers the given body (HTTP 200)
    and `/version` answers 404; gives its base URL. Not an inference server."""
    runners: list[web.AppRunner] = []

    async def start(body: bytes) -> str:
        async def models(_: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")

        app = web.Application()
        app.router.add_get("/v1/models", models)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b'{"data": "a string"}', "'data' should be a list of models, got str \"a string\""),
        (b'{"data": {"id": "m"}}', "'data' should be a list of models, got dict"),
        (b'{"data": []}', "'data' should be a list of models, got an empty list"),
        (b'{"object": "list"}', "'data' should be a list of models, got NoneType null"),
        (b'{"data": [1, 2]}', "'data[0]' should be a model object, got int 1"),
        (b'{"data": [["m"]]}', "'data[0]' should be a model object, got list"),
        (b'{"data": [{"object": "model"}]}', "'data[0].id' should name the served model, got none"),
        (b'{"data": [{"id": 7}]}', "'data[0].id' should name the served model, got int 7"),
        (b'{"data": [{"id": ""}]}', "'data[0].id' should name the served model, got str"),
        (b'["m"]', "expected a JSON object with a 'data' list, got list"),
        (b"not json", "expected a JSON object with a 'data' list, got str \"not json\""),
        (b"[" * 100_000, "expected a JSON object with a 'data' list, got str"),  # too deep
        (b'{"data": "\xff\xfe"}', "'data' should be a list of models, got str"),  # not UTF-8
    ],
)
async def test_unexpected_models_answer_is_a_server_error_naming_the_url(
    models_fixture: Callable[[bytes], Awaitable[str]], body: bytes, what: str
) -> None:
    base_url = await models_fixture(body)
    with pytest.raises(ServerError) as err:
        await take_inventory(base_url, {}, 5.0, "check the key")
    assert str(err.value).startswith(f"{base_url}/v1/models: ")
    assert what in str(err.value)


async def test_models_answer_gives_the_inventory(
    models_fixture: Callable[[bytes], Awaitable[str]],
) -> None:
    """A well-formed answer gives id, max_model_len and root; odd optional fields are None."""
    good = b'{"data": [{"id": "m", "max_model_len": 8192, "root": "/models/m"}]}'
    assert await take_inventory(await models_fixture(good), {}, 5.0, "") == (
        "m", 8192, None, "/models/m",
    )  # fmt: skip
    odd = b'{"data": [{"id": "m", "max_model_len": true, "root": ["x"]}]}'
    assert await take_inventory(await models_fixture(odd), {}, 5.0, "") == ("m", None, None, None)
