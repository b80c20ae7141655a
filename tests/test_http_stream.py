"""The streaming HTTP transport against an in-test TCP fixture that plays scripted bytes.

The fixture reads each HTTP request off the socket and answers with bytes a test writes
out in full (chunked, Content-Length or close-delimited bodies, `Connection: close`, a close
mid-stream), counting connections, so the pool's keep-alive, limit and idle rules can be
checked where they show: at the server. It does no inference and stands in for no server
in any measurement. The tests run on asyncio's own event loop; one scenario runs on uvloop,
the harness's loop.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from harness.http_stream import (
    ClientConnectorError,
    ClientResponseError,
    Response,
    ServerDisconnectedError,
    StreamPool,
)
from harness.records import RunClock

EVENTS = [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
SSE = b"".join(b"data: " + e + b"\n\n" for e in EVENTS) + b"data: [DONE]\n\n"


# --- the fixture ----------------------------------------------------------------------

Writer = asyncio.StreamWriter
Respond = Callable[[Writer, int], Awaitable[bool]]
"""Writes the answer to request number i (from 0, over all connections); False closes the
connection after it."""


class RawServer:
    """A TCP fixture on 127.0.0.1 that reads HTTP requests and answers with scripted bytes."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests: list[bytes] = []  # each request's head and body, as received
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._converse(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass  # stopped, or the client went away mid-answer
        finally:
            self._handlers.discard(task)

    async def _converse(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client += 1
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                index = len(self.requests)
                self.requests.append(head + body)
                if not await self.respond(writer, index):
                    return
        finally:
            self.open_now -= 1
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


Start = Callable[[Respond], Awaitable[RawServer]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Start]:
    servers: list[RawServer] = []

    async def start(respond: Respond) -> RawServer:
        server = RawServer(respond)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def one_chunk(part: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(part), part)


def chunked(*parts: bytes) -> bytes:
    return b"".join(one_chunk(p) for p in parts) + b"0\r\n\r\n"


def head(status: str = "200 OK", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: text/event-stream", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked_answer(*parts: bytes, gap_s: float = 0.0) -> Respond:
    """200, `parts` as one HTTP chunk each, `gap_s` before each; keeps the connection."""

    async def respond(writer: Writer, index: int) -> bool:
        writer.write(head("200 OK", "Transfer-Encoding: chunked"))
        for part in parts:
            if gap_s:
                await writer.drain()
                await asyncio.sleep(gap_s)
            writer.write(one_chunk(part))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    return respond


class Sink:
    """Collects what the transport hands over; stops at `[DONE]`."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.status: int | None = None
        self.events: list[tuple[bytes, int]] = []
        self.fail_on = fail_on

    def on_status(self, status: int) -> None:
        self.status = status

    def on_event(self, data: bytes, now_ns: int) -> bool:
        if data == self.fail_on:
            raise ValueError("sink refused it")
        if data == b"[DONE]":
            return True
        self.events.append((data, now_ns))
        return False

    @property
    def data(self) -> list[bytes]:
        return [d for d, _ in self.events]


def pool(url: str, max_connections: int = 0, **kw: Any) -> StreamPool:
    auth = (("Authorization", "Bearer k"),)
    return StreamPool(url, auth, max_connections, RunClock().now_ns, **kw)


async def post(p: StreamPool, sink: Sink | None = None, body: bytes = b'{"x": 1}') -> Response:
    return await p.post(body, (("X-Harness-Request-Id", "r1"),), sink or Sink())


# --- bodies -----------------------------------------------------------------------------


async def test_chunked_body_events_and_request_bytes(raw_server: Start) -> None:
    # events cut across HTTP chunks, a chunk holding two events
    server = await raw_server(chunked_answer(SSE[:5], SSE[5:13], SSE[13:40], SSE[40:]))
    p = pool(server.url())
    sink = Sink()
    response = await post(p, sink, body=b'{"prompt": [1, 2]}')
    await p.close()
    assert response == Response(200, b"") and sink.status == 200
    assert sink.data == EVENTS
    request = server.requests[0]
    head_bytes, body = request.split(b"\r\n\r\n", 1)
    lines = head_bytes.split(b"\r\n")
    assert lines[0] == b"POST /v1/completions HTTP/1.1"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"Host"] == f"127.0.0.1:{server.port}".encode()
    assert headers[b"Content-Type"] == b"application/json"
    assert headers[b"Accept"] == b"text/event-stream"
    assert headers[b"Authorization"] == b"Bearer k"
    assert headers[b"X-Harness-Request-Id"] == b"r1"
    assert headers[b"Content-Length"] == b"18" and body == b'{"prompt": [1, 2]}'


async def test_pieces_of_one_byte(raw_server: Start) -> None:
    """Every byte its own HTTP chunk, and a lone blank line: the same events."""
    server = await raw_server(chunked_answer(*(SSE[i : i + 1] for i in range(len(SSE)))))
    p = pool(server.url())
    sink = Sink()
    assert (await post(p, sink)).status == 200
    server.respond = chunked_answer(SSE[:15], SSE[15:16], b"\n\n", SSE[16:])
    sink2 = Sink()
    assert (await post(p, sink2)).status == 200
    await p.close()
    assert sink.data == EVENTS and sink2.data == EVENTS


async def test_content_length_body(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        writer.write(head("200 OK", f"Content-Length: {len(SSE)}") + SSE)
        return True

    server = await raw_server(respond)
    p = pool(server.url())
    sinks = [Sink(), Sink()]
    for sink in sinks:
        assert (await post(p, sink)).status == 200
    await p.close()
    assert [s.data for s in sinks] == [EVENTS, EVENTS]
    assert server.connections == 1  # kept alive


async def test_body_until_close_and_last_line_without_newline(raw_server: Start) -> None:
    """No length, no chunking: the body ends with the connection; its last line, without
    a newline, still counts."""

    async def respond(writer: Writer, index: int) -> bool:
        writer.write(head("200 OK", "Connection: close") + b"data: " + EVENTS[0] + b"\n\ndata: ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(EVENTS[1])
        return False

    server = await raw_server(respond)
    p = pool(server.url())
    sink = Sink()
    assert (await post(p, sink)).status == 200
    assert sink.data == EVENTS[:2]
    assert (await post(p, Sink())).status == 200  # a new connection for the next
    await p.close()
    assert server.connections == 2


async def test_error_status_returns_the_body(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 11\r\n\r\nengine dead")
        return True

    server = await raw_server(respond)
    p = pool(server.url())
    sink = Sink()
    assert await post(p, sink) == Response(503, b"engine dead")
    assert sink.status == 503 and sink.events == []
    assert (await post(p)).status == 503
    await p.close()
    assert server.connections == 1


async def test_informational_response_is_skipped(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        writer.write(head("200 OK", "Transfer-Encoding: chunked") + chunked(SSE))
        return True

    server = await raw_server(respond)
    p = pool(server.url())
    sink = Sink()
    assert (await post(p, sink)).status == 200 and sink.data == EVENTS
    await p.close()


async def test_events_of_one_read_share_its_stamp(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE[:32], SSE[32:], gap_s=0.05))  # 2 events, rest
    p = pool(server.url())
    sink = Sink()
    await post(p, sink)
    await p.close()
    stamps = [now for _, now in sink.events]
    assert stamps[0] == stamps[1]  # both completed by the first read
    assert stamps[2] - stamps[1] >= 45_000_000


# --- connections ------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE))
    p = pool(server.url())
    for _ in range(3):
        assert (await post(p)).status == 200
    await p.close()
    assert server.connections == 1 and len(server.requests) == 3


async def test_connection_close_is_not_reused(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        writer.write(head("200 OK", "Transfer-Encoding: chunked", "Connection: close"))
        writer.write(chunked(SSE))
        return True  # the client must close it: the response said so

    server = await raw_server(respond)
    p = pool(server.url())
    for _ in range(2):
        assert (await post(p)).status == 200
    await p.close()
    assert server.connections == 2


async def test_done_before_the_last_chunk_still_reuses(raw_server: Start) -> None:
    """The stream is finished at `[DONE]`; the connection goes back to the pool once the
    response's terminating chunk arrives."""

    async def respond(writer: Writer, index: int) -> bool:
        writer.write(head("200 OK", "Transfer-Encoding: chunked") + one_chunk(SSE[-14:]))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        return True

    server = await raw_server(respond)
    p = pool(server.url())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await post(p)
    assert loop.time() - t0 < 0.04  # returned at [DONE], not at the terminator
    await asyncio.sleep(0.1)
    await post(p)
    await p.close()
    assert server.connections == 1


async def test_pool_limit(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE, gap_s=0.05))
    p = pool(server.url(), max_connections=2)
    responses = await asyncio.gather(*(post(p) for _ in range(5)))
    await p.close()
    assert [r.status for r in responses] == [200] * 5
    assert server.most_open == 2 and server.connections == 2


async def test_unlimited_pool_opens_one_per_stream(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE, gap_s=0.05))
    p = pool(server.url(), max_connections=0)
    await asyncio.gather(*(post(p) for _ in range(5)))
    await p.close()
    assert server.most_open == 5


async def test_idle_connection_is_dropped(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE))
    p = pool(server.url(), idle_s=0.1)
    await post(p)
    await asyncio.sleep(0.3)
    assert server.closed_by_client == 1 and server.open_now == 0  # closed by the client
    await post(p)
    await p.close()
    assert server.connections == 2


async def test_limit_waiter_gets_a_freed_slot_after_a_timeout(raw_server: Start) -> None:
    """A request that gave up waiting for a connection leaves the slot to the next."""
    server = await raw_server(chunked_answer(SSE, gap_s=0.05))
    p = pool(server.url(), max_connections=1)
    first = asyncio.create_task(post(p))
    await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await post(p)  # waits for the only connection, gives up
    assert (await first).status == 200
    assert (await post(p)).status == 200
    await p.close()
    assert server.connections == 1


async def test_woken_waiter_that_is_cancelled_passes_the_slot_on(raw_server: Start) -> None:
    """Woken for a freed connection but cancelled before it ran: the next waiter gets it."""
    server = await raw_server(chunked_answer(SSE, gap_s=0.05))
    p = pool(server.url(), max_connections=1)
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def first() -> None:
        await post(p)  # its release wakes the second
        tasks["second"].cancel()

    tasks["first"] = asyncio.create_task(first())
    await asyncio.sleep(0.01)
    tasks["second"] = asyncio.create_task(post(p))
    tasks["third"] = asyncio.create_task(post(p))
    await tasks["first"]
    with pytest.raises(asyncio.CancelledError):
        await tasks["second"]
    async with asyncio.timeout(2):
        assert (await tasks["third"]).status == 200
    await p.close()
    assert server.connections == 1


# --- failures ---------------------------------------------------------------------------


async def close_mid_stream(writer: Writer, index: int) -> bool:
    """A chunked answer cut after its first event and a half."""
    writer.write(head("200 OK", "Transfer-Encoding: chunked") + one_chunk(SSE[:20]))
    await writer.drain()
    return False


async def test_server_closing_mid_stream(raw_server: Start) -> None:
    server = await raw_server(close_mid_stream)
    p = pool(server.url())
    sink = Sink()
    with pytest.raises(ServerDisconnectedError):
        await post(p, sink)
    assert sink.data == EVENTS[:1]  # what came before the close was handed over
    await p.close()


async def test_content_length_cut_short(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        writer.write(head("200 OK", "Content-Length: 999", "Connection: close") + SSE[:20])
        return False

    server = await raw_server(respond)
    p = pool(server.url())
    with pytest.raises(ServerDisconnectedError):
        await post(p)
    await p.close()


async def test_server_closing_before_answering(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        return False

    server = await raw_server(respond)
    p = pool(server.url())
    with pytest.raises(ServerDisconnectedError, match="Server disconnected"):
        await post(p)
    await p.close()


async def test_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = pool(f"http://127.0.0.1:{port}/v1/completions")
    with pytest.raises(ClientConnectorError, match=f"Cannot connect to host 127.0.0.1:{port}"):
        await post(p)
    with pytest.raises(ClientConnectorError):  # the failed attempt freed its slot
        await post(p)
    await p.close()


async def test_invalid_http(raw_server: Start) -> None:
    async def respond(writer: Writer, index: int) -> bool:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        return True

    server = await raw_server(respond)
    p = pool(server.url())
    with pytest.raises(ClientResponseError, match="invalid HTTP response"):
        await post(p)
    await p.close()


async def test_sink_error_fails_the_request_and_drops_the_connection(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE))
    p = pool(server.url(), max_connections=1)
    with pytest.raises(ValueError, match="sink refused it"):
        await post(p, Sink(fail_on=EVENTS[1]))
    async with asyncio.timeout(2):
        assert (await post(p)).status == 200
    await p.close()
    assert server.connections == 2


async def test_cancel_mid_stream_drops_the_connection(raw_server: Start) -> None:
    """Closed, not reused, and its slot freed (a pool of one would wait forever)."""
    server = await raw_server(chunked_answer(SSE[:16], SSE[16:], gap_s=0.1))
    p = pool(server.url(), max_connections=1)
    task = asyncio.create_task(post(p))
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(2):
        await post(p, Sink())
    await p.close()
    assert server.connections == 2


async def test_total_timeout_drops_the_connection(raw_server: Start) -> None:
    server = await raw_server(chunked_answer(SSE, gap_s=0.2))
    p = pool(server.url(), max_connections=1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await post(p)
    server.respond = chunked_answer(SSE)
    async with asyncio.timeout(2):
        assert (await post(p)).status == 200
    await p.close()
    assert server.connections == 2


def test_bad_header_is_refused() -> None:
    async def make() -> None:
        StreamPool("http://h/x", (("X-Key", "a\r\nInjected: 1"),), 0, RunClock().now_ns)

    with pytest.raises(ValueError, match="cannot be sent"):
        asyncio.run(make())


# --- https ------------------------------------------------------------------------------


@pytest.fixture
def self_signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A certificate for 127.0.0.1, trusted by ssl.create_default_context through
    SSL_CERT_FILE; the server's context."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_https(self_signed: ssl.SSLContext) -> None:
    server = RawServer(chunked_answer(SSE[:30], SSE[30:], gap_s=0.01))
    await server.start(self_signed)
    try:
        p = pool(server.url("https"))
        sinks = [Sink(), Sink()]
        for sink in sinks:
            assert (await post(p, sink)).status == 200
        await p.close()
        assert [s.data for s in sinks] == [EVENTS, EVENTS]
        assert server.connections == 1
    finally:
        await server.stop()


async def test_https_untrusted_certificate(
    self_signed: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "none.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    server = RawServer(chunked_answer(SSE))
    await server.start(self_signed)
    try:
        p = pool(server.url("https"))
        with pytest.raises(ClientConnectorError, match="ssl:default"):
            await post(p)
        await p.close()
    finally:
        await server.stop()


# --- uvloop -----------------------------------------------------------------------------


def test_on_uvloop() -> None:
    """The harness's load runs on uvloop, whose transports are not asyncio's classes: a
    stream, keep-alive reuse, a cancel mid-stream and a server closing mid-stream there."""

    async def scenario() -> None:
        server = RawServer(chunked_answer(SSE[:16], SSE[16:], gap_s=0.05))
        await server.start()
        try:
            p = pool(server.url())
            sink = Sink()
            assert (await post(p, sink)).status == 200 and sink.data == EVENTS
            await post(p)
            assert server.connections == 1
            task = asyncio.create_task(post(p))
            await asyncio.sleep(0.08)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await post(p)
            assert server.connections == 2
            server.respond = close_mid_stream
            with pytest.raises(ServerDisconnectedError):
                await post(p)
            await p.close()
        finally:
            await server.stop()

    uvloop.run(scenario())


def test_https_on_uvloop(self_signed: ssl.SSLContext) -> None:
    async def scenario() -> None:
        server = RawServer(chunked_answer(SSE[:30], SSE[30:]))
        await server.start(self_signed)
        try:
            p = pool(server.url("https"))
            sinks = [Sink(), Sink()]
            for sink in sinks:
                assert (await post(p, sink)).status == 200
            await p.close()
            assert [s.data for s in sinks] == [EVENTS, EVENTS] and server.connections == 1
        finally:
            await server.stop()

    uvloop.run(scenario())
