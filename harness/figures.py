"""Figures as text, shared by the computing modules (compare, fleet) and the presentation
ones (report, HTML pages, the sweep report): the n/a marker, numbers and shares, SLO limits
and attainments, report sections (titled tables of strings) and dotted lookups in parsed
JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.capacity import meets_target
from harness.workload.slo import Slo

MISSING = "n/a"
"""Shown where a figure is absent (never a made-up 0)."""


@dataclass(slots=True)
class Section:
    """One titled table of a report, already formatted as strings."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    note: str | None = None
    """One line under the table, e.g. rows left out because nothing was measured; a section
    without rows is shown as this line alone ("Energy: not measured (...)")."""


@dataclass(frozen=True, slots=True)
class FigureRef:
    """One figure of a report: what it shows (`caption`) and its image file beside the
    report; `file` None where the chart was not drawn, the caption then saying why."""

    caption: str
    file: str | None = None


_NUMERIC_CELL = re.compile(
    r"[-+]?(\d[\d,]*)?\.?\d+(e[-+]?\d+)?(\s?(%|×|[kMGTPE]))?(\s\(.*\))?",
    re.IGNORECASE,
)
"""A formatted figure: "1,234.5", "12.0 %", "1.25×", "30.00 T", "4.315e+24", "1,692 (per
CPU host)"."""


def is_numeric_cell(cell: str) -> bool:
    """Whether a formatted cell reads as a figure (right-aligned in tables)."""
    return _NUMERIC_CELL.fullmatch(cell.strip()) is not None


def format_value(value: Any, digits: int = 2) -> str:
    """A figure as text: ints plain, floats to `digits` decimals, None as n/a."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def format_share(value: Any) -> str:
    """A fraction as a percentage ("42.0 %"), None as n/a."""
    return MISSING if value is None else f"{100 * float(value):.1f} %"


def slo_text(
    slo: Slo | None,
    *,
    number: Callable[[Any], str] = format_value,
    at_most: str = "<=",
    none: str = "none set",
) -> str:
    """SLO limits as "TTFT <= 25.00 ms, TPOT <= 6.00 ms": each limit written with `number`,
    limits that are not set left out, `none` where none is."""
    limits = slo.limits_ms() if slo is not None else {}
    text = [
        f"{key.removesuffix('_ms').upper()} {at_most} {number(value)} ms"
        for key, value in limits.items()
    ]
    return ", ".join(text) or none


def lookup(mapping: Mapping[str, Any] | None, *paths: str) -> Any:
    """The first present value among dotted `paths` (e.g. "server.model"), else None (also
    where `mapping`, or any level on the way, is not a mapping). For untyped JSON such as a
    manifest; a run's summary is read through harness.summary's model."""
    for path in paths:
        node: Any = mapping
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return None


MAX_ATTAINMENT_DIGITS = 6


def attainment_text(attainment: float | None, target: float) -> str:
    """An attainment as a percentage with as many decimals (at least one) as it takes for the
    shown number to agree with `meets_target`, the verdict's rule: 0.897 against 0.9 is
    "89.7 %", 0.8999 is "89.99 %", never a "90.0 %" that missed. None is n/a."""
    if attainment is None:
        return MISSING
    meets = meets_target(attainment, target)
    for digits in range(1, MAX_ATTAINMENT_DIGITS + 1):
        shown, wanted = round(100 * attainment, digits), round(100 * target, digits)
        if (shown >= wanted) == meets:
            return f"{shown:.{digits}f} %"
    # A miss closer to the target than the digits shown: rounded down, so it still reads short.
    scale = 10**MAX_ATTAINMENT_DIGITS
    return f"{math.floor(100 * attainment * scale) / scale:.{MAX_ATTAINMENT_DIGITS}f} %"


def target_text(target: float) -> str:
    """The target attainment as a percentage, as few digits as it needs ("90 %", "99.5 %")."""
    return f"{100 * target:.6g} %"
