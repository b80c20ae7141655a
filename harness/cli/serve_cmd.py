"""`harness serve`: run the embedded vLLM CPU server (or `vllm serve MODEL`) until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

from rich.text import Text

from harness.cli.common import number_in
from harness.cli.console import literal_printer, make_console
from harness.cli.run_options import add_start_timeout_arg, split_vllm_args
from harness.run.plan import project_root
from harness.server import Server
from harness.server_process import EmbeddedServer, LaunchedServer


def add_parser(sub: Any) -> None:
    """Register `harness serve`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the embedded vLLM CPU server (or a launched model) in the foreground"
    )
    p.add_argument("--model", help="launch `vllm serve MODEL` instead of the embedded server")
    p.add_argument(
        "--port",
        type=number_in(1, 65535, integer=True),
        default=None,
        help="port on 127.0.0.1 (default: free)",
    )
    p.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra vllm serve argument (repeatable; `--vllm-arg --enforce-eager` works, and "
        "one value may hold several words: --vllm-arg '--max-model-len 2048')",
    )
    add_start_timeout_arg(p)
    p.add_argument(
        "--ready-file", type=Path, default=None, help="write the base URL here once it serves"
    )
    p.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    """Handler of `harness serve`: start, report the URL, wait for SIGINT/SIGTERM, stop."""
    console = make_console()
    server: Server
    say = literal_printer(console)
    extra = split_vllm_args(args.vllm_arg)
    timeout_s = args.server_start_timeout_s
    if args.model:
        server = LaunchedServer(
            args.model, extra_args=extra, port=args.port, startup_timeout_s=timeout_s, progress=say
        )
    else:
        server = EmbeddedServer(
            project_root(),
            port=args.port,
            extra_args=extra,
            startup_timeout_s=timeout_s,
            progress=say,
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print("starting the server (the embedded CPU server takes 40–100 s) …")
    with server as info:
        console.print(
            Text.assemble(
                "serving ",
                (info.model, "bold"),
                f" at {info.base_url} (max_model_len {info.max_model_len}, "
                f"vLLM {info.server_version}); Ctrl-C stops",
            )
        )
        if args.ready_file is not None:
            args.ready_file.write_text(info.base_url + "\n")
        stop.wait()
        console.print("stopping the server …")
    return 0
