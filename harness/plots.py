"""Figures for reports (matplotlib, the only importer of it; headless Agg backend)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

from harness.compare import number
from harness.summary import LatencySplit
from harness.timeline import Series, Timeline
from harness.workload.slo import Slo

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LLM = "LLM (inference server)"
ORCHESTRATION = "orchestration"


QUEUED = "queued in the harness"


def split_components(split: LatencySplit) -> dict[str, float]:
    """Seconds per session of each part of a run's latency split: LLM, each tool kind (its
    part of the tool row), time queued in the harness, orchestration."""
    sessions = float(split.sessions) or 1.0
    parts: dict[str, float] = {LLM: split.llm_s / sessions}
    kinds = split.per_tool_kind
    kind_total = sum(k.tool_s for k in kinds.values())
    for name, k in sorted(kinds.items()):
        # Parallel calls overlap: scale each kind's call time to the tool row's time.
        weight = k.tool_s / kind_total if kind_total > 0 else 0.0
        parts[f"tool: {name}"] = split.tool_s * weight / sessions
    if split.queued_s > 0:
        parts[QUEUED] = split.queued_s / sessions
    parts[ORCHESTRATION] = split.orchestration_s / sessions
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
    return _png(fig)


def _png(fig: Any) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


LATENCY_PANELS: tuple[tuple[str, str, Callable[[Slo], float | None]], ...] = (
    ("ttft_ms_p99", "TTFT p99 (ms)", lambda slo: slo.ttft_ms),
    ("tpot_ms_p99", "TPOT p99 (ms)", lambda slo: slo.tpot_ms),
    ("e2el_ms_p50", "E2EL p50 (ms)", lambda slo: slo.e2el_ms),
)
"""Panels of the throughput-vs-latency chart: (point key, axis label, the SLO's limit)."""


def throughput_latency_chart(
    curves: Sequence[tuple[str, Sequence[Mapping[str, Any]], Slo | None]],
    x_key: str,
    x_label: str,
    title: str,
    marked: Sequence[Mapping[str, Any] | None] = (),
) -> bytes:
    """Throughput-vs-latency curves of sweeps, as PNG bytes: one panel per LATENCY_PANELS
    entry, one line per sweep (name, load points, SLO in ms), its SLO as a dashed line.
    Points missing a figure are left out, never drawn at 0. `marked[i]`, where given, is the
    point of curve i drawn as a star (a sweep's capacity point)."""
    fig, axes = plt.subplots(1, len(LATENCY_PANELS), figsize=(5.0 * len(LATENCY_PANELS), 4.2))
    cmap = plt.get_cmap("tab10")
    for ax, (y_key, y_label, slo_limit) in zip(axes, LATENCY_PANELS, strict=True):
        for i, (name, points, slo) in enumerate(curves):
            color = cmap(i % 10)
            xy = [
                (float(p[x_key]), float(p[y_key]))
                for p in points
                if p.get(x_key) is not None and p.get(y_key) is not None
            ]
            xy.sort()
            if xy:
                ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", color=color, label=name)
            mark = marked[i] if i < len(marked) else None
            if mark is not None and mark.get(x_key) is not None and mark.get(y_key) is not None:
                ax.plot(
                    float(mark[x_key]),
                    float(mark[y_key]),
                    marker="*",
                    markersize=16,
                    color=color,
                    markeredgecolor="black",
                    linestyle="none",
                    zorder=5,
                    label=f"{name} capacity",
                )
            limit = slo_limit(slo) if slo is not None else None
            if limit is not None:
                ax.axhline(
                    float(limit), color=color, linestyle="--", linewidth=1, label=f"{name} SLO"
                )
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def ratio_bars_chart(
    names: Sequence[str], metrics: Sequence[tuple[str, Sequence[float | None]]], title: str
) -> bytes:
    """Grouped bars of each metric's ratio to the first run (1.0 = same), as PNG bytes.
    A missing ratio draws no bar and is labelled n/a, never shown as 0."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(metrics) + 3), 4.5))
    cmap = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        labelled = False
        for i, (_, ratios) in enumerate(metrics):
            x = i + (j - (len(names) - 1) / 2) * width
            value = ratios[j]
            if value is None:
                ax.annotate("n/a", (x, 0.02), ha="center", va="bottom", fontsize=7, rotation=90)
                continue
            ax.bar(x, value, width=width, color=cmap(j % 10), label=None if labelled else name)
            labelled = True
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([label for label, _ in metrics], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"ratio to {names[0]}" if names else "ratio")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def timeline_chart(timeline: Timeline, title: str) -> bytes:
    """Power, utilisation and request/tool activity over the run, one panel each on a shared
    time axis, as PNG bytes; a panel with nothing measured says so instead of drawing zero."""
    panels: list[tuple[str, list[Series]]] = [
        ("power (W)", timeline.power_w),
        ("utilisation (%)", timeline.utilization_pct),
        ("in flight / running", timeline.activity),
    ]
    fig, axes = plt.subplots(3, 1, figsize=(9.0, 7.0), sharex=True)
    for ax, (ylabel, series) in zip(axes, panels, strict=True):
        for line in series:
            ax.step(line.t_s, line.values, where="post", label=line.label, linewidth=1.0)
        ax.set_ylabel(ylabel)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        if series is timeline.utilization_pct:
            ax.set_ylim(0, 105)  # a percentage: the whole scale, not a zoom on rounding noise
        if series:
            ax.legend(fontsize=7, loc="upper right")
        else:
            ax.text(0.5, 0.6, "not measured", transform=ax.transAxes, ha="center", va="center")
    if timeline.unavailable:
        reasons = "\n".join(textwrap.shorten(u, 110) for u in timeline.unavailable)
        axes[0].text(0.01, 0.04, reasons, transform=axes[0].transAxes, fontsize=7, va="bottom")
    axes[-1].set_xlabel("seconds since the first request was sent")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def _log_if_wide(values: Sequence[float], span: float = 20.0) -> bool:
    """Whether an axis over `values` reads better on a log scale: all positive, wide range."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= span


_RIGHT_OF: dict[str, Any] = {"xytext": (3, 0), "textcoords": "offset points", "va": "center"}
"""Placement of a bar's label: just right of the point it names."""

FLEET_MW_BARS: tuple[tuple[str, str], ...] = (
    ("facility_power_avg_mw", "facility, average"),
    ("facility_power_peak_mw", "facility, peak"),
)
"""Bars of the fleet chart's power panel: (figure key, legend label)."""


def fleet_profiles_chart(profiles: Sequence[tuple[str, Mapping[str, Any]]], title: str) -> bytes:
    """GPUs and facility MW (average and peak) per profile of a fleet study, as PNG bytes: two
    panels of horizontal bars, one bar group per (name, fleet figures). A missing figure
    draws no bar and is labelled n/a, never shown as 0."""
    names = [name for name, _ in profiles]
    fig, (ax_gpus, ax_mw) = plt.subplots(
        1, 2, figsize=(12.0, max(3.0, 0.55 * len(names) + 1.8)), sharey=True
    )
    rows = list(range(len(names)))
    gpus = [number(fig_.get("gpus")) for _, fig_ in profiles]
    for y, value in zip(rows, gpus, strict=True):
        if value is None:
            ax_gpus.annotate("n/a", (0, y), fontsize=8, **_RIGHT_OF)
            continue
        ax_gpus.barh(y, value, color="tab:blue")
        ax_gpus.annotate(f"{value:,.0f}", (value, y), fontsize=8, **_RIGHT_OF)
    ax_gpus.set_xlabel("GPUs")
    ax_gpus.xaxis.set_major_formatter("{x:,.0f}")
    ax_gpus.locator_params(axis="x", nbins=5)
    ax_gpus.tick_params(axis="x", labelsize=8)
    ax_gpus.set_yticks(rows)
    ax_gpus.set_yticklabels(names, fontsize=8)
    ax_gpus.set_ylim(len(names) - 0.5, -0.5)  # first profile on top, rows without bars kept
    height = 0.8 / len(FLEET_MW_BARS)
    cmap = plt.get_cmap("tab10")
    for j, (key, label) in enumerate(FLEET_MW_BARS):
        labelled = False
        for y, (_, figures) in zip(rows, profiles, strict=True):
            offset = (j - (len(FLEET_MW_BARS) - 1) / 2) * height
            value = number(figures.get(key))
            if value is None:
                ax_mw.annotate("n/a", (0, y + offset), fontsize=7, **_RIGHT_OF)
                continue
            ax_mw.barh(
                y + offset,
                value,
                height=height,
                color=cmap(j + 1),
                label=None if labelled else label,
            )
            labelled = True
    ax_mw.set_xlabel("facility power (MW)")
    if ax_mw.get_legend_handles_labels()[0]:
        ax_mw.legend(fontsize=8, loc="lower right")
    for ax, drawn in ((ax_gpus, any(g is not None for g in gpus)), (ax_mw, bool(ax_mw.patches))):
        if not drawn:
            ax.text(0.5, 0.5, "not available", transform=ax.transAxes, ha="center", va="center")
    for ax in (ax_gpus, ax_mw):
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.15)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


FLEET_SWEEP_PANELS: tuple[tuple[str, str], ...] = (
    ("gpus", "GPUs"),
    ("facility_power_avg_mw", "facility power, average (MW)"),
)
"""Panels of the fleet sweep chart: (row key, axis label)."""


def fleet_sweep_chart(
    curves: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], x_label: str, title: str
) -> bytes:
    """Cards and facility MW against a scenario's swept parameter, as PNG bytes: one panel per
    FLEET_SWEEP_PANELS entry, one line per (profile name, sweep rows with `value`). Rows
    missing a figure are left out, never drawn at 0; wide ranges get log axes."""
    fig, axes = plt.subplots(
        1, len(FLEET_SWEEP_PANELS), figsize=(5.5 * len(FLEET_SWEEP_PANELS), 4.5)
    )
    cmap = plt.get_cmap("tab10")
    xs_all = [v for _, rows in curves for r in rows if (v := number(r.get("value"))) is not None]
    for ax, (key, y_label) in zip(axes, FLEET_SWEEP_PANELS, strict=True):
        ys_all: list[float] = []
        for i, (name, rows) in enumerate(curves):
            xy = []
            for row in rows:
                x, y = number(row.get("value")), number(row.get(key))
                if x is not None and y is not None:
                    xy.append((x, y))
            xy.sort()
            ys_all.extend(y for _, y in xy)
            if xy:
                xs, ys = [x for x, _ in xy], [y for _, y in xy]
                ax.plot(xs, ys, marker="o", color=cmap(i % 10), label=name)
        if not ys_all:
            ax.text(0.5, 0.5, "not available", transform=ax.transAxes, ha="center", va="center")
        if _log_if_wide(xs_all):
            ax.set_xscale("log")
        if _log_if_wide(ys_all):
            ax.set_yscale("log")
        ax.set_ylabel(y_label)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.supxlabel(textwrap.fill(x_label, 100), fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)
