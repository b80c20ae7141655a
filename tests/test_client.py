"""The streaming client: request bodies, token counting per chunk, and `Client.send` over
HTTP against an in-test protocol fixture.

The fixture below is an aiohttp app on 127.0.0.1 that plays back fixed HTTP responses and
SSE streams (errors, a missing usage chunk, a well-formed stream) so the client's parsing
and error paths can be checked byte for byte. It does no inference and stands in for no
server in any measurement; the client against real vLLM is covered by integration tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from ports import dead_url

from harness.client import (
    REQUEST_ID_HEADER,
    Client,
    ClientOptions,
    Completion,
    _chunk_tokens,
    _encode,
    _payload,
)
from harness.records import RequestRecord, RunClock

MS = 1_000_000
GAP_S = 0.03  # pause the fixture makes between stream chunks

# --- pure functions -------------------------------------------------------------------


def test_completions_payload() -> None:
    opts = ClientOptions(base_url="http://h", model="m", temperature=0.5, ignore_eos=False)
    body = _payload(opts, [1, 2, 3], 17)
    assert body["model"] == "m"
    assert body["prompt"] == [1, 2, 3] and "messages" not in body
    assert body["max_tokens"] == 17
    assert body["temperature"] == 0.5
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is False
    assert body["return_token_ids"] is True
    json.dumps(body)  # serialisable as sent


def test_chat_payload() -> None:
    opts = ClientOptions(base_url="http://h", model="m", api="chat")
    body = _payload(opts, "hello there", 5)
    assert body["messages"] == [{"role": "user", "content": "hello there"}]
    assert "prompt" not in body
    assert body["ignore_eos"] is True and body["max_tokens"] == 5


def test_encode_writes_what_json_writes() -> None:
    body = _payload(ClientOptions(base_url="http://h", model="m"), [1, 2, 3], 4)
    assert json.loads(_encode(body)) == body
    # orjson refuses a lone surrogate; the body then goes through json, as before
    odd = {"messages": [{"role": "user", "content": "a\ud800b"}], "max_tokens": 1}
    assert _encode(odd) == json.dumps(odd).encode()


@pytest.mark.parametrize(
    ("api", "choice", "expected"),
    [
        ("chat", {"delta": {"role": "assistant", "content": ""}}, (0, None)),
        ("chat", {"delta": {"role": "assistant"}}, (0, None)),
        ("chat", {"delta": {"content": "hi"}}, (1, None)),
        ("chat", {"delta": {"content": ""}}, (1, None)),  # random weights: empty text
        ("chat", {"delta": {}, "finish_reason": "length"}, (0, None)),
        ("chat", {"delta": {"content": "ab"}, "token_ids": [5, 6]}, (2, [5, 6])),
        ("completions", {"text": "x"}, (1, None)),
        ("completions", {"text": ""}, (1, None)),
        ("completions", {"text": "abc", "token_ids": [7, 8, 9]}, (3, [7, 8, 9])),
        ("completions", {"text": "", "token_ids": []}, (0, [])),
    ],
)
def test_chunk_tokens(
    api: Any, choice: dict[str, Any], expected: tuple[int, list[int] | None]
) -> None:
    assert _chunk_tokens(api, choice) == expected


# --- the protocol fixture -------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _sse(event: dict[str, Any] | str) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\n\n".encode()


def _stream(events: list[dict[str, Any] | str], gap_s: float = GAP_S) -> Handler:
    """A handler that answers 200 and writes `events` as SSE, pausing `gap_s` before each."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for event in events:
            await asyncio.sleep(gap_s)
            await resp.write(_sse(event))
        await resp.write_eof()
        return resp

    return handler


def _raw(writes: list[bytes], gap_s: float = GAP_S) -> Handler:
    """A handler that answers 200 and writes `writes` byte for byte, pausing `gap_s` before
    each: SSE cut wherever a test wants it cut."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for data in writes:
            await asyncio.sleep(gap_s)
            await resp.write(data)
        await resp.write_eof()
        return resp

    return handler


def _usage(prompt: int, completion: int, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"choices": [], "usage": usage}


ProtocolFixture = Callable[[Handler], Awaitable[str]]


@pytest.fixture
async def protocol_fixture() -> AsyncIterator[ProtocolFixture]:
    """Start an HTTP protocol fixture on 127.0.0.1 answering both endpoints with a handler;
    gives its base URL. Not an inference server."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        app.router.add_post("/v1/chat/completions", handler)
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


def _record(output: int = 3, api: str = "completions", request_id: str = "r0") -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        session_id="s0",
        step_index=0,
        api=api,
        prompt_tokens_expected=4,
        output_tokens_expected=output,
        scheduled_ns=0,
    )


async def _send(
    url: str, record: RequestRecord, prompt: list[int] | str, **opts: Any
) -> Completion:
    clock = RunClock()
    async with Client(ClientOptions(base_url=url, model="tiny", **opts), clock.now_ns) as client:
        return await client.send(record, prompt)


# --- Client.send ----------------------------------------------------------------------


async def test_http_500_is_an_error_record(protocol_fixture: ProtocolFixture) -> None:
    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="engine dead")

    url = await protocol_fixture(fail)
    record = _record()
    completion = await _send(url, record, [1, 2, 3, 4])
    assert record.error is not None and record.error.startswith("HTTP 500")
    assert "engine dead" in record.error
    assert record.http_status == 500 and not record.ok
    assert record.sent_ns is not None and record.done_ns is not None
    assert record.done_ns >= record.sent_ns
    assert record.first_token_ns is None and record.output_tokens is None
    assert completion.output_ids is None


async def test_stream_without_usage_is_an_error(protocol_fixture: ProtocolFixture) -> None:
    events: list[dict[str, Any] | str] = [
        {"choices": [{"index": 0, "text": "a", "token_ids": [10]}]},
        {"choices": [{"index": 0, "text": "b", "token_ids": [11]}]},
        "[DONE]",
    ]
    url = await protocol_fixture(_stream(events, gap_s=0.0))
    record = _record(output=2)
    completion = await _send(url, record, [1, 2, 3, 4])
    assert record.error == "stream ended without a usage chunk"
    assert record.http_status == 200 and not record.ok
    assert record.chunk_tokens == [1, 1]  # the chunks that did come are still recorded
    assert completion.output_ids is None


async def test_well_formed_completions_stream(protocol_fixture: ProtocolFixture) -> None:
    events: list[dict[str, Any] | str] = [
        {"choices": [{"index": 0, "text": "a", "token_ids": [10]}]},
        {"choices": [{"index": 0, "text": "bc", "token_ids": [11, 12]}]},
        {"choices": [{"index": 0, "text": "", "token_ids": [13], "finish_reason": "length"}]},
        _usage(4, 4, cached=2),
        "[DONE]",
    ]
    handler = _stream(events)
    url = await protocol_fixture(handler)
    record = _record(output=4)
    completion = await _send(url, record, [1, 2, 3, 4])
    assert record.error is None and record.ok
    assert record.http_status == 200
    assert record.chunk_tokens == [1, 2, 1]
    assert completion.output_ids == [10, 11, 12, 13]
    assert record.prompt_tokens == 4 and record.output_tokens == 4
    assert record.cached_prompt_tokens == 2
    assert record.sent_ns is not None and record.first_token_ns is not None
    assert record.last_token_ns is not None and record.done_ns is not None
    assert record.first_token_ns - record.sent_ns >= GAP_S * 1e9 - 2 * MS  # TTFT
    assert record.chunk_ns[0] == record.first_token_ns
    assert record.chunk_ns[-1] == record.last_token_ns
    gaps = [b - a for a, b in zip(record.chunk_ns, record.chunk_ns[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= GAP_S * 1e9 - 2 * MS for g in gaps)  # ITLs
    # the usage chunk comes one gap after the last token chunk
    assert record.done_ns - record.last_token_ns >= GAP_S * 1e9 - 2 * MS


async def test_request_body_as_received(protocol_fixture: ProtocolFixture) -> None:
    bodies: list[dict[str, Any]] = []

    async def capture(request: web.Request) -> web.StreamResponse:
        bodies.append(await request.json())
        return await _stream([_usage(3, 0), "[DONE]"], gap_s=0.0)(request)

    url = await protocol_fixture(capture)
    await _send(url, _record(output=9), [5, 6, 7])
    await _send(url, _record(output=2, api="chat"), "hi", api="chat")
    assert bodies[0]["prompt"] == [5, 6, 7] and bodies[0]["max_tokens"] == 9
    assert bodies[0]["model"] == "tiny" and bodies[0]["stream"] is True
    assert bodies[1]["messages"] == [{"role": "user", "content": "hi"}]


async def test_chat_role_chunk_does_not_start_ttft(protocol_fixture: ProtocolFixture) -> None:
    async def chat(request: web.Request) -> web.StreamResponse:
        assert request.path == "/v1/chat/completions"
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_sse({"choices": [{"delta": {"role": "assistant", "content": ""}}]}))
        await asyncio.sleep(0.06)
        await resp.write(_sse({"choices": [{"delta": {"content": "x"}}]}))
        await resp.write(_sse({"choices": [{"delta": {"content": ""}}]}))
        await resp.write(_sse({"choices": [{"delta": {}, "finish_reason": "length"}]}))
        await resp.write(_sse(_usage(3, 2)))
        await resp.write(_sse("[DONE]"))
        await resp.write_eof()
        return resp

    url = await protocol_fixture(chat)
    record = _record(output=2, api="chat")
    completion = await _send(url, record, "hello", api="chat")
    assert record.ok
    assert record.chunk_tokens == [1, 1]
    assert record.first_token_ns is not None and record.sent_ns is not None
    assert record.first_token_ns - record.sent_ns >= 60 * MS - 2 * MS
    assert completion.output_ids is None  # no token ids in this stream


async def test_error_event_in_stream(protocol_fixture: ProtocolFixture) -> None:
    events: list[dict[str, Any] | str] = [
        {"choices": [{"index": 0, "text": "a", "token_ids": [10]}]},
        {"error": {"message": "out of KV cache", "code": 500}},
    ]
    url = await protocol_fixture(_stream(events, gap_s=0.0))
    record = _record()
    await _send(url, record, [1])
    assert record.error is not None
    assert record.error.startswith("server error in stream")
    assert "out of KV cache" in record.error


async def test_malformed_json_is_an_error(protocol_fixture: ProtocolFixture) -> None:
    url = await protocol_fixture(_stream(["{not json"], gap_s=0.0))
    record = _record()
    await _send(url, record, [1])
    assert record.error is not None and record.error.startswith("malformed stream")
    assert record.done_ns is not None


async def test_timeout_is_an_error(protocol_fixture: ProtocolFixture) -> None:
    url = await protocol_fixture(_stream([_usage(1, 1), "[DONE]"], gap_s=2.0))
    record = _record()
    await _send(url, record, [1], timeout_s=0.2)
    assert record.error == "timeout after 0.2 s"
    assert record.sent_ns is not None and record.done_ns is not None
    assert 150 * MS <= record.done_ns - record.sent_ns < 1500 * MS


async def test_refused_connection_names_the_connector_error() -> None:
    """A refused connection is named as aiohttp names it, and told as a lost connection (the
    replay's 'server unreachable' abort, a router's taking a replica out)."""
    record = _record()
    completion = await _send(dead_url(), record, [1])
    assert record.error is not None and record.error.startswith("ClientConnectorError")
    assert record.http_status is None and completion.output_ids is None
    assert completion.connection_lost


async def test_cancel_marks_the_record(protocol_fixture: ProtocolFixture) -> None:
    url = await protocol_fixture(_stream([_usage(1, 1)], gap_s=5.0))
    record = _record()
    task = asyncio.create_task(_send(url, record, [1]))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert record.error == "cancelled"
    assert record.sent_ns is not None and record.done_ns is not None


# --- SSE from bulk reads --------------------------------------------------------------

_TOKENS: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "text": "a", "token_ids": [10]}]},
    {"choices": [{"index": 0, "text": "bc", "token_ids": [11, 12]}]},
    {"choices": [{"index": 0, "text": "d", "token_ids": [13]}]},
    {"choices": [{"index": 0, "text": "", "token_ids": [14], "finish_reason": "length"}]},
]
_FINAL = _usage(4, 5, cached=1)


def _json(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def _outcome(record: RequestRecord, completion: Completion) -> dict[str, Any]:
    """Everything a record says except when: what two streams of the same events must share."""
    assert len(record.chunk_ns) == len(record.chunk_tokens)
    assert record.chunk_ns == sorted(record.chunk_ns)
    if record.chunk_ns:
        assert record.first_token_ns == record.chunk_ns[0]
        assert record.last_token_ns == record.chunk_ns[-1]
    return {
        "chunk_tokens": record.chunk_tokens,
        "chunks": len(record.chunk_ns),
        "prompt_tokens": record.prompt_tokens,
        "output_tokens": record.output_tokens,
        "cached_prompt_tokens": record.cached_prompt_tokens,
        "http_status": record.http_status,
        "error": record.error,
        "output_ids": completion.output_ids,
    }


async def test_fragmented_stream_gives_the_clean_record(protocol_fixture: ProtocolFixture) -> None:
    """CRLF endings, keep-alive comments, `data:` without its space, two events in one write,
    an event cut mid-JSON across writes, a CR and its LF in different writes, and a last line
    without its newline: the same record as one clean event per write."""
    t0, t1, t2, t3 = (_json(e) for e in _TOKENS)
    writes = [
        b": keep-alive\r\n\r\ndata: " + t0 + b"\r\n\r\ndata:" + t1 + b"\r\n\r\ndata: " + t2[:9],
        t2[9:] + b"\r",
        b"\n\r\n: ping\n\nevent: message\ndata: " + t3 + b"\n",
        b"\ndata: " + _json(_FINAL) + b"\n\n",
        b"data: [DONE]",
    ]
    clean_url = await protocol_fixture(_stream([*_TOKENS, _FINAL, "[DONE]"], gap_s=0.0))
    odd_url = await protocol_fixture(_raw(writes))
    clean, odd = _record(output=5), _record(output=5)
    clean_outcome = _outcome(clean, await _send(clean_url, clean, [1, 2, 3, 4]))
    odd_outcome = _outcome(odd, await _send(odd_url, odd, [1, 2, 3, 4]))
    assert clean_outcome["error"] is None and clean_outcome["chunk_tokens"] == [1, 2, 1, 1]
    assert odd_outcome == clean_outcome
    # t0 and t1 came in one read; t2 is complete only with the second write, one gap later
    assert odd.chunk_ns[0] == odd.chunk_ns[1]
    assert odd.chunk_ns[2] - odd.chunk_ns[1] >= GAP_S * 1e9 - 2 * MS
    assert odd.chunk_ns[3] - odd.chunk_ns[2] >= GAP_S * 1e9 - 2 * MS


async def test_events_in_one_read_share_its_timestamp(protocol_fixture: ProtocolFixture) -> None:
    t0, t1, t2, _ = (_json(e) for e in _TOKENS)
    writes = [
        b"data: " + t0 + b"\n\ndata: " + t1 + b"\n\n",
        b"data: " + t2 + b"\n\ndata: " + _json(_FINAL) + b"\n\ndata: [DONE]\n\n",
    ]
    url = await protocol_fixture(_raw(writes))
    record = _record(output=4)
    completion = await _send(url, record, [1])
    assert record.ok and completion.output_ids == [10, 11, 12, 13]
    assert record.chunk_tokens == [1, 2, 1]  # one entry per token event, as before
    assert record.chunk_ns[0] == record.chunk_ns[1]
    assert record.chunk_ns[2] - record.chunk_ns[1] >= GAP_S * 1e9 - 2 * MS


async def test_lone_cr_ends_a_line(protocol_fixture: ProtocolFixture) -> None:
    """SSE allows CR alone as a line ending."""
    t0, t1, _, _ = (_json(e) for e in _TOKENS)
    body = b"data: " + t0 + b"\r\rdata: " + t1 + b"\r\rdata: " + _json(_usage(1, 3))
    url = await protocol_fixture(_raw([body + b"\r\rdata: [DONE]\r\r"], gap_s=0.0))
    record = _record()
    completion = await _send(url, record, [1])
    assert record.ok and record.chunk_tokens == [1, 2]
    assert completion.output_ids == [10, 11, 12]


async def test_request_id_header(protocol_fixture: ProtocolFixture) -> None:
    seen: list[str | None] = []

    async def capture(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get(REQUEST_ID_HEADER))
        assert "X-Request-Id" not in request.headers  # vLLM's own request id
        return await _stream([_usage(3, 0), "[DONE]"], gap_s=0.0)(request)

    url = await protocol_fixture(capture)
    await _send(url, _record(request_id="r0000042"), [5, 6, 7])
    await _send(url, _record(api="chat", request_id="r0000043"), "hi", api="chat")
    assert seen == ["r0000042", "r0000043"]


async def test_malformed_event_mid_stream(protocol_fixture: ProtocolFixture) -> None:
    t0 = _json(_TOKENS[0])
    writes = [b"data: " + t0 + b'\n\ndata: {"choices": [', b"}\n\n", b"data: [DONE]\n\n"]
    url = await protocol_fixture(_raw(writes, gap_s=0.0))
    record = _record()
    completion = await _send(url, record, [1])
    assert record.error is not None and record.error.startswith("malformed stream: ")
    assert record.chunk_tokens == [1] and completion.output_ids is None
    assert record.done_ns is not None


@pytest.mark.parametrize(
    "event",
    [
        b"[1, 2]",
        b"5",
        b'{"choices": "x"}',
        b'{"choices": [{"token_ids": [null]}]}',
        b'{"choices": [], "usage": [3]}',
    ],
)
async def test_json_of_the_wrong_shape_is_malformed(
    protocol_fixture: ProtocolFixture, event: bytes
) -> None:
    """Valid JSON that is not a completion chunk is a failed request, not an exception."""
    url = await protocol_fixture(_raw([b"data: " + event + b"\n\ndata: [DONE]\n\n"], gap_s=0.0))
    record = _record()
    completion = await _send(url, record, [1])
    assert record.error is not None and record.error.startswith("malformed stream: ")
    assert record.done_ns is not None and completion.output_ids is None


# --- the transport under Client.send -----------------------------------------------------


def _peer(request: web.Request) -> int:
    """The client's port: one per connection."""
    assert request.transport is not None
    return int(request.transport.get_extra_info("peername")[1])


async def test_requests_share_a_keep_alive_connection(protocol_fixture: ProtocolFixture) -> None:
    ports: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ports.append(_peer(request))
        return await _stream([*_TOKENS[:1], _FINAL, "[DONE]"], gap_s=0.0)(request)

    url = await protocol_fixture(handler)
    clock = RunClock()
    async with Client(ClientOptions(base_url=url, model="tiny"), clock.now_ns) as client:
        records = [_record(output=5, request_id=f"r{i}") for i in range(3)]
        for record in records:
            await client.send(record, [1])
    assert all(r.ok for r in records)
    assert len(ports) == 3 and len(set(ports)) == 1


async def test_content_length_stream(protocol_fixture: ProtocolFixture) -> None:
    """A whole SSE body sent with a Content-Length instead of chunks."""
    body = b"".join(_sse(e) for e in [*_TOKENS, _FINAL, "[DONE]"])

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="text/event-stream")

    url = await protocol_fixture(handler)
    record = _record(output=5)
    completion = await _send(url, record, [1])
    assert record.ok and record.chunk_tokens == [1, 2, 1, 1]
    assert completion.output_ids == [10, 11, 12, 13, 14]


async def test_http_error_text_is_cut(protocol_fixture: ProtocolFixture) -> None:
    async def busy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="overloaded " + "x" * 600)

    url = await protocol_fixture(busy)
    record = _record()
    await _send(url, record, [1])
    assert record.error == "HTTP 503: " + ("overloaded " + "x" * 600)[:500]
    assert record.http_status == 503


async def test_headers_sent(protocol_fixture: ProtocolFixture) -> None:
    seen: list[dict[str, str]] = []

    async def capture(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return await _stream([_usage(1, 0), "[DONE]"], gap_s=0.0)(request)

    url = await protocol_fixture(capture)
    await _send(url, _record(), [1], headers=(("Authorization", "Bearer sk-1"),))
    headers = seen[0]
    assert headers["Authorization"] == "Bearer sk-1"
    assert headers["Content-Type"] == "application/json"
    assert headers["Accept"] == "text/event-stream"
    assert headers["Host"] == url.removeprefix("http://")


async def test_server_closing_mid_stream(protocol_fixture: ProtocolFixture) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_sse(_TOKENS[0]))
        await asyncio.sleep(0.02)
        assert request.transport is not None
        request.transport.close()
        return resp

    url = await protocol_fixture(cut)
    record = _record()
    completion = await _send(url, record, [1])
    assert record.error is not None and record.error.startswith("ServerDisconnectedError: ")
    assert record.http_status == 200 and record.chunk_tokens == [1]
    assert record.done_ns is not None and completion.output_ids is None


async def test_cancelled_stream_is_not_reused(protocol_fixture: ProtocolFixture) -> None:
    ports: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ports.append(_peer(request))
        gap = 5.0 if len(ports) == 1 else 0.0
        return await _stream([*_TOKENS[:1], _FINAL, "[DONE]"], gap_s=gap)(request)

    url = await protocol_fixture(handler)
    clock = RunClock()
    opts = ClientOptions(base_url=url, model="tiny", max_connections=1)
    async with Client(opts, clock.now_ns) as client:
        first = _record(request_id="r0")
        task = asyncio.create_task(client.send(first, [1]))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        second = _record(output=5, request_id="r1")
        async with asyncio.timeout(2):  # the one slot was freed
            await client.send(second, [1])
    assert first.error == "cancelled" and second.ok
    assert len(ports) == 2 and ports[0] != ports[1]
