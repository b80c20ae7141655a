"""The OpenAI-compatible streaming client: one request in, one RequestRecord out.

Speaks `/v1/completions` (token-ID prompts, token-exact) and `/v1/chat/completions`.
Timestamps follow `vllm bench serve`: TTFT at the first chunk carrying generated tokens,
one ITL per later token chunk, output tokens from the final `usage` chunk. Streams go over
harness.http_stream, which parses SSE from each socket read as it arrives; every event in
one read carries that read's arrival time; msgspec decodes only the fields of an event the
record needs. Non-streaming probes use aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import msgspec
import orjson

from harness.errors import ServerError
from harness.http_stream import (
    ClientConnectorError,
    ClientOSError,
    HttpStreamError,
    ServerDisconnectedError,
    StreamPool,
)
from harness.records import RequestRecord

Api = Literal["completions", "chat"]

REQUEST_ID_HEADER = "X-Harness-Request-Id"
"""Sent with each streaming request: the record's id, so a null server can key its per-chunk
send stamps on it. Not `X-Request-Id`, which vLLM takes as its own request id."""


@dataclass(frozen=True)
class ClientOptions:
    """Per-run request options."""

    base_url: str
    model: str
    api: Api = "completions"
    ignore_eos: bool = True
    temperature: float = 0.0
    timeout_s: float = 600.0
    headers: tuple[tuple[str, str], ...] = ()
    max_connections: int = 0  # 0 = unlimited; replay's max_concurrency bounds it anyway


CANCELLED = "cancelled"
"""The error of a request cancelled in flight (the run stopped); the replay adds why."""


@dataclass
class Completion:
    """What the agent loop needs back besides the record: the generated token ids."""

    output_ids: list[int] | None
    connection_lost: bool = False
    """The server could not be connected to, or dropped the connection mid-response (a
    replica that went down), as opposed to answering with an error."""
    timed_out: bool = False
    """No complete answer came within the request timeout (a replica that hangs, or one too
    slow for the timeout)."""


def _payload(opts: ClientOptions, prompt: list[int] | str, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": opts.model,
        "max_tokens": max_tokens,
        "temperature": opts.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": opts.ignore_eos,
        "return_token_ids": True,
    }
    if opts.api == "completions":
        body["prompt"] = prompt
    else:
        body["messages"] = [{"role": "user", "content": prompt}]
    return body


def _encode(body: dict[str, Any]) -> bytes:
    """The request body as JSON bytes; the few values orjson refuses and `json` writes (lone
    surrogates in a chat prompt, integers beyond 64 bits) go through `json`."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body).encode()


def _chunk_tokens(api: Api, choice: dict[str, Any]) -> tuple[int, list[int] | None]:
    """Tokens a stream chunk carries, and their ids when the server returns them (vLLM's
    `return_token_ids`). Without ids, a completions chunk counts as one token, as in
    `vllm bench serve`; a chat chunk does unless it is the role-only opening chunk."""
    ids = choice.get("token_ids")
    if isinstance(ids, list):
        return len(ids), [int(i) for i in ids]
    if api == "completions":
        return 1, None
    delta = choice.get("delta") or {}
    return (0 if delta.get("role") or delta.get("content") is None else 1), None


async def chat_overhead_tokens(opts: ClientOptions, content: Callable[[int], str]) -> int:
    """Prompt tokens a chat request adds around its content (template, lead), measured on the
    server: two non-streaming probes of 8 and 32 content tokens must differ by exactly 24."""
    url = opts.base_url.rstrip("/") + "/v1/chat/completions"
    counts: list[int] = []
    timeout = aiohttp.ClientTimeout(total=opts.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers=dict(opts.headers)) as session:
        for words in (8, 32):
            body = {
                "model": opts.model,
                "messages": [{"role": "user", "content": content(words)}],
                "max_tokens": 1,
            }
            try:
                async with session.post(url, json=body) as resp:
                    data = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise ServerError(f"chat probe failed: HTTP {resp.status}: {data}")
            except (aiohttp.ClientError, TimeoutError) as err:
                raise ServerError(f"chat probe failed: {type(err).__name__}: {err}") from None
            counts.append(int(data["usage"]["prompt_tokens"]) - words)
    if counts[0] != counts[1]:
        raise ServerError(
            f"chat prompts are not token-exact on this server (overhead {counts[0]} vs "
            f"{counts[1]} tokens); use the completions API"
        )
    return counts[0]


class _Details(msgspec.Struct, gc=False):
    cached_tokens: int | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _Details | None = None


class _Choice(msgspec.Struct, gc=False):
    token_ids: list[int] | None = None
    delta: dict[str, Any] | None = None


class _Event(msgspec.Struct, gc=False):
    """The fields of a stream chunk the record needs; the rest are skipped, not decoded."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = msgspec.UNSET


_decode_event = msgspec.json.Decoder(_Event).decode


class _Recorder:
    """The SSE events of one streaming response, written into its record as they arrive."""

    def __init__(self, api: Api, record: RequestRecord) -> None:
        self.api = api
        self.record = record
        self.output_ids: list[int] = []
        self.have_ids = True  # every token chunk carried its ids
        self._chunk_ns = record.chunk_ns
        self._chunk_tokens = record.chunk_tokens

    def on_status(self, status: int) -> None:
        self.record.http_status = status

    def on_event(self, data: bytes, now_ns: int) -> bool:
        """One `data:` field and the arrival time of the read that completed it; True at
        the end of the stream (`[DONE]`, or an error event)."""
        if data == b"[DONE]":
            return True
        record = self.record
        try:
            event = _decode_event(data)
        except msgspec.ValidationError as err:  # valid JSON of the wrong shape
            raise ValueError(f"unexpected event {data[:200]!r}: {err}") from None
        choices = event.choices
        if choices:
            choice = choices[0]
            ids = choice.token_ids
            if ids is not None:  # vLLM's return_token_ids: the hot path
                count = len(ids)
            else:
                count, ids = _chunk_tokens(self.api, msgspec.structs.asdict(choice))
            if count > 0:
                if record.first_token_ns is None:
                    record.first_token_ns = now_ns
                self._chunk_ns.append(now_ns)
                self._chunk_tokens.append(count)
                record.last_token_ns = now_ns
                if ids is None:
                    self.have_ids = False
                else:
                    self.output_ids.extend(ids)
        elif event.error is not msgspec.UNSET:
            record.error = f"server error in stream: {json.dumps(event.error)[:300]}"
            return True
        usage = event.usage
        if usage is not None:
            record.prompt_tokens = usage.prompt_tokens
            record.output_tokens = usage.completion_tokens
            details = usage.prompt_tokens_details
            record.cached_prompt_tokens = None if details is None else details.cached_tokens
        return False


CONNECTION_LOST = (ClientConnectorError, ServerDisconnectedError, ClientOSError)
"""Failures that say the server is gone, not that it refused this request."""


class Client:
    """Sends streaming requests over a pool of keep-alive connections (harness.http_stream).

    Every event of a streamed response carries the arrival time of the socket read that
    completed it."""

    def __init__(self, opts: ClientOptions, now_ns: Callable[[], int]) -> None:
        self.opts = opts
        self._now_ns = now_ns
        path = "/v1/completions" if opts.api == "completions" else "/v1/chat/completions"
        self._url = opts.base_url.rstrip("/") + path
        self._pool: StreamPool | None = None

    async def __aenter__(self) -> Client:
        # Pooled connections are dropped after 4 s idle (http_stream.IDLE_S), before
        # uvicorn's 5 s keep-alive closes them server-side: reusing one the server is
        # closing fails the request.
        self._pool = StreamPool(
            self._url, self.opts.headers, self.opts.max_connections, self._now_ns
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def send(self, record: RequestRecord, prompt: list[int] | str) -> Completion:
        """Send one request and fill `record` in place; never raises for request failures."""
        assert self._pool is not None, "Client used outside 'async with'"
        body = _encode(_payload(self.opts, prompt, record.output_tokens_expected))
        recorder = _Recorder(self.opts.api, record)
        record.server = self.opts.base_url
        record.sent_ns = self._now_ns()
        lost = timed_out = False
        try:
            async with asyncio.timeout(self.opts.timeout_s):
                response = await self._pool.post(
                    body, ((REQUEST_ID_HEADER, record.request_id),), recorder
                )
            if response.status != 200:
                text = response.body.decode("utf-8", errors="replace")[:500]
                record.error = f"HTTP {response.status}: {text}"
                record.done_ns = self._now_ns()
                return Completion(None)
        except TimeoutError:
            record.error = f"timeout after {self.opts.timeout_s:g} s"
            timed_out = True
        except HttpStreamError as err:
            record.error = f"{type(err).__name__}: {err}"
            lost = isinstance(err, CONNECTION_LOST)
        except (ValueError, KeyError) as err:
            record.error = f"malformed stream: {err}"
        except asyncio.CancelledError:
            record.error = CANCELLED
            record.done_ns = self._now_ns()
            raise
        record.done_ns = self._now_ns()
        if record.error is None and record.output_tokens is None:
            record.error = "stream ended without a usage chunk"
        ok = recorder.have_ids and record.error is None
        ids = recorder.output_ids if ok else None
        return Completion(ids, connection_lost=lost, timed_out=timed_out)
