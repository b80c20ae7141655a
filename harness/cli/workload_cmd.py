"""`harness workload inspect`: what a workload or trace holds, without a server."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table
from rich.text import Text

from harness.cli.common import add_workload_args, resolve_workload
from harness.cli.console import make_console
from harness.workload.source import open_source
from harness.workload.stats import workload_stats
from harness.workload.tokenizer import load_token_space


def add_parser(sub: Any) -> None:
    """Register `harness workload inspect`."""
    p: argparse.ArgumentParser = sub.add_parser("workload", help="inspect workloads and traces")
    wsub = p.add_subparsers(dest="workload_command", required=True)
    inspect = wsub.add_parser("inspect", help="sessions, requests, token sums and time span")
    add_workload_args(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(handler=inspect_cmd)


def inspect_cmd(args: argparse.Namespace) -> int:
    """Handler of `harness workload inspect`."""
    spec = resolve_workload(args.workload, args.format)
    counter = load_token_space(args.tokenizer) if args.tokenizer else None
    stats = workload_stats(
        open_source(spec.source, format_override=args.format, token_counter=counter)
    )
    data = stats.to_json_dict()
    if args.json:
        print(json.dumps(data, indent=2, allow_nan=False))  # never Infinity: not JSON
        return 0
    table = Table(title=Text(f"workload {spec.name}"))
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("sessions", "requests", "input_tokens", "output_tokens", "span_s"):
        value = data[key]
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    for name, stats_row in data.get("percentiles", {}).items():
        cells = ", ".join(f"{k} {v:,.0f}" for k, v in stats_row.items() if v is not None)
        table.add_row(Text(name), Text(cells))
    make_console().print(table)
    return 0
