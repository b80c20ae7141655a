"""Options whose value is itself an option, read before argparse sees the command line (a
module of its own: `main` needs it before any command's heavy imports)."""

from __future__ import annotations

from collections.abc import Sequence

DASH_VALUE_OPTIONS = ("--vllm-arg",)
"""Options whose value is itself an option (`--vllm-arg --enforce-eager`), which argparse
would otherwise take for an option of ours."""


def attach_dash_values(argv: Sequence[str]) -> list[str]:
    """The command line with `--vllm-arg -X` written `--vllm-arg=-X`, so argparse reads the
    value as the value it is (nothing after a bare `--` is touched)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg in DASH_VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out
