"""What a loader of recorded agent traces may be told beyond the file: how recorded tool
names map to kinds, and whether to repair rounds whose tokens contradict their session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TraceOptions:
    """`tool_map` overrides the default name-to-kind table (`harness.workload.tool_names`);
    `repair_tokens` turns a round whose tokens contradict its session from an error into the
    nearest consistent round (each loader's docstring says how)."""

    tool_map: Mapping[str, str] = field(default_factory=dict)
    repair_tokens: bool = False
