"""Using a vLLM server: what the harness knows about it, and attaching to one that runs.

`Server` is the interface every server shares: a context manager whose `with` yields a
`ServerInfo`. `AttachedServer` uses a server that is already running; the servers the harness
starts itself (`EmbeddedServer`, `LaunchedServer`) live in `harness.server_process`. This module
also holds the health and inventory probes both kinds use. The harness never imports vllm; it
only talks HTTP to it (aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from harness.errors import ServerError
from harness.redact import redact, split_credentials

T = TypeVar("T")

DEFAULT_API_KEY_ENV = "HARNESS_API_KEY"
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ServerInfo:
    """What the harness knows about the server it measures; `to_dict()` is safe to write out."""

    base_url: str
    model: str
    max_model_len: int | None
    server_version: str | None
    launch: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = field(default=None, repr=False, compare=False)
    model_root: str | None = None
    basic_auth: str | None = field(default=None, repr=False, compare=False)
    """The `Authorization` value for credentials that came in the server's URL."""
    replicas: tuple[ServerInfo, ...] = ()
    """Every replica of a run against several (this info is the first's), else empty."""

    @property
    def urls(self) -> tuple[str, ...]:
        """The base URL of every server the run sends to: the replicas', or this one's."""
        return tuple(r.base_url for r in self.replicas) or (self.base_url,)

    def endpoints(self) -> tuple[tuple[str, dict[str, str]], ...]:
        """(base URL, headers) of every server the run sends to: the replicas', or this one's."""
        return tuple((r.base_url, r.headers()) for r in (self.replicas or (self,)))

    def headers(self) -> dict[str, str]:
        """HTTP headers every request to this server needs (the bearer token, or the URL's
        credentials as HTTP Basic, if any)."""
        if self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        if self.basic_auth:
            return {"Authorization": self.basic_auth}
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The inventory as plain data for the manifest; never contains the API key."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "max_model_len": self.max_model_len,
            "server_version": self.server_version,
            "model_root": self.model_root,
            "launch": json.loads(json.dumps(self.launch, default=str)),
            "replicas": [r.to_dict() for r in self.replicas] or None,
        }


def normalize_base_url(url: str) -> str:
    """Turn `host:port`, `http://h:p/` or `http://h:p/v1` into `http://h:p` (no trailing /v1)."""
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"not a server URL: {redact(url)!r} (expected http://HOST:PORT)")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def run_sync(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


async def _get_json(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str], timeout_s: float
) -> tuple[int, Any]:
    """GET a URL; return the status and the JSON body (or the text if it is not JSON, is nested
    too deeply to parse, or is not valid UTF-8)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with session.get(url, headers=dict(headers), timeout=timeout) as resp:
        text = await resp.text(errors="replace")
        try:
            return resp.status, json.loads(text)
        except (ValueError, RecursionError):
            return resp.status, text


def _shown(value: Any) -> str:
    """`TYPE VALUE` of an unexpected JSON value, cut to 60 characters, for an error message."""
    text = json.dumps(value, default=str)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def served_model(url: str, body: Any) -> dict[str, Any]:
    """The first model of a `/v1/models` answer (`{"data": [{"id": "...", ...}, ...]}`),
    checked: any other shape is a ServerError naming the URL and what was wrong."""
    if not isinstance(body, dict):
        raise ServerError(f"{url}: expected a JSON object with a 'data' list, got {_shown(body)}")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        got = "an empty list" if isinstance(data, list) else _shown(data)
        raise ServerError(f"{url}: 'data' should be a list of models, got {got}")
    entry = data[0]
    if not isinstance(entry, dict):
        raise ServerError(f"{url}: 'data[0]' should be a model object, got {_shown(entry)}")
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        got = "none" if model_id is None else _shown(model_id)
        raise ServerError(f"{url}: 'data[0].id' should name the served model, got {got}")
    return entry


async def take_inventory(
    base_url: str, headers: Mapping[str, str], timeout_s: float, key_hint: str
) -> tuple[str, int | None, str | None, str | None]:
    """Read the served model id, its root (path or hub id) and max_model_len (`/v1/models`) and
    the version (`/version`)."""
    url = f"{base_url}/v1/models"
    async with aiohttp.ClientSession() as session:
        try:
            status, models = await _get_json(session, url, headers, timeout_s)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ServerError(f"{url}: no answer ({type(err).__name__}: {err})") from None
        if status in (401, 403):
            raise ServerError(
                f"server at {base_url} refused the API key (HTTP {status}); {key_hint}"
            )
        if status != 200:
            raise ServerError(
                f"server at {base_url} gave no model list from /v1/models "
                f"(HTTP {status}: {str(models)[:200]})"
            )
        entry = served_model(url, models)
        model: str = entry["id"]
        raw_len = entry.get("max_model_len")
        max_model_len: int | None = None
        if isinstance(raw_len, int) and not isinstance(raw_len, bool) and raw_len > 0:
            max_model_len = raw_len
        version: str | None = None
        try:
            v_status, v_body = await _get_json(session, f"{base_url}/version", headers, timeout_s)
            if v_status == 200 and isinstance(v_body, dict) and v_body.get("version"):
                version = str(v_body["version"])
        except (aiohttp.ClientError, TimeoutError):
            version = None
    root = entry.get("root")
    return model, max_model_len, version, (root if isinstance(root, str) and root else None)


async def health_problem(base_url: str, headers: Mapping[str, str], timeout_s: float) -> str | None:
    """Check the server answers at all; return None if it does, else why it does not."""
    try:
        async with aiohttp.ClientSession() as session:
            await _get_json(session, f"{base_url}/health", headers, timeout_s)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


async def is_ready(
    session: aiohttp.ClientSession, base_url: str, headers: Mapping[str, str]
) -> bool:
    """True once `/health` is 200 and `/v1/models` lists a model."""
    try:
        status, _ = await _get_json(session, f"{base_url}/health", headers, PROBE_TIMEOUT_S)
        if status != 200:
            return False
        status, models = await _get_json(session, f"{base_url}/v1/models", headers, PROBE_TIMEOUT_S)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False
    if status in (401, 403):
        raise ServerError(f"server at {base_url} refused the API key on /v1/models")
    return status == 200 and isinstance(models, dict) and bool(models.get("data"))


class Server(ABC):
    """A vLLM server the harness can use: `with server as info:` starts or attaches, then stops."""

    _info: ServerInfo | None = None

    @abstractmethod
    def start(self) -> ServerInfo:
        """Start or attach, wait until it serves, and return its inventory."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what start() started (nothing for an attached server); safe to call twice."""

    @property
    def info(self) -> ServerInfo:
        """The inventory taken at start(); ServerError before that."""
        if self._info is None:
            raise ServerError(f"{type(self).__name__} is not started")
        return self._info

    def headers(self) -> dict[str, str]:
        """HTTP headers the client must send (the bearer token, if any)."""
        return self.info.headers()

    def __enter__(self) -> ServerInfo:
        """Start (or attach) and hand out the inventory."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server whatever happened inside the block."""
        self.stop()


class AttachedServer(Server):
    """A server somebody else runs; the harness only checks it and takes its inventory."""

    kind = "attached"

    def __init__(
        self, url: str, api_key_env: str = DEFAULT_API_KEY_ENV, timeout_s: float = PROBE_TIMEOUT_S
    ) -> None:
        """Name the server's URL and the environment variable that holds its API key; a
        user:password in the URL becomes an HTTP Basic header and is kept out of the URL."""
        self.base_url, self.basic_auth = split_credentials(normalize_base_url(url))
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s

    def start(self) -> ServerInfo:
        """Check that the URL answers, then take the inventory."""
        if self._info is not None:
            return self._info
        api_key = os.environ.get(self.api_key_env) or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if not headers and self.basic_auth:
            headers = {"Authorization": self.basic_auth}
        why = run_sync(lambda: health_problem(self.base_url, headers, self.timeout_s))
        if why is not None:
            raise ServerError(f"cannot reach the server at {self.base_url}: {why}")
        model, max_len, version, root = run_sync(
            lambda: take_inventory(
                self.base_url, headers, self.timeout_s, f"set {self.api_key_env} to the right key"
            )
        )
        launch = {
            "kind": self.kind,
            "url": self.base_url,
            "api_key_env": self.api_key_env,
            "api_key_set": api_key is not None,
            "url_credentials": self.basic_auth is not None,
        }
        self._info = ServerInfo(
            self.base_url, model, max_len, version, launch, api_key, root, self.basic_auth
        )
        return self._info

    def stop(self) -> None:
        """Forget the inventory; the server itself keeps running."""
        self._info = None


class AttachedReplicas(Server):
    """Several running replicas of one deployment (`--server` repeated): each is checked as an
    AttachedServer, a replica that does not answer is named, and all must serve the same
    model. The info is the first replica's, with every replica's in `replicas` and the least
    context window of them."""

    kind = "replicas"

    def __init__(
        self,
        urls: Sequence[str],
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self.servers = [AttachedServer(url, api_key_env, timeout_s) for url in urls]
        seen: set[str] = set()
        for server in self.servers:
            if server.base_url in seen:
                raise ServerError(f"--server {server.base_url} is given twice")
            seen.add(server.base_url)

    def start(self) -> ServerInfo:
        """Attach to every replica; ServerError naming the first that fails."""
        if self._info is not None:
            return self._info
        infos: list[ServerInfo] = []
        count = len(self.servers)
        for k, server in enumerate(self.servers, 1):
            try:
                infos.append(server.start())
            except ServerError as err:
                raise ServerError(f"replica {k} of {count}: {err}") from None
        first = infos[0]
        for k, info in enumerate(infos[1:], 2):
            if info.model != first.model:
                raise ServerError(
                    f"replica {k} of {count} ({info.base_url}) serves {info.model!r}, replica 1 "
                    f"({first.base_url}) {first.model!r}: replicas must serve the same model"
                )
        lengths = [i.max_model_len for i in infos if i.max_model_len is not None]
        launch = {**first.launch, "kind": self.kind, "replicas": len(infos)}
        self._info = replace(
            first,
            max_model_len=min(lengths) if lengths else None,
            launch=launch,
            replicas=tuple(infos),
        )
        return self._info

    def stop(self) -> None:
        """Forget the inventory; the replicas keep running."""
        self._info = None
