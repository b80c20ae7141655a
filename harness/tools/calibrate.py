"""Host calibration of the tool kernels: wall milliseconds per size unit on this machine.

For each kind the size is doubled until one call takes about a target time and at least
three times the smallest call (those calls and one more at the largest size warm up caches
and are excluded), then sizes 1-4x that base are timed three times each in alternating
order, and a least-squares line `ms = fixed_overhead_ms + ms_per_unit * size` is fitted
through each size's fastest time (the least disturbed by other work on the host). r2 says
how linear the kernel is, or how busy the host was: calibrate on an otherwise idle host.
Execute mode uses the line to turn a recorded tool duration into equivalent real work.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.telemetry.cpu import host_inventory
from harness.tools import kernels
from harness.tools.runner import TOOL_KINDS
from harness.tools.sandbox import sandbox_problem
from harness.units import NS_PER_MS

DEFAULT_BUDGET_S = 20.0
_MULTIPLES = (1, 2, 3, 4)
_REPEATS = 3
_START_SIZE = 1.0
_MAX_DOUBLINGS = 30
_FIXED_MULTIPLE = 3.0
"""The base call takes at least this many times the smallest call, so work outweighs overhead."""
_CALLS_PER_TARGET = 46.0
"""Cost of one kind's calibration in units of the target call time (search, warm-up, fit)."""


class Calibration(BaseModel):
    """Per-kind linear cost model of the tool kernels on one host."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: dict[str, Any]
    ms_per_unit: dict[str, float]
    fixed_overhead_ms: dict[str, float]
    r2: dict[str, float]
    size_units: dict[str, str] = Field(default_factory=dict)
    measured_at: datetime

    def predict_ms(self, kind: str, size: float) -> float:
        """Expected wall milliseconds of a call of `size` units of `kind` on this host."""
        return self.fixed_overhead_ms.get(kind, 0.0) + self.ms_per_unit[kind] * size

    def save(self, path: Path | str) -> None:
        """Write the calibration as JSON; ConfigError naming the file when that fails."""
        target = Path(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{target}: cannot write calibration: {exc}") from exc

    @classmethod
    def load(cls, path: Path | str) -> Calibration:
        """Read a calibration written by `save`; ConfigError naming the file when invalid."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read calibration: {exc}") from exc
        try:
            calibration = cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise ConfigError(f"{source}: invalid calibration at {where}: {first['msg']}") from exc
        bad = [k for k, v in calibration.ms_per_unit.items() if not v > 0]
        if bad:
            raise ConfigError(f"{source}: ms_per_unit must be > 0 for {', '.join(bad)}")
        return calibration


def _time_ms(kind: str, size: float, seed: int) -> float:
    """Wall milliseconds of one kernel call (a failing kernel is a calibration error)."""
    run = kernels.kernel(kind)
    start = time.perf_counter_ns()
    summary = run(size, seed)
    elapsed = (time.perf_counter_ns() - start) / NS_PER_MS
    if summary.get("status", "ok") != "ok":
        raise ConfigError(f"calibration of tool kind {kind!r} failed: {summary.get('error')}")
    return elapsed


def fit_line(sizes: Sequence[float], ms: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares (slope, intercept, r2) of ms against size."""
    x, y = np.asarray(sizes, dtype=float), np.asarray(ms, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        slope, intercept = float(np.mean(y / x)), 0.0
    residual = float(np.sum((y - (slope * x + intercept)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return float(slope), float(intercept), r2


def _calibrate_kind(kind: str, target_ms: float, seed: int) -> tuple[float, float, float]:
    """(ms_per_unit, fixed_overhead_ms, r2) of one kind, fitted around `target_ms` calls."""
    size = _START_SIZE
    _time_ms(kind, size, seed)
    floor_ms = _FIXED_MULTIPLE * _time_ms(kind, size, seed)
    for _ in range(_MAX_DOUBLINGS):
        if _time_ms(kind, size, seed) >= max(target_ms, floor_ms):
            break
        size *= 2
    _time_ms(kind, size * max(_MULTIPLES), seed)
    sizes = [size * m for m in _MULTIPLES]
    best = [math.inf] * len(sizes)
    for r in range(_REPEATS):
        order = range(len(sizes)) if r % 2 == 0 else reversed(range(len(sizes)))
        for i in order:
            best[i] = min(best[i], _time_ms(kind, sizes[i], seed))
    return fit_line(sizes, best)


def calibrate(
    kinds: Sequence[str] = TOOL_KINDS, budget_s: float = DEFAULT_BUDGET_S, seed: int = 0
) -> Calibration:
    """Measure each kernel's wall ms per size unit on this host within about `budget_s`."""
    if not kinds:
        raise ConfigError("calibration needs at least one tool kind")
    for kind in kinds:
        kernels.kernel(kind)
    if "code_exec" in kinds and os.geteuid() == 0 and (problem := sandbox_problem()):
        others = " ".join(k for k in kinds if k != "code_exec") or "retrieval"
        raise ConfigError(
            f"calibrating code_exec runs generated code as root, and the bubblewrap sandbox is "
            f"not usable here: {problem.detail}; to fix it, {problem.fix}; or leave code_exec "
            f"out (--kinds {others})"
        )
    target_ms = budget_s * 1000.0 / len(kinds) / _CALLS_PER_TARGET
    slopes: dict[str, float] = {}
    fixed: dict[str, float] = {}
    r2: dict[str, float] = {}
    for kind in kinds:
        slopes[kind], fixed[kind], r2[kind] = _calibrate_kind(kind, target_ms, seed)
    return Calibration(
        host=host_inventory(),
        ms_per_unit=slopes,
        fixed_overhead_ms=fixed,
        r2=r2,
        size_units={k: kernels.SIZE_UNITS[k] for k in kinds},
        measured_at=datetime.now(UTC),
    )
