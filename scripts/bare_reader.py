#!/usr/bin/env python3
"""The floor of a Python streaming client, for scripts/bench_client.py's CPU part.

A uvloop client that does only what every measuring client must: one kept-alive connection
per stream, the request written, each read of the response stamped with the monotonic
clock, and the stream's tokens counted by its `data:` events. No HTTP parser, no JSON, no
records: its CPU per streamed token is what the kernel, the event loop and the interpreter
cost before any client's own work, so the harness's figure can be read against it.

    bare_reader.py URL REQUESTS STREAMS OUTPUT_TOKENS PROMPT_TOKENS

Prints one JSON line: requests, tokens (data events less [DONE]), reads, failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import uvloop

END = b"0\r\n\r\n"


class _Stream(asyncio.Protocol):
    """One kept-alive connection: stamp every read, count the events, end at the last chunk."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] | None = None
        self.stamps: list[int] = []
        self.events = 0
        self.tail = b""

    def expect(self, done: asyncio.Future[None]) -> None:
        self.done, self.events, self.tail = done, 0, b""

    def data_received(self, data: bytes) -> None:
        self.stamps.append(time.perf_counter_ns())
        self.events += data.count(b"data: ")
        self.tail = (self.tail + data)[-16:]
        if self.tail.endswith(END) and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(str(exc)))


async def _main(url: str, requests: int, streams: int, output: int, prompt: int) -> dict[str, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps(
        {
            "model": "null-model",
            "prompt": [1] * prompt,
            "max_tokens": output,
            "stream": True,
            "ignore_eos": True,
            "return_token_ids": True,
        }
    ).encode()
    head = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    left = requests
    totals = {"requests": 0, "tokens": 0, "reads": 0, "failed": 0}

    async def one_stream() -> None:
        nonlocal left
        transport, proto = await loop.create_connection(_Stream, host, port)
        while left > 0:
            left -= 1
            done: asyncio.Future[None] = loop.create_future()
            proto.expect(done)
            transport.write(head + body)
            try:
                await done
            except ConnectionError:
                totals["failed"] += 1 + left  # the connection is gone: stop here
                left = 0
                break
            totals["requests"] += 1
            totals["tokens"] += proto.events - 1  # less [DONE]
        totals["reads"] += len(proto.stamps)
        transport.close()

    await asyncio.gather(*(one_stream() for _ in range(streams)))
    return totals


def main() -> int:
    url, requests, streams, output, prompt = sys.argv[1], *map(int, sys.argv[2:6])
    totals = uvloop.run(_main(url, requests, streams, output, prompt))
    print(json.dumps(totals))
    return 0 if totals["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
