"""The OpenAI-compatible streaming client: one request in, one RequestRecord out.

Speaks `/v1/completions` (token-ID prompts, token-exact) and `/v1/chat/completions`.
Timestamps follow `vllm bench serve`: TTFT at the first chunk carrying generated tokens,
one ITL per later token chunk, output tokens from the final `usage` chunk. The SSE stream is
parsed from bulk reads; every event in one read carries that read's arrival time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson

from harness.errors import ServerError
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


@dataclass
class Completion:
    """What the agent loop needs back besides the record: the generated token ids."""

    output_ids: list[int] | None


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


class Client:
    """Sends streaming requests over one shared aiohttp session."""

    def __init__(self, opts: ClientOptions, now_ns: Callable[[], int]) -> None:
        self.opts = opts
        self._now_ns = now_ns
        path = "/v1/completions" if opts.api == "completions" else "/v1/chat/completions"
        self._url = opts.base_url.rstrip("/") + path
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        # Pooled connections are dropped after 4 s idle, before uvicorn's 5 s keep-alive
        # closes them server-side: reusing one the server is closing fails the request.
        connector = aiohttp.TCPConnector(
            limit=self.opts.max_connections, keepalive_timeout=4.0, force_close=False
        )
        timeout = aiohttp.ClientTimeout(total=self.opts.timeout_s)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=dict(self.opts.headers)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, record: RequestRecord, prompt: list[int] | str) -> Completion:
        """Send one request and fill `record` in place; never raises for request failures."""
        assert self._session is not None, "Client used outside 'async with'"
        body = _encode(_payload(self.opts, prompt, record.output_tokens_expected))
        headers = {"Content-Type": "application/json", REQUEST_ID_HEADER: record.request_id}
        output_ids: list[int] = []
        have_ids = False
        record.sent_ns = self._now_ns()
        try:
            async with self._session.post(self._url, data=body, headers=headers) as resp:
                record.http_status = resp.status
                if resp.status != 200:
                    text = (await resp.text())[:500]
                    record.error = f"HTTP {resp.status}: {text}"
                    record.done_ns = self._now_ns()
                    return Completion(None)
                have_ids = await self._read_stream(resp.content, record, output_ids)
        except TimeoutError:
            record.error = f"timeout after {self.opts.timeout_s:g} s"
        except aiohttp.ClientError as err:
            record.error = f"{type(err).__name__}: {err}"
        except (ValueError, KeyError) as err:
            record.error = f"malformed stream: {err}"
        except asyncio.CancelledError:
            record.error = "cancelled"
            record.done_ns = self._now_ns()
            raise
        record.done_ns = self._now_ns()
        if record.error is None and record.output_tokens is None:
            record.error = "stream ended without a usage chunk"
        return Completion(output_ids if have_ids and record.error is None else None)

    async def _read_stream(
        self, content: aiohttp.StreamReader, record: RequestRecord, output_ids: list[int]
    ) -> bool:
        """Parse the SSE stream into `record` from bulk reads: one timestamp per read, taken
        when its bytes reached the client, shared by every event in it. Returns whether every
        token chunk carried its ids (collected in `output_ids`)."""
        read = content.readany
        now_ns = self._now_ns
        loads = orjson.loads
        api = self.opts.api
        chunk_ns = record.chunk_ns
        chunk_tokens = record.chunk_tokens
        have_ids = True
        pending = b""  # an incomplete last line, completed by the next read
        data = b""
        try:
            while True:
                chunk = await read()
                now = now_ns()
                if chunk:
                    if pending:
                        chunk = pending + chunk
                    lines = chunk.splitlines()
                    last = chunk[-1]
                    pending = b"" if last == 10 or last == 13 else lines.pop()
                elif pending:  # end of stream after a line without its newline
                    lines = [pending]
                    pending = b""
                else:
                    return have_ids
                for line in lines:
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue  # blank line, comment (keep-alive), event:, id:
                    data = line[5:].lstrip()
                    if data == b"[DONE]":
                        return have_ids
                    event = loads(data)
                    choices = event.get("choices")
                    if choices:
                        count, ids = _chunk_tokens(api, choices[0])
                        if count > 0:
                            if record.first_token_ns is None:
                                record.first_token_ns = now
                            chunk_ns.append(now)
                            chunk_tokens.append(count)
                            record.last_token_ns = now
                            if ids is None:
                                have_ids = False
                            else:
                                output_ids.extend(ids)
                    elif "error" in event:
                        record.error = f"server error in stream: {json.dumps(event['error'])[:300]}"
                        return have_ids
                    usage = event.get("usage")
                    if usage:
                        record.prompt_tokens = usage.get("prompt_tokens")
                        record.output_tokens = usage.get("completion_tokens")
                        details = usage.get("prompt_tokens_details") or {}
                        record.cached_prompt_tokens = details.get("cached_tokens")
        except (TypeError, AttributeError) as err:  # valid JSON of the wrong shape
            raise ValueError(f"unexpected event {data[:200]!r}: {err}") from None
