"""A lean HTTP/1.1 client for streamed (SSE) responses: POSTs to one URL over pooled
keep-alive connections, each an asyncio Protocol parsed by httptools.

Server-sent events are split into lines from the body as it arrives and each `data:` field
goes to the request's sink at once, with one arrival time per socket read shared by every
event completed in it. No per-chunk buffering, stream reader or task switch sits between
the socket and the sink, which is what the harness's per-token CPU budget needs.
Errors are named as aiohttp names them, so request records read as they did on aiohttp
(`harness.client` tells a lost connection by their classes).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

IDLE_S = 4.0
"""An idle keep-alive connection is closed after this long, before uvicorn's 5 s keep-alive
closes it server-side: reusing one the server is closing fails the request."""
ERROR_BODY_BYTES = 65536
"""How much of a non-200 response body is kept."""


class HttpStreamError(Exception):
    """A request failed in the transport."""


class ClientConnectorError(HttpStreamError):
    """The connection could not be opened (refused, unresolvable, TLS handshake)."""


class ServerDisconnectedError(HttpStreamError):
    """The server closed the connection before the response ended."""


class ClientOSError(HttpStreamError):
    """The connection failed with an OS error (reset, broken pipe)."""


class ClientResponseError(HttpStreamError):
    """The response is not valid HTTP/1.1."""


class EventSink(Protocol):
    """Where a response's status and its SSE `data:` fields go, as they arrive."""

    def on_status(self, status: int) -> None:
        """The response's status, once its headers are complete."""

    def on_event(self, data: bytes, now_ns: int) -> bool:
        """One `data:` field of a 200 response and the arrival time of the read that
        completed it; True when the stream is finished and later events are not wanted.
        An exception fails the request with it."""


@dataclass(frozen=True)
class Response:
    """A request's outcome: its status, and the body (cut) of any status but 200."""

    status: int
    body: bytes


def _header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    lines = []
    for name, value in headers:
        if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name or not name:
            raise ValueError(f"HTTP header {name!r} cannot be sent")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class StreamPool:
    """Keep-alive connections to one URL that stream the responses of POST requests.

    At most `max_connections` are open at once (0: unlimited); a request waits for one.
    Idle connections are reused, newest first, and closed after `idle_s`. Nothing is
    retried: a connection that fails fails its request and is not reused."""

    def __init__(
        self,
        url: str,
        headers: Iterable[tuple[str, str]],
        max_connections: int,
        now_ns: Callable[[], int],
        idle_s: float = IDLE_S,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._ssl = ssl.create_default_context() if self._https else None
        host = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port is not None:
            host += f":{parts.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = f"POST {target} HTTP/1.1\r\n".encode("latin-1") + _header_block(
            [
                ("Host", host),
                ("Content-Type", "application/json"),
                ("Accept", "text/event-stream"),
                ("Accept-Encoding", "identity"),
                *headers,
            ]
        )
        self._limit = max_connections
        self._now_ns = now_ns
        self._idle_s = idle_s
        self._loop = asyncio.get_running_loop()
        self._open = 0  # connections open or opening
        self._connections: set[_Connection] = set()
        self._idle: list[_Connection] = []  # newest last
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def post(
        self, body: bytes, headers: Iterable[tuple[str, str]], sink: EventSink
    ) -> Response:
        """Send `body` with `headers` besides the pool's, in one write, and feed the response
        to `sink`. Returns when the stream is finished (the sink said so, or the response
        ended); raises an HttpStreamError, or the sink's exception, when it failed."""
        head = self._head + _header_block(headers)
        data = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        connection = await self._acquire()
        try:
            response = await connection.request(data, sink)
        except BaseException:
            connection.close()
            raise
        connection.release()
        return response

    async def close(self) -> None:
        """Close every connection."""
        for connection in list(self._connections):
            connection.close()
        self._idle.clear()
        if self._connections:
            await asyncio.sleep(0)  # let the transports report their ends

    async def _acquire(self) -> _Connection:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if connection.reuse():
                    return connection
            if not self._limit or self._open < self._limit:
                return await self._connect()
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass on the wake-up this request will not use
                else:
                    self._waiters.remove(waiter)
                raise

    async def _connect(self) -> _Connection:
        self._open += 1
        try:
            _, connection = await self._loop.create_connection(
                lambda: _Connection(self),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._https else None,
            )
        except OSError as err:  # refused, unresolvable, TLS (ssl.SSLError is an OSError)
            self._open -= 1
            self._wake()
            where = f"{self._host}:{self._port} ssl:{'default' if self._https else False}"
            raise ClientConnectorError(
                f"Cannot connect to host {where} [{err.strerror or err}]"
            ) from None
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        self._connections.add(connection)
        return connection

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _idle_again(self, connection: _Connection) -> None:
        self._idle.append(connection)
        self._wake()

    def _lost(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._open -= 1
            if connection in self._idle:
                self._idle.remove(connection)
            self._wake()


def _no_events(data: bytes, now_ns: int) -> bool:
    return True


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its response parsed as it arrives.

    A request is finished when the sink says so (`[DONE]`), the response ends, or the
    connection fails. One finished before its response ended drains the rest (ignored)
    and goes back to the pool when it ends."""

    def __init__(self, pool: StreamPool) -> None:
        self._pool = pool
        self._now_ns = pool._now_ns
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._sink: EventSink | None = None
        self._on_event: Callable[[bytes, int], bool] = _no_events
        self._status = 0
        self._streaming = False  # a 200 response whose events go to the sink
        self._finished = True  # no events wanted
        self._complete = True  # the response has ended
        self._draining = False
        self._keep_alive = False
        self._until_eof = False  # the body ends when the connection does
        self._pending = b""  # an incomplete last line, completed by the next read
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._now = 0

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._complete:  # nothing was asked: a server speaking out of turn
            self.close()
            return
        self._now = self._now_ns()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(ClientResponseError(f"invalid HTTP response: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        try:
            if not self._complete and self._until_eof and self._status:
                self.on_message_complete()  # a body delimited by the connection's end
        finally:  # a request not finished by now fails (a no-op for one that is)
            if exc is None:
                self._fail(ServerDisconnectedError("Server disconnected"))
            else:
                self._fail(ClientOSError(str(exc) or type(exc).__name__))
            self._pool._lost(self)

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (
            name == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._until_eof = False

    def on_headers_complete(self) -> None:
        self._status = status = self._parser.get_status_code()
        if status < 200 or status in (204, 304):  # no body
            self._until_eof = False
        if status < 200:  # informational: the response follows
            return
        self._streaming = status == 200
        if self._sink is not None and not self._finished:
            try:
                self._sink.on_status(status)
            except Exception as err:
                self._fail(err)

    def on_body(self, body: bytes) -> None:
        if not self._streaming:
            if self._body_bytes < ERROR_BODY_BYTES:
                self._body.append(body)
                self._body_bytes += len(body)
            return
        if self._finished:
            return
        on_event = self._on_event
        now = self._now
        if (  # the usual piece, one whole event `data: ...\n\n`: what the loop below would do
            body[-2:] == b"\n\n"  # (operators: bytes methods cost more here)
            and not self._pending
            and 13 not in body  # no CR
            and body[:5] == b"data:"
            and 10 not in body[:-2]
        ):
            try:
                if on_event(body[5:-2].strip(), now):
                    self._finish()
            except Exception as err:  # the sink's: the request fails with it
                self._fail(err)
            return
        if self._pending:
            body = self._pending + body
        lines = body.splitlines()  # at CRLF, LF or CR, as SSE ends lines
        last = body[-1]
        self._pending = b"" if last == 10 or last == 13 else lines.pop()
        try:
            for line in lines:
                if line:  # a blank line ends an event: nothing more to hand over
                    line = line.strip()
                    if line.startswith(b"data:") and on_event(line[5:].lstrip(), now):
                        self._finish()
                        return
        except Exception as err:  # the sink's: the request fails with it
            self._fail(err)

    def on_message_complete(self) -> None:
        if self._status < 200:  # an informational response ended; the real one follows
            self._status, self._until_eof = 0, True
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()
        if self._pending:  # a last line without its newline
            self.on_body(b"\n")
        self._finish()
        if self._draining:
            self._draining = False
            self.release()

    # --- the pool's side ----------------------------------------------------------------

    def request(self, data: bytes, sink: EventSink) -> asyncio.Future[Response]:
        """Send one request; the future is done when it is finished."""
        assert self._transport is not None and self._complete
        self._waiter = waiter = self._pool._loop.create_future()
        self._sink = sink
        self._on_event = sink.on_event
        self._status = 0
        self._streaming = False
        self._finished = self._complete = False
        self._until_eof = True  # until its headers say otherwise
        self._pending = b""
        self._body = []
        self._body_bytes = 0
        self._transport.write(data)
        return waiter

    def release(self) -> None:
        """Back to the pool once the request is finished: idle if the response ended on a
        keep-alive connection, draining if it has not ended yet, else closed."""
        self._sink = None
        self._on_event = _no_events
        if self._closed:
            return
        if not self._complete:
            self._draining = True
            self._set_timer()  # a response that never ends is not waited for forever
        elif self._keep_alive:
            self._set_timer()
            self._pool._idle_again(self)
        else:
            self.close()

    def reuse(self) -> bool:
        """Take this connection from the idle pool; False if it can no longer be used."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        return not self._closed and transport is not None and not transport.is_closing()

    def close(self) -> None:
        """Close at once; the pool forgets it when the transport reports the end."""
        self._draining = False
        if self._transport is not None and not self._closed:
            self._transport.abort()

    # --- internals ----------------------------------------------------------------------

    def _finish(self) -> None:
        self._finished = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, b"".join(self._body)))

    def _fail(self, err: BaseException) -> None:
        self._finished = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def _set_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._pool._loop.call_later(self._pool._idle_s, self.close)
