"""The run report's figure captions: what each figure shows, and which panels it leaves out
and why (presentation, kept beside the figures, not in the timeline's analysis)."""

from __future__ import annotations

import harness.timeline
from harness.report_files import split_caption, timeline_caption
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
        "Over the run, on one time axis (0 = the first request sent): utilisation, activity "
        "(requests in flight (client)). Not drawn: power: not measured (GPU: NVML did not "
        "initialise)."
    )
    assert "tool calls" not in caption  # a run without tools names none
    assert timeline_caption(Timeline()).startswith(
        "Over the run, on one time axis (0 = the first request sent): nothing. Not drawn: "
        "power: not measured (no source was readable); utilisation: not measured"
    )


def test_the_timeline_module_holds_no_captions() -> None:
    """Captions are presentation: harness.timeline builds the series and says nothing of how
    a figure words them."""
    assert not hasattr(harness.timeline, "timeline_caption")
    assert not hasattr(harness.timeline, "not_drawn_panels")


def test_the_split_caption_names_the_parts_drawn() -> None:
    """A chatbot run's split has no tool kind: its caption names none."""
    caption = split_caption(["LLM (inference server)", "queued in the harness", "orchestration"])
    assert caption == (
        "Where a session's time goes: seconds per session in LLM (inference server), queued "
        "in the harness, orchestration"
    )
