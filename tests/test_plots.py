"""The report figures: a chart with nothing measured is not drawn and says why, panels
without data are left out, axes keep their whole scale, legends and labels cover no bar and
no title, and each tick label sits under its tick."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pytest

from harness.fleet.report import DEMAND_CHART_PANELS, INVERSE_CHART_PANELS
from harness.plots import (
    UTILISATION_LIMITS_PCT,
    NotDrawn,
    fleet_profiles_figure,
    fleet_sweep_figure,
    latency_breakdown_figure,
    ratio_bars_chart,
    ratio_bars_figure,
    throughput_latency_figure,
    timeline_chart,
    timeline_figure,
)
from harness.timeline import Series, Timeline
from harness.workload.slo import Slo


def _boxes(fig: Any) -> Any:
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _overlap(a: Any, b: Any) -> bool:
    return bool(a.overlaps(b)) and a.width > 0 and b.width > 0


def test_a_ratio_chart_without_any_ratio_is_not_drawn() -> None:
    metrics = [("Output throughput", [None, None]), ("TTFT p99", [None, None])]
    chart = ratio_bars_chart(["gen-b", "gen-a"], metrics, "t")
    assert isinstance(chart, NotDrawn)
    assert str(chart).startswith("not drawn: ") and "gen-b" in chart.reason
    assert isinstance(ratio_bars_chart(["only"], [("x", [1.0])], "t"), NotDrawn)


def test_ratio_chart_leaves_out_metrics_no_run_has_and_labels_sit_under_ticks() -> None:
    metrics = [
        ("tok/s", [1.0, 0.8, 1.1]),
        ("J per token", [None, None, None]),
        ("TTFT p99", [1.0, None, 1.2]),
    ]
    fig = ratio_bars_figure(["a", "b", "c"], metrics, "t")
    assert not isinstance(fig, NotDrawn)
    ax = fig.axes[0]
    labels = ax.get_xticklabels()
    assert [t.get_text() for t in labels] == ["tok/s", "TTFT p99"]
    assert all(t.get_rotation_mode() == "anchor" for t in labels)
    assert any("J per token" in t.get_text() for t in fig.texts)  # named under the chart
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 1  # b's TTFT: no bar, not 0
    renderer = _boxes(fig)
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(_overlap(legend, bar.get_window_extent(renderer)) for bar in ax.patches)
    plt.close(fig)


def _timeline(power: bool) -> Timeline:
    t = [0.0, 1.0, 2.0]
    return Timeline(
        power_w=[Series("GPU 0", t, [100.0, 200.0, 150.0])] if power else [],
        utilization_pct=[Series("host CPU (all cores)", t, [97.0, 99.0, 98.0])],
        activity=[Series("requests in flight (client)", t, [1.0, 2.0, 0.0])],
        unavailable=[]
        if power
        else [
            "GPU: NVML did not initialise: NVMLError_LibraryNotFound: NVML Shared Library Not "
            "Found (libnvidia-ml.so not found (no NVIDIA driver on this host))",
            "CPU energy (RAPL): /sys/class/powercap does not exist (no powercap/RAPL on this host)",
        ],
    )


def test_timeline_leaves_out_an_unmeasured_power_panel_and_keeps_0_to_100_percent() -> None:
    fig = timeline_figure(_timeline(power=False), "run")
    assert not isinstance(fig, NotDrawn)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["utilisation (%)", "in flight / running"]
    assert fig.axes[0].get_ylim() == UTILISATION_LIMITS_PCT == (0.0, 100.0)
    assert any("power: not measured" in t.get_text() for t in fig.texts)
    renderer = _boxes(fig)
    note = next(t for t in fig.texts if "not measured" in t.get_text())
    assert "[...]" not in note.get_text()  # wrapped in full, never cut
    assert (
        note.get_window_extent(renderer).y1
        < fig.axes[-1].xaxis.label.get_window_extent(renderer).y0
    )  # under the time axis' label, not over it
    renderer = _boxes(fig)
    for ax in fig.axes:  # legends right of the axes, over no line
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.x0 >= ax.get_window_extent(renderer).x1
    plt.close(fig)
    drawn = timeline_figure(_timeline(power=True), "run")
    assert not isinstance(drawn, NotDrawn)
    assert drawn.axes[0].get_ylabel() == "power (W)"
    plt.close(drawn)


def test_a_timeline_with_nothing_sampled_is_not_drawn() -> None:
    chart = timeline_chart(Timeline(unavailable=["GPU: none"]), "run")
    assert isinstance(chart, NotDrawn) and "recorded" in chart.reason


def test_breakdown_totals_stay_inside_the_axes_clear_of_the_title() -> None:
    runs = [
        ("agent", {"LLM": 2.0, "tools": 0.31}),
        ("azure2023_AzureLLMInferenceTrace", {"LLM": 1.0}),
    ]
    fig = latency_breakdown_figure(runs, "Latency breakdown per workload")
    ax = fig.axes[0]
    renderer = _boxes(fig)
    title = ax.title.get_window_extent(renderer)
    frame = ax.get_window_extent(renderer)
    totals = [t for t in ax.texts if t.get_text().endswith(" s")]
    assert [t.get_text() for t in totals] == ["2.31 s", "1.00 s"]
    for total in totals:
        box = total.get_window_extent(renderer)
        assert box.y1 <= frame.y1 and not _overlap(box, title)
    # a long name is wrapped onto lines, never cut
    tick = ax.get_xticklabels()[1].get_text()
    assert tick.replace("\n", "") == "azure2023_AzureLLMInferenceTrace" and "\n" in tick
    plt.close(fig)


def test_fleet_legends_cover_no_bar() -> None:
    profiles = [
        (
            f"profile-{i}",
            {
                "gpus": 1000.0 * i,
                "facility_power_avg_mw": 10.0 * i,
                "facility_power_peak_mw": 12.0 * i,
            },
        )
        for i in range(1, 7)
    ]
    fig = fleet_profiles_figure(profiles, "t", DEMAND_CHART_PANELS)
    assert not isinstance(fig, NotDrawn)
    renderer = _boxes(fig)
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        assert not any(_overlap(box, bar.get_window_extent(renderer)) for bar in ax.patches)
    plt.close(fig)
    curves = [
        (
            n,
            [
                {"value": v, "gpus": f["gpus"] * v, "facility_power_avg_mw": v}
                for v in (1.0, 10.0, 100.0)
            ],
        )
        for n, f in profiles
    ]
    sweep = fleet_sweep_figure(curves, "multiplier", "t")
    assert not isinstance(sweep, NotDrawn)
    renderer = _boxes(sweep)
    legend = sweep.legends[0].get_window_extent(renderer)
    assert all(not _overlap(legend, ax.get_window_extent(renderer)) for ax in sweep.axes)
    plt.close(sweep)


def test_a_power_budget_study_charts_its_answer_not_its_input() -> None:
    """The campus chart: sessions per day served and the GPUs the budget runs, not the
    facility MW every profile shares."""
    profiles = [
        (
            "h200",
            {
                "inverse.sessions_per_day": 3.4e8,
                "inverse.gpus": 653_592.0,
                "facility_power_peak_mw": 1000.0,
            },
        ),
        ("cpu (CPU hosts)", {"inverse.sessions_per_day": None, "inverse.gpus": None}),
    ]
    fig = fleet_profiles_figure(profiles, "campus", INVERSE_CHART_PANELS)
    assert not isinstance(fig, NotDrawn)
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "sessions per day served",
        "GPUs the power budget runs",
    ]
    widths = [bar.get_width() for bar in fig.axes[0].patches]
    assert widths == [pytest.approx(3.4e8)]
    assert sum(t.get_text() == "n/a" for t in fig.axes[0].texts) == 1
    plt.close(fig)


def test_sweep_curves_name_a_far_slo_above_the_panel_and_keep_one_legend_outside() -> None:
    """A 60 s TTFT limit over points near 100 ms is not drawn (it would flatten them to the
    axis) but named above the panel; a near limit is drawn; the star marks the capacity point;
    one legend for the figure, none inside a panel."""
    points = [
        {"x": 1000.0, "ttft_ms_p99": 90.0, "tpot_ms_p99": 20.0, "e2el_ms_p50": 300.0},
        {"x": 2000.0, "ttft_ms_p99": 140.0, "tpot_ms_p99": 30.0, "e2el_ms_p50": 400.0},
    ]
    slo = Slo(ttft_ms=60_000.0, tpot_ms=40.0)
    fig = throughput_latency_figure([("gen-a", points, slo)], "x", "tok/s", "t", [points[0]])
    ttft, tpot, _ = fig.axes
    assert ttft.get_ylim()[1] < 1000  # the points keep the panel's scale
    assert [t.get_text() for t in ttft.texts] == [
        "SLO 60,000 ms (gen-a): far above the points, not drawn"
    ]
    assert not [ln for ln in ttft.get_lines() if list(ln.get_ydata()) == [60_000.0, 60_000.0]]
    assert [ln for ln in tpot.get_lines() if list(ln.get_ydata()) == [40.0, 40.0]]
    assert any(ln.get_marker() == "*" for ln in ttft.get_lines())
    assert all(ax.get_legend() is None for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["gen-a", "gen-a capacity", "gen-a SLO"]
    plt.close(fig)


def test_fleet_panels_no_profile_has_are_left_out_and_named() -> None:
    """Profiles with GPUs but no power (CPU-measured ones): one panel, not a second one that
    says "not available"; the panel left out is named under the chart. No figure at all:
    no chart, a reason."""
    profiles = [("cpu (CPU hosts)", {"gpus": 40.0, "facility_power_avg_mw": None})]
    fig = fleet_profiles_figure(profiles, "t", DEMAND_CHART_PANELS)
    assert not isinstance(fig, NotDrawn)
    assert [ax.get_xlabel() for ax in fig.axes] == ["GPUs"]
    assert "no profile has it, not drawn: facility power (MW)" in [t.get_text() for t in fig.texts]
    plt.close(fig)
    nothing = fleet_profiles_figure([("cpu", {"gpus": None})], "t", DEMAND_CHART_PANELS)
    assert isinstance(nothing, NotDrawn)
    assert nothing.reason.startswith("no profile has a figure for GPUs or facility power (MW)")
    curves = [("cpu", [{"value": 1.0, "gpus": 4.0}, {"value": 2.0, "gpus": 8.0}])]
    sweep = fleet_sweep_figure(curves, "x", "t")
    assert not isinstance(sweep, NotDrawn)
    assert [ax.get_ylabel() for ax in sweep.axes] == ["GPUs"]
    assert any("facility power, average (MW)" in t.get_text() for t in sweep.texts)
    plt.close(sweep)
    assert isinstance(fleet_sweep_figure([("cpu", [{"value": 1.0}])], "x", "t"), NotDrawn)


def test_the_fleet_chart_takes_its_panels_from_its_caller() -> None:
    """The per-profile chart's panels are defined once, by the fleet report that consumes
    them: plots keeps no copy and no default."""
    import inspect

    import harness.plots

    assert not hasattr(harness.plots, "FLEET_PANELS")
    assert not hasattr(harness.plots, "FleetPanel")
    for func in (harness.plots.fleet_profiles_figure, harness.plots.fleet_profiles_chart):
        panels = inspect.signature(func).parameters["panels"]
        assert panels.default is inspect.Parameter.empty


def test_sweep_curves_start_at_0_ms_and_name_a_shared_far_slo_once() -> None:
    """Every latency axis starts at 0 (121 ms against 89 ms must not look tenfold); two
    sweeps with the same far SLO get one line naming both; ticks have separators."""
    a = [{"x": 11_000.0, "ttft_ms_p99": 12.0, "e2el_ms_p50": 112.0},
         {"x": 18_000.0, "ttft_ms_p99": 9.6, "e2el_ms_p50": 121.0}]  # fmt: skip
    b = [{"x": 14_000.0, "ttft_ms_p99": 6.9, "e2el_ms_p50": 89.0},
         {"x": 24_000.0, "ttft_ms_p99": 6.6, "e2el_ms_p50": 88.8}]  # fmt: skip
    slo = Slo(ttft_ms=5000.0)
    fig = throughput_latency_figure([("a", a, slo), ("b", b, slo)], "x", "tok/s", "t")
    ttft, _, e2el = fig.axes
    assert e2el.get_ylim()[0] == 0.0 and ttft.get_ylim()[0] == 0.0
    assert e2el.get_ylim()[1] >= 1.05 * 121.0  # the highest point (a star) is not cut
    assert [t.get_text() for t in ttft.texts] == [
        "SLO 5,000 ms (a, b): far above the points, not drawn"
    ]
    fig.canvas.draw()
    ticks = [t.get_text() for t in e2el.get_xticklabels() if t.get_text()]
    assert "20,000" in ticks
    plt.close(fig)
