"""Figures for reports (matplotlib, the only importer of it; headless Agg backend)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LLM = "LLM (inference server)"
ORCHESTRATION = "orchestration"


def split_components(split: Mapping[str, Any]) -> dict[str, float]:
    """Seconds per session of each part of a run's latency split: LLM, each tool kind (its
    share of the tool phase), orchestration."""
    sessions = float(split.get("sessions") or 0) or 1.0
    parts: dict[str, float] = {LLM: float(split["llm_s"]) / sessions}
    kinds: Mapping[str, Any] = split.get("per_tool_kind") or {}
    kind_total = sum(float(k["tool_s"]) for k in kinds.values())
    tool_s = float(split["tool_s"])
    for name, k in sorted(kinds.items()):
        # Parallel calls overlap: scale each kind's call time to the tool phase's wall time.
        weight = float(k["tool_s"]) / kind_total if kind_total > 0 else 0.0
        parts[f"tool: {name}"] = tool_s * weight / sessions
    parts[ORCHESTRATION] = float(split["orchestration_s"]) / sessions
    return parts


def latency_breakdown_chart(runs: Sequence[tuple[str, Mapping[str, float]]], title: str) -> bytes:
    """Stacked bars, one per workload, of seconds per session by component, as PNG bytes."""
    components: list[str] = []
    for _, parts in runs:
        components.extend(c for c in parts if c not in components)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(runs) + 3), 4.5))
    names = [name for name, _ in runs]
    bottoms = [0.0] * len(runs)
    cmap = plt.get_cmap("tab10")
    for i, comp in enumerate(components):
        values = [parts.get(comp, 0.0) for _, parts in runs]
        ax.bar(names, values, bottom=bottoms, label=comp, color=cmap(i % 10))
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    for x, total in enumerate(bottoms):
        ax.annotate(f"{total:.2f} s", (x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("seconds per session")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
