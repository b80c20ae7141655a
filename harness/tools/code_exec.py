"""Code-execution tool kernel: a generated Python program run in the sandbox.

Like a coding agent running the script it just wrote (mini-SWE-agent's python/bash step):
the program is made by the harness from the fixed template below, with only two integers
filled in (never code from a trace): a seeded mix of arithmetic, string building, dict
counting and periodic sorting. Size unit: thousands of loop iterations of that program.
The sandbox's own start (a fresh interpreter) is part of the work, as it is for an agent.
Limits come from the size but never exceed the sandbox's fixed maxima (`limits`): a trace
`size` of 1e6 gets MAX_CPU_S, not 20,005 s, and the call says the limit was clamped (its
`limits_clamped`, in tools.parquet, counted per kind in the run summary).
"""

from __future__ import annotations

import json
import math

from harness.tools import limits
from harness.tools.sandbox import run_sandboxed

ITERATIONS_PER_UNIT = 1_000
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
BASE_CPU_LIMIT_S = 5.0
CPU_LIMIT_S_PER_UNIT = 0.02
"""Generous: about ten times the CPU a unit takes on a slow core."""

_TEMPLATE = """\
import json
import random
from collections import Counter

rng = random.Random({seed})
n = {iterations}
words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
counts = Counter()
window = []
total = 0
for i in range(n):
    x = rng.randrange(1, 1000)
    total = (total * 31 + x * x) % 1_000_003
    key = words[x % len(words)] + str(x % 7)
    counts[key] += 1
    window.append(x)
    if len(window) == 64:
        window.sort()
        total ^= window[32]
        window.clear()
print(json.dumps({{"total": total, "keys": len(counts), "iterations": n}}))
"""


def program(iterations: int, seed: int) -> str:
    """The generated program's source for `iterations` loop iterations."""
    return _TEMPLATE.format(iterations=int(iterations), seed=int(seed))


def call_limits(size: float, cpu_s: float | None = None) -> tuple[float, float, tuple[str, ...]]:
    """(CPU limit, wall limit, names of the limits clamped) of a call: scaled with size (or
    the trace's timeout where given) and capped at the fixed maxima."""
    wanted = cpu_s if cpu_s is not None else BASE_CPU_LIMIT_S + CPU_LIMIT_S_PER_UNIT * size
    cpu, cpu_clamped = limits.clamp(wanted, limits.MAX_CPU_S)
    wall, wall_clamped = limits.clamp(2.0 * cpu + 5.0, limits.MAX_WALL_S)
    names = (("cpu_s", cpu_clamped), ("wall_s", wall_clamped))
    return cpu, wall, tuple(name for name, was in names if was)


def run_code_exec(
    size: float,
    seed: int,
    *,
    cpu_s: float | None = None,
    wall_s: float | None = None,
    memory_bytes: int = MEMORY_LIMIT_BYTES,
    allow_unsandboxed: bool = False,
) -> dict[str, float | int | str | None]:
    """Run the generated program for `size` thousand iterations in the sandbox; returns its
    status, measured CPU seconds and peak RSS, and which limits were clamped. Without
    bubblewrap it runs under rlimits only, which as root needs `allow_unsandboxed`."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"code_exec size must be a finite number >= 0, got {size}")
    iterations = max(1, round(size * ITERATIONS_PER_UNIT))
    cpu_limit, wall_limit, clamped = call_limits(size, cpu_s)
    if wall_s is not None:
        wall_limit, clamped = wall_s, tuple(c for c in clamped if c != "wall_s")
    result = run_sandboxed(
        program(iterations, seed),
        cpu_s=cpu_limit,
        memory_bytes=memory_bytes,
        wall_s=wall_limit,
        allow_unsandboxed=allow_unsandboxed,
    )
    clamped_all = sorted(set(clamped) | set(result.clamped))
    checksum: int | None = None
    if result.status == "ok":
        lines = result.stdout.strip().splitlines()
        checksum = int(json.loads(lines[-1])["total"]) if lines else None
    return {
        "iterations": iterations,
        "status": result.status,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "wall_s": result.wall_s,
        "cpu_user_s": result.cpu_user_s,
        "cpu_system_s": result.cpu_system_s,
        "peak_rss_bytes": result.peak_rss_bytes,
        "network_isolated": int(result.network_isolated),
        "sandbox": result.containment,
        "cpu_limit_s": result.limits.get("cpu_s"),
        "wall_limit_s": result.limits.get("wall_s"),
        "limits_clamped": ",".join(clamped_all) or None,
        "tree_cpu_from": result.cpu_source,
        "checksum": checksum,
        "error": None if result.status == "ok" else result.stderr[-2000:] or result.status,
    }
