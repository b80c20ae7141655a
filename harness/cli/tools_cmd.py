"""`harness tools calibrate`: measure each CPU tool kernel's time per size unit on this host."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from harness.cli.common import number_in
from harness.cli.console import make_console
from harness.run.prepare import DEFAULT_CALIBRATION
from harness.tools.calibrate import calibrate
from harness.tools.runner import TOOL_KINDS


def add_parser(sub: Any) -> None:
    """Register `harness tools calibrate`."""
    p: argparse.ArgumentParser = sub.add_parser("tools", help="agent tool kernels")
    tsub = p.add_subparsers(dest="tools_command", required=True)
    cal = tsub.add_parser(
        "calibrate", help="measure ms per size unit of each kernel (run on an idle host)"
    )
    cal.add_argument("--out", type=Path, default=DEFAULT_CALIBRATION, help="calibration JSON")
    cal.add_argument(
        "--budget",
        type=number_in(0, 3600, low_open=True),
        default=20.0,
        help="seconds to spend, about",
    )
    cal.add_argument("--kinds", nargs="+", choices=TOOL_KINDS, default=list(TOOL_KINDS))
    cal.set_defaults(handler=calibrate_cmd)


def calibrate_cmd(args: argparse.Namespace) -> int:
    """Handler of `harness tools calibrate`."""
    console = make_console()
    console.print(f"calibrating {', '.join(args.kinds)} (about {args.budget:g} s) …")
    result = calibrate(tuple(args.kinds), budget_s=args.budget)
    table = Table(title="tool calibration")
    for column in ("kind", "size unit", "ms per unit", "fixed ms", "r²"):
        table.add_column(column, justify="left" if column in ("kind", "size unit") else "right")
    for kind in args.kinds:
        table.add_row(
            kind,
            result.size_units.get(kind, ""),
            f"{result.ms_per_unit[kind]:.4g}",
            f"{result.fixed_overhead_ms.get(kind, 0.0):.1f}",
            f"{result.r2.get(kind, float('nan')):.3f}",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.save(args.out)
    console.print(f"calibration: {args.out}")
    return 0
