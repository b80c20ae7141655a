#!/usr/bin/env python3
"""A null inference server: answers the OpenAI completions API the way vLLM streams it, with
no model behind it, at a set time to first token and inter-token latency.

It measures the harness itself (its client, its memory, its overhead), never an inference
server: figures taken against it say so. Endpoints: /health, /version, /v1/models,
/metrics (two vLLM gauges), /v1/completions and /v1/chat/completions (streaming or not,
`return_token_ids`, usage when `stream_options.include_usage`), and with `--stamps`
/null/stamps (GET: each request's chunk send times, DELETE: clear them).

Chunk i of a response is due at t0 + ttft + i·itl (t0: the request received), on absolute
deadlines, so a set TTFT and ITL hold without drift; one timer serves every stream. With
`--stamps` each token chunk's send time (`time.perf_counter_ns()`, CLOCK_MONOTONIC, the
harness's run clock) is kept under the request's `X-Harness-Request-Id` header (else its
`X-Request-Id`; a request with neither is not stamped). HTTP/1.1 is spoken directly on
asyncio (uvloop where installed) with pre-encoded chunks, so the server costs little next to
the client it measures; `--procs N` runs N processes on one port (SO_REUSEPORT).

    python scripts/null_server.py --port 18100 --ttft-ms 5 --itl-ms 1
    python scripts/null_server.py --port 18100 --ttft-ms 50 --itl-ms 10 --stamps
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import itertools
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson

MODEL = "null-model"
STAMP_HEADER = "x-harness-request-id"
FALLBACK_ID_HEADER = "x-request-id"
"""Stamps are keyed by the harness's request id header, else by `X-Request-Id` (which
`vllm bench serve` sends), so both clients' chunks can be joined to their send times."""
TOKEN_CYCLE = 50
"""Distinct token ids the server cycles through (100, 101, ...): one pre-encoded frame each."""
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
CREATED = 1_700_000_000
NS_PER_MS = 1_000_000
BACKLOG = 4096
"""Pending connections the kernel queues (capped by net.core.somaxconn)."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}


@dataclass(frozen=True)
class Config:
    """What the server streams and keeps."""

    ttft_ms: float = 5.0
    itl_ms: float = 1.0
    max_model_len: int = 8192
    model_root: str | None = None
    stamps: bool = False


def _chunked(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n" % len(payload) + payload + b"\r\n"


def _sse(event: Any) -> bytes:
    return _chunked(b"data: " + orjson.dumps(event) + b"\n\n")


def _token_event(chat: bool, token_id: int, with_ids: bool, last: bool) -> dict[str, Any]:
    """A vLLM-shaped stream chunk carrying one token."""
    finish = "length" if last else None
    choice: dict[str, Any]
    if chat:
        choice = {"index": 0, "delta": {"content": " x"}, "logprobs": None}
        choice["finish_reason"] = finish
    else:
        choice = {"index": 0, "text": " x", "logprobs": None, "finish_reason": finish}
    choice["stop_reason"] = None
    if with_ids:
        choice["token_ids"] = [token_id]
    return {
        "id": "chatcmpl-null" if chat else "cmpl-null",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [choice],
        "usage": None,
    }


class Frames:
    """Every token chunk pre-encoded (SSE event inside an HTTP chunk), per API and id option."""

    def __init__(self) -> None:
        self._table: dict[tuple[bool, bool, bool], list[bytes]] = {}
        for chat, with_ids, last in itertools.product((False, True), repeat=3):
            self._table[(chat, with_ids, last)] = [
                _sse(_token_event(chat, 100 + k, with_ids, last)) for k in range(TOKEN_CYCLE)
            ]

    def tokens(self, chat: bool, with_ids: bool, last: bool) -> list[bytes]:
        """The frames for token i at index i % TOKEN_CYCLE."""
        return self._table[(chat, with_ids, last)]

    @staticmethod
    def tail(chat: bool, usage: dict[str, int] | None) -> bytes:
        """The usage chunk (when asked for), [DONE] and the end of the chunked body."""
        out = b""
        if usage is not None:
            event: dict[str, Any] = {
                "id": "chatcmpl-null" if chat else "cmpl-null",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": CREATED,
                "model": MODEL,
                "choices": [],
                "usage": usage,
            }
            out += _sse(event)
        return out + _chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"


@dataclass(eq=False, slots=True)
class Stream:
    """One streaming response in progress."""

    conn: Connection
    first_due_ns: int
    itl_ns: int
    n_out: int
    frames: list[bytes]
    last_frames: list[bytes]
    tail: bytes
    stamps: list[int] | None
    sent: int = 0
    closed: bool = False

    def due_ns(self) -> int:
        return self.first_due_ns + self.sent * self.itl_ns

    def advance(self, now_ns: int) -> int | None:
        """Write every chunk due by `now_ns`; the next deadline, or None once finished."""
        write = self.conn.write
        stamps = self.stamps
        while self.sent < self.n_out and self.first_due_ns + self.sent * self.itl_ns <= now_ns:
            i = self.sent
            table = self.last_frames if i == self.n_out - 1 else self.frames
            if stamps is not None:
                stamps.append(time.perf_counter_ns())
            write(table[i % TOKEN_CYCLE])
            self.sent = i + 1
        if self.sent < self.n_out:
            return self.due_ns()
        write(self.tail)
        self.conn.stream_done()
        return None


class Pacer:
    """One timer for all streams: a heap of deadlines, woken at the earliest (rounded up to
    whole milliseconds, the event loop's timer grain, so no chunk is ever sent early)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, Stream]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due_ns: int | None = None

    def add(self, stream: Stream) -> None:
        """Start a stream: chunks already due go out now, the rest on the timer."""
        due = stream.advance(time.perf_counter_ns())
        if due is not None:
            heapq.heappush(self._heap, (due, next(self._seq), stream))
            self._arm()

    def _arm(self) -> None:
        if not self._heap:
            return
        due = self._heap[0][0]
        if self._timer is not None:
            if self._timer_due_ns is not None and self._timer_due_ns <= due:
                return
            self._timer.cancel()
        wait_ns = max(due - time.perf_counter_ns(), 0)
        self._timer_due_ns = due
        self._timer = self._loop.call_later(math.ceil(wait_ns / NS_PER_MS) / 1000, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_due_ns = None
        heap = self._heap
        now = time.perf_counter_ns()
        while heap and heap[0][0] <= now:
            _, _, stream = heapq.heappop(heap)
            if not stream.closed:
                due = stream.advance(now)
                if due is not None:
                    heapq.heappush(heap, (due, next(self._seq), stream))
            now = time.perf_counter_ns()
        self._arm()


class ServerState:
    """Shared by every connection of one process."""

    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.pacer = Pacer(loop)
        self.frames = Frames()
        self.running = 0
        self.stamps: dict[str, list[int]] | None = {} if cfg.stamps else None
        self.ttft_ns = round(cfg.ttft_ms * NS_PER_MS)
        self.itl_ns = round(cfg.itl_ms * NS_PER_MS)


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """Prompt length: a token list's length, else whitespace-separated words."""
    if chat:
        words = 0
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                words += len(content.split())
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        words += len(part["text"].split())
        return words
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if prompt and isinstance(prompt[0], list):
            return len(prompt[0])
        return len(prompt)
    return len(str(prompt or "").split())


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    return max(int(value), 1)


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _discard(_: bytes) -> None:
    """Where a closed connection's writes go."""


class Connection(asyncio.Protocol):
    """HTTP/1.1 on one connection: requests in order, keep-alive, one stream at a time."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.stream: Stream | None = None
        self.close_after = False
        self.write: Callable[[bytes], None] = _discard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.write = self.transport.write

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stream is not None:
            self.stream.closed = True
            self.stream = None
            self.state.running -= 1
        self.transport = None
        self.write = _discard

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        while self.stream is None and self.transport is not None and not self.close_after:
            request = self._parse()
            if request is None:
                return
            self._dispatch(request)

    def _parse(self) -> Request | None:
        """The next whole request in the buffer, or None until more bytes come."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._fail(431, "request head too large")
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, f"bad request line: {lines[0][:100]!r}")
            return None
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self._fail(400, f"bad header line: {line[:100]!r}")
                return None
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "bad Content-Length")
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self._fail(413, "request body too large")
            return None
        start = end + 4
        if len(self.buffer) < start + length:
            return None
        body = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        return Request(method, target.split("?", 1)[0], headers, body, keep)

    def _fail(self, status: int, message: str) -> None:
        self.close_after = True
        self.buffer.clear()
        self._respond(status, orjson.dumps({"error": {"message": message}}), close=True)

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        close: bool = False,
    ) -> None:
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        self.write(head.encode("latin-1") + body)
        if close and self.transport is not None:
            self.transport.close()

    def _dispatch(self, req: Request) -> None:
        close = not req.keep_alive
        self.close_after = close
        cfg = self.state.cfg
        route = (req.method, req.path)
        if route == ("GET", "/health"):
            self._respond(200, b"", "text/plain", close)
        elif route == ("GET", "/version"):
            self._respond(200, b'{"version":"null"}', close=close)
        elif route == ("GET", "/v1/models"):
            entry: dict[str, Any] = {"id": MODEL, "object": "model", "owned_by": "null"}
            entry["max_model_len"] = cfg.max_model_len
            if cfg.model_root:
                entry["root"] = cfg.model_root
            self._respond(200, orjson.dumps({"object": "list", "data": [entry]}), close=close)
        elif route == ("GET", "/metrics"):
            text = (
                f'vllm:num_requests_running{{model_name="{MODEL}"}} {self.state.running}\n'
                f'vllm:num_requests_waiting{{model_name="{MODEL}"}} 0\n'
            )
            self._respond(200, text.encode(), "text/plain; version=0.0.4", close)
        elif req.path == "/null/stamps" and req.method in ("GET", "DELETE"):
            self._stamps(req.method, close)
        elif req.path in ("/v1/completions", "/v1/chat/completions"):
            if req.method != "POST":
                self._respond(405, b'{"error":{"message":"use POST"}}', close=close)
            else:
                self._generate(req, chat=req.path == "/v1/chat/completions")
        else:
            self._respond(404, b'{"error":{"message":"not found"}}', close=close)

    def _stamps(self, method: str, close: bool) -> None:
        stamps = self.state.stamps
        if stamps is None:
            body = b'{"error":{"message":"stamps are off: start the null server with --stamps"}}'
            self._respond(409, body, close=close)
        elif method == "GET":
            self._respond(200, orjson.dumps(stamps), close=close)
        else:
            cleared = len(stamps)
            stamps.clear()
            self._respond(200, orjson.dumps({"cleared": cleared}), close=close)

    def _generate(self, req: Request, chat: bool) -> None:
        t0 = time.perf_counter_ns()
        try:
            body = orjson.loads(req.body)
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            n_prompt = _prompt_tokens(body, chat)
            n_out = _max_tokens(body)
        except (ValueError, TypeError) as err:
            message = orjson.dumps({"error": {"message": f"bad request: {err}"}})
            self._respond(400, message, close=self.close_after)
            return
        state = self.state
        if n_prompt + n_out > state.cfg.max_model_len:
            # As vLLM answers, and it bounds what one request can make the server write.
            message = orjson.dumps(
                {
                    "error": {
                        "message": (
                            f"This model's maximum context length is {state.cfg.max_model_len} "
                            f"tokens; the request asks for {n_prompt + n_out} "
                            f"({n_prompt} in the prompt, {n_out} to generate)"
                        )
                    }
                }
            )
            self._respond(400, message, close=self.close_after)
            return
        usage = {
            "prompt_tokens": n_prompt,
            "total_tokens": n_prompt + n_out,
            "completion_tokens": n_out,
        }
        if not body.get("stream"):
            self._whole(chat, n_out, usage, t0)
            return
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        with_ids = bool(body.get("return_token_ids"))
        stamps: list[int] | None = None
        if state.stamps is not None:
            request_id = req.headers.get(STAMP_HEADER) or req.headers.get(FALLBACK_ID_HEADER)
            if request_id is not None:
                stamps = state.stamps[request_id] = []
        self.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n"
            + (b"Connection: close\r\n\r\n" if self.close_after else b"\r\n")
        )
        self.stream = Stream(
            conn=self,
            first_due_ns=t0 + state.ttft_ns,
            itl_ns=state.itl_ns,
            n_out=n_out,
            frames=state.frames.tokens(chat, with_ids, last=False),
            last_frames=state.frames.tokens(chat, with_ids, last=True),
            tail=Frames.tail(chat, usage if with_usage else None),
            stamps=stamps,
        )
        state.running += 1
        state.pacer.add(self.stream)

    def _whole(self, chat: bool, n_out: int, usage: dict[str, int], t0: int) -> None:
        """A non-streaming answer, sent when its last token would be."""
        text = " x" * n_out
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        answer = {
            "id": "chatcmpl-null" if chat else "cmpl-null",
            "object": "chat.completion" if chat else "text_completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [choice],
            "usage": usage,
        }
        body = orjson.dumps(answer)
        state = self.state
        due = t0 + state.ttft_ns + (n_out - 1) * state.itl_ns
        wait_ns = max(due - time.perf_counter_ns(), 0)
        self.stream = Stream(self, due, 0, 0, [], [], b"", None)  # holds the connection
        state.running += 1
        close = self.close_after

        def send() -> None:
            if self.stream is None or self.stream.closed:
                return  # the connection was lost, and counted out, meanwhile
            self.stream = None
            state.running -= 1
            self._respond(200, body, close=close)
            self._serve_buffered()

        asyncio.get_running_loop().call_later(math.ceil(wait_ns / NS_PER_MS) / 1000, send)

    def stream_done(self) -> None:
        """The current stream's last bytes are written: serve the next request, if any."""
        self.stream = None
        self.state.running -= 1
        if self.close_after:
            if self.transport is not None:
                self.transport.close()
            return
        # Called from the pacer: a pipelined next request starts on the next loop pass.
        if self.buffer:
            asyncio.get_running_loop().call_soon(self._serve_buffered)


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket; SO_REUSEPORT when several processes share the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


async def serve(cfg: Config, sock: socket.socket, stop: asyncio.Event | None = None) -> None:
    """Serve on `sock` until SIGTERM/SIGINT (or `stop` is set)."""
    loop = asyncio.get_running_loop()
    state = ServerState(cfg, loop)
    done = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    # create_server listens again, with a backlog of 100 unless told: a client opening a few
    # hundred streams at once would overflow it and wait out SYN retries (1 s, 3 s).
    server = await loop.create_server(lambda: Connection(state), sock=sock, backlog=BACKLOG)
    try:
        await done.wait()
    finally:
        server.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(cfg: Config, sock: socket.socket) -> None:
    """One server process on `sock`."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(cfg, sock))


def run_procs(cfg: Config, socks: list[socket.socket]) -> int:
    """One forked process per socket; SIGTERM/SIGINT are passed on; the first to fail ends all."""
    children: list[int] = []
    for index, sock in enumerate(socks):
        pid = os.fork()
        if pid == 0:
            for other in socks[index + 1 :]:
                other.close()
            code = 0
            try:
                run(cfg, sock)
            except BaseException:  # a child never returns into the parent's code
                code = 1
            os._exit(code)
        children.append(pid)
        sock.close()

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    left = set(children)
    while left:
        pid, code = os.wait()
        left.discard(pid)
        # A child still starting when the stop came dies of the SIGTERM before its loop
        # handles it: that is a clean stop, not a failure.
        stopped = stopping and os.waitstatus_to_exitcode(code) == -signal.SIGTERM
        if code and not stopped and not status:
            status = 1
            forward(signal.SIGTERM, None)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18100, help="0: any free port (printed)")
    parser.add_argument("--ttft-ms", type=float, default=5.0)
    parser.add_argument("--itl-ms", type=float, default=1.0)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--model-root", default=None, help="tokenizer dir to advertise as root")
    parser.add_argument(
        "--stamps",
        action="store_true",
        help="keep each token chunk's send time (perf_counter_ns) per X-Harness-Request-Id",
    )
    parser.add_argument("--procs", type=int, default=1, help="processes sharing the port")
    args = parser.parse_args(argv)
    if args.ttft_ms < 0 or args.itl_ms < 0:
        parser.error("--ttft-ms and --itl-ms must be 0 or more")
    if args.procs < 1:
        parser.error("--procs must be 1 or more")
    if args.stamps and args.procs > 1:
        parser.error("--stamps keeps the stamps in one process: use it with --procs 1")
    cfg = Config(args.ttft_ms, args.itl_ms, args.max_model_len, args.model_root, args.stamps)
    try:
        first = listening_socket(args.host, args.port, reuse_port=args.procs > 1)
        port = int(first.getsockname()[1])
        socks = [first] + [
            listening_socket(args.host, port, reuse_port=True) for _ in range(args.procs - 1)
        ]
    except OSError as err:
        print(f"null server: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 2
    print(
        f"null server listening on http://{args.host}:{port} "
        f"(ttft {args.ttft_ms:g} ms, itl {args.itl_ms:g} ms, {args.procs} process(es)"
        f"{', stamps' if args.stamps else ''})",
        file=sys.stderr,
        flush=True,
    )
    if args.procs == 1:
        run(cfg, first)
        return 0
    return run_procs(cfg, socks)


if __name__ == "__main__":
    sys.exit(main())
