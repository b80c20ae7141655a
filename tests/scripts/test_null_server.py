"""scripts/null_server.py, run as a process and read by a plain aiohttp client: chunks on
absolute deadlines (none early, gaps at the set ITL), send stamps keyed by the request id
header, the OpenAI stream shapes the harness and `vllm bench serve` read, keep-alive, and
several processes on one port."""

from __future__ import annotations

import itertools
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from null_server_process import SCRIPT, NullServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def paced(tmp_path: Path) -> Iterator[NullServer]:
    server = NullServer(tmp_path, "--ttft-ms", "50", "--itl-ms", "10", "--stamps")
    yield server
    server.stop()


def _body(n_out: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "null-model",
        "prompt": list(range(12)),
        "max_tokens": n_out,
        "stream": True,
        "stream_options": {"include_usage": True},
        "return_token_ids": True,
        **extra,
    }


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = "/v1/completions",
) -> tuple[int, list[int], list[dict[str, Any]]]:
    """Send time, each event's receipt time (perf_counter_ns) and the events."""
    sent = time.perf_counter_ns()
    times: list[int] = []
    events: list[dict[str, Any]] = []
    async with session.post(url + path, data=orjson.dumps(body), headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            now = time.perf_counter_ns()
            if line == b"data: [DONE]":
                break
            times.append(now)
            events.append(orjson.loads(line[6:]))
    return sent, times, events


async def test_chunks_follow_absolute_deadlines(paced: NullServer) -> None:
    """TTFT 50 ms, ITL 10 ms: no chunk before t0 + 50 + 10·i ms, and the median gap is
    the set ITL within 1.5 ms (the event loop's timers have a millisecond grain)."""
    n_out = 40
    async with aiohttp.ClientSession() as session:
        sent, times, events = await _stream(session, paced.url, _body(n_out))
    tokens = [t for t, e in zip(times, events, strict=True) if e["choices"]]
    assert len(tokens) == n_out
    offsets_ms = [(t - sent) / 1e6 for t in tokens]
    for i, offset in enumerate(offsets_ms):
        assert offset >= 50 + 10 * i, (i, offset)
    assert offsets_ms[0] < 50 + 15
    gaps = [b - a for a, b in itertools.pairwise(offsets_ms)]
    assert abs(statistics.median(gaps) - 10) < 1.5, gaps
    # Absolute deadlines: the last chunk is not later than the schedule plus a few ms.
    assert offsets_ms[-1] < 50 + 10 * (n_out - 1) + 15


async def test_stamps_keyed_by_request_id_header(paced: NullServer) -> None:
    """One stamp per token chunk, in order, between the send and the client's receipt;
    `X-Request-Id` keys them when the harness's header is absent; DELETE clears them."""
    async with aiohttp.ClientSession() as session:
        sent_a, times_a, events_a = await _stream(
            session, paced.url, _body(3), {"X-Harness-Request-Id": "r0000001"}
        )
        _, _, _ = await _stream(session, paced.url, _body(5), {"X-Request-Id": "vb-7"})
        _, _, _ = await _stream(session, paced.url, _body(2))  # no id: not stamped
        async with session.get(paced.url + "/null/stamps") as resp:
            stamps = await resp.json()
        assert set(stamps) == {"r0000001", "vb-7"}
        assert len(stamps["vb-7"]) == 5
        a = stamps["r0000001"]
        receipts = [t for t, e in zip(times_a, events_a, strict=True) if e["choices"]]
        assert len(a) == 3 and a == sorted(a)
        for stamp, receipt in zip(a, receipts, strict=True):
            assert sent_a < stamp <= receipt
        async with session.delete(paced.url + "/null/stamps") as resp:
            assert (await resp.json()) == {"cleared": 2}
        async with session.get(paced.url + "/null/stamps") as resp:
            assert (await resp.json()) == {}


async def test_stamps_off_without_flag(tmp_path: Path) -> None:
    """Without --stamps nothing is kept and the endpoint says how to turn it on."""
    server = NullServer(tmp_path, "--ttft-ms", "0", "--itl-ms", "0")
    try:
        async with aiohttp.ClientSession() as session:
            await _stream(session, server.url, _body(2), {"X-Harness-Request-Id": "r1"})
            async with session.get(server.url + "/null/stamps") as resp:
                assert resp.status == 409
                assert "--stamps" in (await resp.json())["error"]["message"]
    finally:
        server.stop()


async def test_stream_shapes_usage_and_keep_alive(tmp_path: Path) -> None:
    """Token ids only when asked, usage only with include_usage, the last token chunk
    finishes with "length", chat streams delta content; all on one kept-alive connection."""
    server = NullServer(tmp_path, "--ttft-ms", "0", "--itl-ms", "0", "--model-root", "/m")
    try:
        opened: list[object] = []

        async def on_open(*_: object) -> None:
            opened.append(_)

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(on_open)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            _, _, events = await _stream(session, server.url, _body(4))
            assert [e["choices"][0]["token_ids"] for e in events[:4]] == [
                [100],
                [101],
                [102],
                [103],
            ]
            assert [e["choices"][0]["finish_reason"] for e in events[:4]] == [None] * 3 + ["length"]
            assert events[4]["choices"] == []
            assert events[4]["usage"] == {
                "prompt_tokens": 12,
                "total_tokens": 16,
                "completion_tokens": 4,
            }
            plain = _body(3, return_token_ids=False, stream_options=None)
            _, _, events = await _stream(session, server.url, plain)
            assert len(events) == 3
            assert all("token_ids" not in e["choices"][0] for e in events)
            chat = {
                "model": "null-model",
                "messages": [{"role": "user", "content": "one two three"}],
                "max_tokens": 2,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            _, _, events = await _stream(session, server.url, chat, path="/v1/chat/completions")
            assert [e["choices"][0]["delta"]["content"] for e in events[:2]] == [" x", " x"]
            assert events[2]["usage"]["prompt_tokens"] == 3
            async with session.post(
                server.url + "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "a b c d"}], "max_tokens": 1},
            ) as resp:
                whole = await resp.json()
            assert whole["usage"]["prompt_tokens"] == 4
            assert whole["choices"][0]["message"]["content"] == " x"
            async with session.get(server.url + "/v1/models") as resp:
                entry = (await resp.json())["data"][0]
            assert entry["id"] == "null-model" and entry["root"] == "/m"
            async with session.post(server.url + "/v1/completions", data=b"{nope") as resp:
                assert resp.status == 400
            async with session.get(server.url + "/nowhere") as resp:
                assert resp.status == 404
            async with session.get(server.url + "/health") as resp:
                assert resp.status == 200
        assert len(opened) == 1  # every request on one kept-alive connection
    finally:
        server.stop()


async def test_procs_share_the_port(tmp_path: Path) -> None:
    """--procs 2: two processes answer on one port; --stamps with it is refused."""
    server = NullServer(tmp_path, "--ttft-ms", "0", "--itl-ms", "0", "--procs", "2")
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                _, times, _ = await _stream(session, server.url, _body(3))
                assert len(times) == 4
    finally:
        server.stop()
    assert server.proc.returncode == 0
    refused = subprocess.run(
        [sys.executable, str(SCRIPT), "--port", "0", "--procs", "2", "--stamps"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert "--procs 1" in refused.stderr


def test_connections_queue_while_the_server_is_busy(tmp_path: Path) -> None:
    """Hundreds of streams opened at once: the kernel completes every handshake into the
    listen queue even while the server process is stopped (a short backlog drops SYNs and the
    client waits out 1 s, 3 s retries, which a benchmark would read as TTFT)."""
    server = NullServer(tmp_path, "--ttft-ms", "0", "--itl-ms", "0")
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    socks: list[socket.socket] = []
    server.proc.send_signal(signal.SIGSTOP)
    try:
        for _ in range(300):
            sock = socket.socket()
            sock.settimeout(0.5)
            socks.append(sock)
            sock.connect((host, int(port)))  # times out once the queue is full
    finally:
        server.proc.send_signal(signal.SIGCONT)
        for sock in socks:
            sock.close()
        server.stop()
    assert len(socks) == 300


async def test_over_the_context_window_is_refused_as_vllm_does(tmp_path: Path) -> None:
    server = NullServer(tmp_path, "--ttft-ms", "0", "--itl-ms", "0", "--max-model-len", "64")
    try:
        async with aiohttp.ClientSession() as session:
            body = _body(60)  # 12 prompt tokens + 60 > 64
            async with session.post(server.url + "/v1/completions", json=body) as resp:
                assert resp.status == 400
                assert "maximum context length is 64" in (await resp.json())["error"]["message"]
            _, times, _ = await _stream(session, server.url, _body(52))  # exactly 64: served
            assert len(times) == 53
    finally:
        server.stop()


async def test_running_gauge_after_a_dropped_whole_answer(paced: NullServer) -> None:
    """A non-streaming request whose client leaves before the answer is counted in and out
    once: /metrics shows 0 running afterwards, never -1."""
    host, port = paced.url.removeprefix("http://").rsplit(":", 1)
    body = orjson.dumps({"prompt": [1, 2], "max_tokens": 5})
    head = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body)
        time.sleep(0.02)
    time.sleep(0.2)  # past the answer's due time (50 + 4 x 10 ms)
    async with aiohttp.ClientSession() as session, session.get(paced.url + "/metrics") as resp:
        text = await resp.text()
    assert 'vllm:num_requests_running{model_name="null-model"} 0\n' in text
