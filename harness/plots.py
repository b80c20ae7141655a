"""Figures for reports (matplotlib, the only importer of it; headless Agg backend)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

from harness.compare import number
from harness.summary import LatencySplit
from harness.timeline import Timeline
from harness.workload.slo import Slo

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter


@dataclass(frozen=True, slots=True)
class NotDrawn:
    """A chart left out because it would show nothing measured: `reason` says why, and the
    report prints it where the chart would be."""

    reason: str

    def __str__(self) -> str:
        return f"not drawn: {self.reason}"


Chart = bytes | NotDrawn
"""A chart as PNG bytes, or why it was not drawn."""

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


def _wrapped(name: str, width: int = 16) -> str:
    """A name on several lines of at most `width` characters: wrapped, never cut short."""
    return "\n".join(textwrap.wrap(name, width, break_long_words=True)) or name


def latency_breakdown_figure(runs: Sequence[tuple[str, Mapping[str, float]]], title: str) -> Any:
    """Stacked bars, one per workload, of seconds per session by component (a matplotlib
    figure): each total labelled above its bar, inside the axes and clear of the title."""
    components: list[str] = []
    for _, parts in runs:
        components.extend(c for c in parts if c not in components)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(runs) + 3), 4.5))
    names = [_wrapped(name) for name, _ in runs]
    bottoms = [0.0] * len(runs)
    cmap = plt.get_cmap("tab10")
    for i, comp in enumerate(components):
        values = [parts.get(comp, 0.0) for _, parts in runs]
        ax.bar(names, values, bottom=bottoms, label=comp, color=cmap(i % 10))
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    for x, total in enumerate(bottoms):
        ax.annotate(
            f"{total:.2f} s",
            (x, total),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    top = max(bottoms, default=0.0)
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)  # room for the totals under the title
    ax.set_ylabel("seconds per session")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def latency_breakdown_chart(runs: Sequence[tuple[str, Mapping[str, float]]], title: str) -> bytes:
    """Stacked bars, one per workload, of seconds per session by component, as PNG bytes."""
    return _png(latency_breakdown_figure(runs, title))


def _legend_above(ax: Any, columns: int) -> None:
    """The axes' legend in one row above them, where it covers no bar."""
    ax.legend(
        fontsize=8,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=columns,
        frameon=False,
        borderaxespad=0.2,
    )


def _png(fig: Any) -> bytes:
    """A figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    # "tight": legends placed outside the axes (so they cover no bar) stay in the picture.
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buf.getvalue()


LATENCY_PANELS: tuple[tuple[str, str, Callable[[Slo], float | None]], ...] = (
    ("ttft_ms_p99", "TTFT p99 (ms)", lambda slo: slo.ttft_ms),
    ("tpot_ms_p99", "TPOT p99 (ms)", lambda slo: slo.tpot_ms),
    ("e2el_ms_p50", "E2EL p50 (ms)", lambda slo: slo.e2el_ms),
)
"""Panels of the throughput-vs-latency chart: (point key, axis label, the SLO's limit)."""


SLO_OFF_SCALE = 3.0
"""An SLO limit more than this many times the panel's highest point is named above the panel
rather than drawn: a line there would flatten every curve to the axis."""


def throughput_latency_figure(
    curves: Sequence[tuple[str, Sequence[Mapping[str, Any]], Slo | None]],
    x_key: str,
    x_label: str,
    title: str,
    marked: Sequence[Mapping[str, Any] | None] = (),
) -> Any:
    """Throughput-vs-latency curves of sweeps (a matplotlib figure): one panel per
    LATENCY_PANELS entry, one line per sweep (name, load points, SLO in ms), its SLO as a
    dashed line, or named above the panel when far above every point. Points missing a
    figure are left out, never drawn at 0. `marked[i]`, where given, is the point of curve i
    drawn as a star (a sweep's capacity point). One legend, outside the panels."""
    fig, axes = plt.subplots(1, len(LATENCY_PANELS), figsize=(5.0 * len(LATENCY_PANELS), 4.2))
    cmap = plt.get_cmap("tab10")
    legend: dict[str, Any] = {}
    for ax, (y_key, y_label, slo_limit) in zip(axes, LATENCY_PANELS, strict=True):
        ys: list[float] = []
        off_scale: list[tuple[str, float, Any]] = []
        for i, (name, points, _) in enumerate(curves):
            color = cmap(i % 10)
            xy = sorted(
                (float(p[x_key]), float(p[y_key]))
                for p in points
                if p.get(x_key) is not None and p.get(y_key) is not None
            )
            ys.extend(y for _, y in xy)
            if xy:
                (line,) = ax.plot(
                    [x for x, _ in xy], [y for _, y in xy], marker="o", color=color, label=name
                )
                legend.setdefault(name, line)
            mark = marked[i] if i < len(marked) else None
            if mark is not None and mark.get(x_key) is not None and mark.get(y_key) is not None:
                ys.append(float(mark[y_key]))
                (star,) = ax.plot(
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
                legend.setdefault(f"{name} capacity", star)
        top = max(ys, default=None)
        drawn_top = top or 0.0
        for i, (name, _, slo) in enumerate(curves):
            limit = slo_limit(slo) if slo is not None else None
            if limit is None:
                continue
            color = cmap(i % 10)
            if top is not None and top > 0 and float(limit) > SLO_OFF_SCALE * top:
                off_scale.append((name, float(limit), color))
                continue
            rule = ax.axhline(
                float(limit), color=color, linestyle="--", linewidth=1, label=f"{name} SLO"
            )
            drawn_top = max(drawn_top, float(limit))
            legend.setdefault(f"{name} SLO", rule)
        # One line per limit: sweeps sharing an SLO are named together, in the first's colour.
        by_limit: dict[float, tuple[list[str], Any]] = {}
        for name, limit, color in off_scale:
            by_limit.setdefault(limit, ([], color))[0].append(name)
        for k, (limit, (names, color)) in enumerate(by_limit.items()):
            shown = f"{limit:,.0f}" if limit >= 100 else f"{limit:g}"
            ax.annotate(
                f"SLO {shown} ms ({', '.join(names)}): far above the points, not drawn",
                (0.01, 0.98 - 0.06 * k),
                xycoords="axes fraction",
                ha="left",
                va="top",
                fontsize=7,
                color=color if len(names) == 1 else "black",
            )
        if by_limit and top is not None:
            ax.set_ylim(0, top * (1.25 + 0.08 * len(by_limit)))
        elif drawn_top > 0:  # latency from 0 (a zoomed axis makes a small change look large),
            ax.set_ylim(0, drawn_top * 1.1)  # with room for the star on the highest point
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    if legend:
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            fontsize=8,
            frameon=False,
        )
    return fig


def throughput_latency_chart(
    curves: Sequence[tuple[str, Sequence[Mapping[str, Any]], Slo | None]],
    x_key: str,
    x_label: str,
    title: str,
    marked: Sequence[Mapping[str, Any] | None] = (),
) -> bytes:
    """throughput_latency_figure as PNG bytes."""
    return _png(throughput_latency_figure(curves, x_key, x_label, title, marked))


def ratio_bars_figure(
    names: Sequence[str], metrics: Sequence[tuple[str, Sequence[float | None]]], title: str
) -> Any:
    """Grouped bars of each run's ratio to the first run, per metric (a matplotlib figure),
    or NotDrawn where no ratio exists. The first run is the line at 1.0; a metric with no
    ratio for any run is left out and named under the chart; a single missing ratio draws
    no bar and is labelled n/a, never shown as 0. Each label sits under its tick."""
    if len(names) < 2:
        return NotDrawn("one run only: there is nothing to compare it with")
    shown = [(label, ratios) for label, ratios in metrics if any(r is not None for r in ratios[1:])]
    if not shown:
        return NotDrawn(
            f"no headline figure is available both for {names[0]} and for another run, "
            "so no ratio exists (see the tables)"
        )
    others = list(names[1:])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(shown) + 3), 4.8))
    cmap = plt.get_cmap("tab10")
    width = 0.8 / len(others)
    for j, name in enumerate(others, start=1):
        xs: list[float] = []
        values: list[float] = []
        for i, (_, ratios) in enumerate(shown):
            x = i + (j - 1 - (len(others) - 1) / 2) * width
            value = ratios[j]
            if value is None:
                ax.annotate(
                    "n/a",
                    (x, 0.0),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
                continue
            xs.append(x)
            values.append(value)
        bars = ax.bar(xs, values, width=width, color=cmap(j % 10), label=name)
        ax.bar_label(bars, labels=[f"{v:.2f}×" for v in values], fontsize=7, padding=2)
    ax.axhline(1.0, color="black", linewidth=0.9, label=f"{names[0]} (= 1)")
    ax.set_xticks(range(len(shown)))
    ax.set_xticklabels(
        [label for label, _ in shown], rotation=30, ha="right", rotation_mode="anchor", fontsize=8
    )
    ax.set_ylim(0, max(1.0, *(r for _, rs in shown for r in rs[1:] if r is not None)) * 1.15)
    ax.set_ylabel(f"ratio to {names[0]}")
    ax.set_title(title, pad=28)
    _legend_above(ax, len(names))
    left_out = [label for label, ratios in metrics if label not in {lb for lb, _ in shown}]
    if left_out:
        fig.text(0.01, 0.01, "n/a for every run, not drawn: " + ", ".join(left_out), fontsize=7)
    fig.tight_layout(rect=(0, 0.04 if left_out else 0, 1, 1))
    return fig


def ratio_bars_chart(
    names: Sequence[str], metrics: Sequence[tuple[str, Sequence[float | None]]], title: str
) -> Chart:
    """ratio_bars_figure as PNG bytes, or NotDrawn where no ratio exists."""
    fig = ratio_bars_figure(names, metrics, title)
    return fig if isinstance(fig, NotDrawn) else _png(fig)


def not_drawn_panels(timeline: Timeline) -> list[str]:
    """The timeline's panels left out because nothing was measured, each with why:
    "power: not measured (GPU: ...; CPU energy (RAPL): ...)"."""
    out: list[str] = []
    if not timeline.power_w:
        reasons = "; ".join(timeline.unavailable) or "no source was readable"
        out.append(f"power: not measured ({reasons})")
    if not timeline.utilization_pct:
        out.append("utilisation: not measured (no GPU or host CPU samples)")
    return out


UTILISATION_LIMITS_PCT = (0.0, 100.0)
"""The utilisation panel's axis: the whole percentage scale, never a zoom on rounding noise."""


def timeline_figure(timeline: Timeline, title: str) -> Any:
    """Power, utilisation and request/tool activity over the run, one panel each on a shared
    time axis (a matplotlib figure), or NotDrawn where nothing was sampled. A panel with
    nothing measured is not drawn (not_drawn_panels says why); legends sit right of the axes,
    clear of the lines."""
    panels = [
        (ylabel, series)
        for ylabel, series in (
            ("power (W)", timeline.power_w),
            ("utilisation (%)", timeline.utilization_pct),
            ("in flight / running", timeline.activity),
        )
        if series
    ]
    if not panels:
        return NotDrawn("no power, utilisation or request activity was recorded")
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(9.0, 1.0 + 2.2 * len(panels)), sharex=True, squeeze=False
    )
    column = [ax for (ax,) in axes]
    for ax, (ylabel, series) in zip(column, panels, strict=True):
        for line in series:
            ax.step(
                line.t_s, line.values, where="post", label=line.label, linewidth=1.0, clip_on=False
            )
        ax.set_ylabel(ylabel)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        if series is timeline.utilization_pct:
            ax.set_ylim(*UTILISATION_LIMITS_PCT)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        ax.grid(True, alpha=0.3)
    column[-1].set_xlabel("seconds since the first request was sent")
    fig.suptitle(title)
    # Why a panel is missing, wrapped in full (never cut to "[...]").
    lines = [line for m in not_drawn_panels(timeline) for line in textwrap.wrap(m, 150)]
    if lines:
        fig.text(0.01, 0.005, "\n".join(lines), fontsize=7, va="bottom")
    height_in = fig.get_figheight()
    fig.tight_layout(rect=(0, (0.08 + 0.13 * len(lines)) / height_in if lines else 0, 1, 1))
    return fig


def timeline_chart(timeline: Timeline, title: str) -> Chart:
    """timeline_figure as PNG bytes, or NotDrawn where nothing was sampled."""
    fig = timeline_figure(timeline, title)
    return fig if isinstance(fig, NotDrawn) else _png(fig)


def _log_if_wide(values: Sequence[float], span: float = 20.0) -> bool:
    """Whether an axis over `values` reads better on a log scale: all positive, wide range."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= span


_RIGHT_OF: dict[str, Any] = {"xytext": (3, 0), "textcoords": "offset points", "va": "center"}
"""Placement of a bar's label: just right of the point it names."""


def _bar_text(value: float) -> str:
    """A bar's value label: whole numbers with separators, large ones with a suffix."""
    for scale, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M")):
        if abs(value) >= scale:
            return f"{value / scale:,.2f}{suffix}"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.2f}"


def _tick_text(value: float) -> str:
    """An axis tick: as few digits as it needs, large ones with a suffix (200 M, 1.5 G)."""
    for scale, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:g}"


def empty_fleet_panels(
    profiles: Sequence[tuple[str, Mapping[str, Any]]],
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]],
) -> list[str]:
    """The axis labels of `panels` for which no profile has a figure: such a panel is left
    out of the chart (and named under it)."""
    return [
        axis_label
        for axis_label, bars in panels
        if all(number(figures.get(key)) is None for key, _ in bars for _, figures in profiles)
    ]


def fleet_profiles_figure(
    profiles: Sequence[tuple[str, Mapping[str, Any]]],
    title: str,
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]],
) -> Any:
    """Horizontal bars per profile of a fleet study (a matplotlib figure), or NotDrawn where
    no profile has a figure for any panel: one panel per `panels` entry with a figure, one
    bar group per (name, figures). A panel no profile has is left out and named under the
    chart; a single missing figure draws no bar and is labelled n/a, never shown as 0; a
    panel's legend sits above it, clear of the bars; names are wrapped, never cut."""
    empty = empty_fleet_panels(profiles, panels)
    shown = [panel for panel in panels if panel[0] not in empty]
    if not shown:
        labels = " or ".join(axis_label for axis_label, _ in panels)
        return NotDrawn(f"no profile has a figure for {labels} (see Figures not available)")
    names = [_wrapped(name, 30) for name, _ in profiles]
    fig, axes = plt.subplots(
        1,
        len(shown),
        figsize=(6.0 * len(shown), max(3.0, 0.6 * len(names) + 2.0)),
        sharey=True,
        squeeze=False,
    )
    rows = list(range(len(names)))
    cmap = plt.get_cmap("tab10")
    colour = 0
    for ax, (axis_label, bars) in zip(axes[0], shown, strict=True):
        height = 0.8 / len(bars)
        for j, (key, label) in enumerate(bars):
            offset = (j - (len(bars) - 1) / 2) * height
            ys: list[float] = []
            values: list[float] = []
            for y, (_, figures) in zip(rows, profiles, strict=True):
                value = number(figures.get(key))
                if value is None:
                    ax.annotate("n/a", (0, y + offset), fontsize=7, **_RIGHT_OF)
                    continue
                ys.append(y + offset)
                values.append(value)
            drawn = ax.barh(ys, values, height=height, color=cmap(colour % 10), label=label)
            ax.bar_label(drawn, labels=[_bar_text(v) for v in values], fontsize=7, padding=3)
            colour += 1
        ax.set_xlabel(axis_label)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick_text(v)))
        ax.locator_params(axis="x", nbins=5)
        ax.tick_params(axis="x", labelsize=8)
        if len(bars) > 1:
            _legend_above(ax, len(bars))
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.18)
    first = axes[0][0]
    first.set_yticks(rows)
    first.set_yticklabels(names, fontsize=8)
    first.set_ylim(len(names) - 0.5, -0.5)  # first profile on top, rows without bars kept
    fig.suptitle(title)
    if empty:
        fig.text(0.01, 0.01, "no profile has it, not drawn: " + ", ".join(empty), fontsize=7)
    fig.tight_layout(rect=(0, 0.05 if empty else 0, 1, 1))
    return fig


def fleet_profiles_chart(
    profiles: Sequence[tuple[str, Mapping[str, Any]]],
    title: str,
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]],
) -> Chart:
    """fleet_profiles_figure as PNG bytes, or NotDrawn where no profile has a figure."""
    fig = fleet_profiles_figure(profiles, title, panels)
    return fig if isinstance(fig, NotDrawn) else _png(fig)


FLEET_SWEEP_PANELS: tuple[tuple[str, str], ...] = (
    ("gpus", "GPUs"),
    ("facility_power_avg_mw", "facility power, average (MW)"),
)
"""Panels of the fleet sweep chart: (row key, axis label)."""


def _sweep_points(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """(swept value, figure) of the rows that have both, in order of the value."""
    xy = []
    for row in rows:
        x, y = number(row.get("value")), number(row.get(key))
        if x is not None and y is not None:
            xy.append((x, y))
    return sorted(xy)


def fleet_sweep_figure(
    curves: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], x_label: str, title: str
) -> Any:
    """Cards and facility MW against a scenario's swept parameter (a matplotlib figure), or
    NotDrawn where no row has either figure: one panel per FLEET_SWEEP_PANELS entry some row
    has (one no row has is left out and named under the chart), one line per (profile name,
    sweep rows with `value`), one legend for the panels right of them (it covers no line).
    Rows missing a figure are left out, never drawn at 0; wide ranges get log axes."""
    shown = [
        (key, y_label)
        for key, y_label in FLEET_SWEEP_PANELS
        if any(_sweep_points(rows, key) for _, rows in curves)
    ]
    if not shown:
        labels = " or ".join(label for _, label in FLEET_SWEEP_PANELS)
        return NotDrawn(f"no profile has a figure for {labels} at any swept value")
    empty = [label for key, label in FLEET_SWEEP_PANELS if (key, label) not in shown]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.5), squeeze=False)
    cmap = plt.get_cmap("tab10")
    xs_all = [v for _, rows in curves for r in rows if (v := number(r.get("value"))) is not None]
    legend: dict[str, Any] = {}
    for ax, (key, y_label) in zip(axes[0], shown, strict=True):
        ys_all: list[float] = []
        for i, (name, rows) in enumerate(curves):
            xy = _sweep_points(rows, key)
            ys_all.extend(y for _, y in xy)
            if xy:
                xs, ys = [x for x, _ in xy], [y for _, y in xy]
                (line,) = ax.plot(xs, ys, marker="o", color=cmap(i % 10), label=name)
                legend.setdefault(name, line)
        if _log_if_wide(xs_all):
            ax.set_xscale("log")
        if _log_if_wide(ys_all):
            ax.set_yscale("log")
        ax.set_ylabel(y_label)
        ax.grid(True, which="both", alpha=0.3)
    fig.supxlabel(textwrap.fill(x_label, 100), fontsize=10)
    fig.suptitle(title)
    if empty:
        fig.text(0.01, 0.005, "no profile has it, not drawn: " + ", ".join(empty), fontsize=7)
    fig.tight_layout(rect=(0, 0.04 if empty else 0, 1, 1))
    fig.legend(
        list(legend.values()),
        [_wrapped(n, 34) for n in legend],
        fontsize=8,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )
    return fig


def fleet_sweep_chart(
    curves: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], x_label: str, title: str
) -> Chart:
    """fleet_sweep_figure as PNG bytes, or NotDrawn where no row has a figure."""
    fig = fleet_sweep_figure(curves, x_label, title)
    return fig if isinstance(fig, NotDrawn) else _png(fig)
