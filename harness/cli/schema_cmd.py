"""`harness schema summary`: print summary.json's JSON Schema, or (`--check FILE ...`) say
which summaries fit it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.errors import ResultsError
from harness.results import SUMMARY_FILE
from harness.summary import SCHEMA_VERSION, read_summary_file, summary_schema

EXIT_INVALID = 1
"""`--check`: some summary does not fit the schema."""


def add_parser(sub: Any) -> None:
    """Register `harness schema`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "schema", help="the JSON Schema of the harness's result files"
    )
    ssub = p.add_subparsers(dest="schema_command", required=True)
    summary = ssub.add_parser(
        "summary",
        help=f"summary.json's JSON Schema (version {SCHEMA_VERSION}), or check summaries",
    )
    summary.add_argument(
        "--check",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="validate each summary.json (or run directory) instead; exit 1 if any fails",
    )
    summary.set_defaults(handler=summary_cmd)


def summary_cmd(args: argparse.Namespace) -> int:
    """Handler of `harness schema summary`."""
    if not args.check:
        print(json.dumps(summary_schema(), indent=2))
        return 0
    failed = 0
    for given in args.check:
        path = given / SUMMARY_FILE if given.is_dir() else given
        try:
            summary = read_summary_file(path)
        except ResultsError as err:
            failed += 1
            print(f"invalid: {err}", flush=True)
            continue
        print(f"ok: {path} (schema_version {summary.schema_version})", flush=True)
    if failed:
        print(f"{failed} of {len(args.check)} summaries do not fit the schema")
        return EXIT_INVALID
    return 0
