"""harness.steady_report: the steady state beside the whole run in a run's report, labelled,
or why there was no steady window."""

from __future__ import annotations

from summary_builders import energy_block, no_steady_block, steady_block, summary

from harness.report import build_sections, render_markdown
from harness.steady_report import steady_section

S = 1_000_000_000
TITLE = "Steady state beside the whole run"


def _measured(**steady: object) -> dict[str, object]:
    """An energy block with GPU power over a 30 s window and a steady window 5..25 s."""
    return energy_block(
        window_ns=[0, 30 * S],
        gpu_energy_j=9000.0,
        gpu_source="nvml-counter",
        avg_power_w=300.0,
        j_per_output_token=3.0,
        steady=steady_block(
            gpu_energy_j=8000.0,
            gpu_source="nvml-counter",
            avg_power_w=400.0,
            j_per_output_token=4.0,
            **steady,
        ),
    )


def test_steady_and_whole_run_figures_stand_side_by_side() -> None:
    run = summary(energy=_measured(), output_tokens=3000, output_throughput_tok_s=100.0)
    sec = steady_section(run)
    assert sec is not None and sec.title == TITLE
    assert sec.headers == ("figure", "whole run", "steady state")
    rows = {row[0]: row[1:] for row in sec.rows}
    assert rows["Window (s)"] == ("30.0", "20.0")
    assert rows["Running requests, mean"] == ("", "10.0")  # not a whole-run figure
    assert rows["Output tokens"] == ("3,000", "2,000")
    assert rows["Output throughput (tok/s)"] == ("100.00", "100.00")
    assert rows["Average power (W)"] == ("300.0", "400.0")
    assert rows["J per output token"] == ("3.0000", "4.0000")
    assert rows["GPU energy (J)"] == ("9,000.0", "8,000.0")
    assert sec.note is not None
    assert sec.note.startswith("steady window: 5.0–25.0 s on the run clock, running requests")
    assert "at or above 0.85 × the run's maximum for at least 20 s" in sec.note
    assert "(at or above 8.5 of 10)" in sec.note
    assert "the server's token counters" in sec.note
    # it follows the Energy section of the report
    titles = [s.title for s in build_sections(run, {})]
    assert titles.index(TITLE) == titles.index("Energy") + 1
    assert f"## {TITLE}" in render_markdown(run, {})


def test_no_steady_window_is_one_line_with_the_reason() -> None:
    why = "the measured window is 5.0 s, shorter than the 20 s a steady window needs"
    sec = steady_section(summary(energy=energy_block(steady=no_steady_block(why))))
    assert sec is not None and sec.rows == []
    assert sec.note == f"no steady window: {why}"


def test_without_gpu_power_the_power_rows_are_left_out_and_said() -> None:
    sec = steady_section(summary(energy=energy_block(steady=steady_block())))
    assert sec is not None
    labels = [row[0] for row in sec.rows]
    assert "Average power (W)" not in labels and "J per output token" not in labels
    assert "Output throughput (tok/s)" in labels
    assert sec.note is not None and sec.note.endswith("; GPU power not measured")


def test_a_summary_without_a_steady_block_has_no_section() -> None:
    assert steady_section(summary()) is None  # no energy block
    assert steady_section(summary(energy=energy_block())) is None  # version 3 or older
