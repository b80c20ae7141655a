"""`harness workload inspect`: what a workload or trace holds, without a server."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table
from rich.text import Text

from harness.cli.common import add_workload_args, resolve_workload, with_source_flags
from harness.cli.console import make_console
from harness.workload.detect import detect_format
from harness.workload.formats import RECORDED_FORMATS
from harness.workload.recorded import RecordedSplit
from harness.workload.source import open_source
from harness.workload.spec import WorkloadSpec
from harness.workload.stats import workload_stats
from harness.workload.tokenizer import load_token_space

SESSIONS_SHOWN = 20
"""Sessions the console lists in the recorded split (the JSON lists more; totals count all)."""
_SUMS = ("sessions", "requests", "input_tokens", "output_tokens")


def add_parser(sub: Any) -> None:
    """Register `harness workload inspect`."""
    p: argparse.ArgumentParser = sub.add_parser("workload", help="inspect workloads and traces")
    wsub = p.add_subparsers(dest="workload_command", required=True)
    inspect = wsub.add_parser(
        "inspect", help="sessions, requests, token sums, time span and a recording's own split"
    )
    add_workload_args(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(handler=inspect_cmd)


def _recorded_format(spec: WorkloadSpec, fmt: str | None) -> bool:
    """Whether the source is a recording of agents that times itself (a recorded split)."""
    trace = spec.source.trace
    if trace is None:
        return False
    name = fmt or spec.source.format or detect_format(trace)
    return name in RECORDED_FORMATS


def inspect_cmd(args: argparse.Namespace) -> int:
    """Handler of `harness workload inspect`."""
    spec = with_source_flags(resolve_workload(args.workload, args.format), args)
    counter = load_token_space(args.tokenizer) if args.tokenizer else None
    recorded = RecordedSplit() if _recorded_format(spec, args.format) else None
    sessions = open_source(spec.source, format_override=args.format, token_counter=counter)
    stats = workload_stats(recorded.tap(sessions) if recorded is not None else sessions)
    data = stats.to_json_dict()
    scale = spec.source.token_scale
    data["token_scale"] = scale
    if scale != 1.0:
        unscaled_source = spec.source.model_copy(update={"token_scale": 1.0})
        unscaled = workload_stats(
            open_source(unscaled_source, format_override=args.format, token_counter=counter)
        ).to_json_dict()
        data["unscaled"] = {key: unscaled[key] for key in _SUMS}
    if recorded is not None:
        data["recorded_split"] = recorded.to_json_dict()
    if args.json:
        print(json.dumps(data, indent=2, allow_nan=False))  # never Infinity: not JSON
        return 0
    console = make_console()
    table = Table(title=Text(f"workload {spec.name}"))
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (*_SUMS, "span_s"):
        value = data[key]
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else f"{value:,}")
    for name, stats_row in data.get("percentiles", {}).items():
        cells = ", ".join(f"{k} {v:,.0f}" for k, v in stats_row.items() if v is not None)
        table.add_row(Text(name), Text(cells))
    if scale != 1.0:
        table.add_row("token_scale", f"{scale:g}")
        for key in _SUMS[2:]:
            table.add_row(f"{key} (unscaled)", f"{data['unscaled'][key]:,}")
    console.print(table)
    if recorded is not None:
        for part in _recorded_tables(recorded):
            console.print(part)
    return 0


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _recorded_tables(recorded: RecordedSplit) -> list[Table | Text]:
    """The recording's own split per session and in total, and its tool calls by kind."""
    totals = recorded.totals()
    if totals is None:
        return [Text("Recorded split: not available: the trace does not time its LLM calls")]
    table = Table(title=Text("Recorded split (as the recording timed it; seconds)"))
    subagents = recorded.subagent_wait_s > 0
    columns = ["session", "requests", "LLM", "tools", "human"]
    if subagents:
        columns.append("waiting on sub-agents")
    for name in columns:
        table.add_column(name, justify="left" if name == "session" else "right")
    for s in recorded.sessions[:SESSIONS_SHOWN]:
        cells = [_seconds(s.llm_s), _seconds(s.tool_s), _seconds(s.human_s)]
        if subagents:
            cells.append(_seconds(s.subagent_wait_s))
        table.add_row(Text(s.session_id), f"{s.requests:,}", *cells)
    more = recorded.session_count - min(len(recorded.sessions), SESSIONS_SHOWN)
    blank = [""] * (len(columns) - 1)
    if more > 0:
        table.add_row(Text(f"… {more:,} more sessions"), *blank)
    cells = [_seconds(totals[k]) for k in ("llm_s", "tool_s", "human_s")]
    if subagents:
        cells.append(_seconds(totals["subagent_wait_s"]))
    table.add_row(Text(f"total ({totals['sessions']:,} timed sessions)"), "", *cells)
    llm_share, tool_share = totals["llm_share"], totals["tool_share"]
    if llm_share is not None and tool_share is not None:
        shares = ["", f"{llm_share:.1%}", f"{tool_share:.1%}", *blank[3:]]
        table.add_row(Text("share of LLM + tools"), *shares)
    kinds = Table(title=Text("Recorded tool calls by kind they run as"))
    kinds.add_column("kind")
    kinds.add_column("calls", justify="right")
    kinds.add_column("recorded names")
    names: dict[str, list[str]] = {}
    for name, calls in sorted(recorded.tool_names.items()):
        names.setdefault(recorded.name_kinds[name], []).append(f"{name} ×{calls:,}")
    for kind, count in sorted(recorded.tool_kinds.items()):
        kinds.add_row(Text(kind), f"{count:,}", Text(", ".join(names.get(kind, []))))
    return [table, kinds]
