"""The run report's figure captions: what each figure shows, and which panels it leaves out
and why (presentation, kept beside the figures, not in the timeline's analysis)."""

from __future__ import annotations

import harness.timeline
from harness.report_files import timeline_caption
from harness.timeline import Series, Timeline


def test_the_timeline_caption_says_what_is_shown_and_what_is_not_drawn() -> None:
    t = [0.0, 1.0]
    timeline = Timeline(
        utilization_pct=[Series("host CPU (all cores)", t, [5.0, 6.0])],
        activity=[Series("requests in flight (client)", t, [1.0, 0.0])],
        unavailable=["GPU: NVML did not initialise"],
    )
    caption = timeline_caption(timeline)
    assert caption == (
        "Over the run, on one time axis (0 = the first request sent): utilisation, requests "
        "in flight and tool calls running. Not drawn: power: not measured (GPU: NVML did not "
        "initialise)."
    )
    assert timeline_caption(Timeline()).startswith(
        "Over the run, on one time axis (0 = the first request sent): nothing. Not drawn: "
        "power: not measured (no source was readable); utilisation: not measured"
    )


def test_the_timeline_module_holds_no_captions() -> None:
    """Captions are presentation: harness.timeline builds the series and says nothing of how
    a figure words them."""
    assert not hasattr(harness.timeline, "timeline_caption")
    assert not hasattr(harness.timeline, "not_drawn_panels")
