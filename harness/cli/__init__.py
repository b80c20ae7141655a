"""The `harness` command: argument parsing and dispatch. The subcommand modules are the only
places that wire concrete classes together."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from harness import __version__
from harness.errors import HarnessError


def _parser() -> argparse.ArgumentParser:
    from harness.cli import (
        compare_cmd,
        fleet_cmd,
        report_cmd,
        run_cmd,
        serve_cmd,
        sweep_cmd,
        tools_cmd,
        workload_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="harness",
        description="Replay chatbot and agent traces against a real inference server, measure "
        "throughput, latency, where the time goes and energy, and turn the measurements into "
        "capacity and fleet figures.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd.add_parser(sub)
    sweep_cmd.add_parser(sub)
    workload_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    report_cmd.add_parser(sub)
    tools_cmd.add_parser(sub)
    compare_cmd.add_parser(sub)
    fleet_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        code: int = args.handler(args)
    except HarnessError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
