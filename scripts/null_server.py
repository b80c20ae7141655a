#!/usr/bin/env python3
"""A null inference server: answers the OpenAI completions API the way vLLM streams it, with
no model behind it, at a fixed time to first token and inter-token latency.

It measures the harness itself (its client, its memory, its overhead), never an inference
server: figures taken against it say so. Endpoints: /health, /version, /v1/models,
/metrics (two vLLM gauges), /v1/completions (streaming, `return_token_ids`, usage).

    python scripts/null_server.py --port 18100 --ttft-ms 5 --itl-ms 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

MODEL = "null-model"


def build_app(
    ttft_ms: float, itl_ms: float, max_model_len: int, model_root: str | None
) -> web.Application:
    """The null server's routes."""
    state = {"running": 0}

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "null"})

    async def models(_: web.Request) -> web.Response:
        entry: dict[str, Any] = {"id": MODEL, "max_model_len": max_model_len}
        if model_root:
            entry["root"] = model_root
        return web.json_response({"object": "list", "data": [entry]})

    async def metrics(_: web.Request) -> web.Response:
        text = (
            f'vllm:num_requests_running{{model_name="{MODEL}"}} {state["running"]}\n'
            f'vllm:num_requests_waiting{{model_name="{MODEL}"}} 0\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body.get("prompt")
        n_prompt = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
        n_out = int(body.get("max_tokens") or 16)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        state["running"] += 1
        try:
            await asyncio.sleep(ttft_ms / 1000)
            for i in range(n_out):
                if i:
                    await asyncio.sleep(itl_ms / 1000)
                chunk = {"choices": [{"index": 0, "text": " x", "token_ids": [100 + i % 50]}]}
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            usage = {"prompt_tokens": n_prompt, "completion_tokens": n_out}
            final = {"choices": [], "usage": usage}
            await resp.write(b"data: " + json.dumps(final).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        finally:
            state["running"] -= 1
        return resp

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/completions", completions)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--ttft-ms", type=float, default=5.0)
    parser.add_argument("--itl-ms", type=float, default=1.0)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--model-root", default=None, help="tokenizer dir to advertise as root")
    args = parser.parse_args()
    app = build_app(args.ttft_ms, args.itl_ms, args.max_model_len, args.model_root)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
