"""The steady state beside the whole run: a report section that sets J per output token,
power and throughput over the steady window (the server's batch near its maximum) beside
the same figures over the whole measured window, which includes ramp-up and drain."""

from __future__ import annotations

from harness.figures import Section, format_value
from harness.summary import Summary

NS = 1e9
HEADERS = ("figure", "whole run", "steady state")

TOKENS_TEXT: dict[str, str] = {
    "server-counter": "the server's token counters (every request it ran)",
    "client-chunks": "the stream chunks the client received (every request sent)",
    "unavailable": "nowhere (not counted)",
}
"""Where the steady window's tokens were counted, in words."""


def steady_section(summary: Summary) -> Section | None:
    """Steady state and whole run side by side, labelled; the reason where the run had no
    steady window; None for a summary without one (no energy block, or version 3 or older)."""
    energy = summary.energy
    steady = energy.steady if energy is not None else None
    if energy is None or steady is None:
        return None
    title = "Steady state beside the whole run"
    rule = (
        f"running requests (server /metrics) at or above {steady.frac:g} × the run's maximum "
        f"for at least {steady.min_s:g} s"
    )
    if steady.window_ns is None:
        return Section(title, HEADERS, note=f"no steady window: {steady.reason}")
    sec = Section(title, HEADERS)
    whole_s = (energy.window_ns[1] - energy.window_ns[0]) / NS
    gpu = energy.gpu_source != "unavailable" or steady.gpu_source != "unavailable"
    pairs: list[tuple[str, float | int | None, float | int | None, int]] = [
        ("Window (s)", whole_s, steady.duration_s, 1),
        ("Output tokens", summary.output_tokens, steady.output_tokens, 0),
        (
            "Output throughput (tok/s)",
            summary.output_throughput_tok_s,
            steady.output_throughput_tok_s,
            2,
        ),
        (
            "Total throughput (tok/s)",
            summary.total_throughput_tok_s,
            steady.total_throughput_tok_s,
            2,
        ),
    ]
    if gpu:
        pairs += [
            ("GPU energy (J)", energy.gpu_energy_j, steady.gpu_energy_j, 1),
            ("Average power (W)", energy.avg_power_w, steady.avg_power_w, 1),
            ("J per output token", energy.j_per_output_token, steady.j_per_output_token, 4),
        ]
    sec.rows.extend(
        (label, format_value(whole, digits), format_value(part, digits))
        for label, whole, part, digits in pairs
    )
    # the window's own figure: no whole-run counterpart
    sec.rows.insert(
        1, ("Running requests, mean", "", format_value(steady.mean_running_requests, 1))
    )
    start_s, end_s = (t / NS for t in steady.window_ns)
    sec.note = (
        f"steady window: {start_s:.1f}–{end_s:.1f} s on the run clock, {rule} (at or above "
        f"{format_value(steady.threshold_running_requests, 1)} of "
        f"{format_value(steady.max_running_requests, 0)}); its tokens from "
        f"{TOKENS_TEXT[steady.tokens_source]}. Whole run: first send to last completion, "
        "tokens of the completed measured requests" + ("" if gpu else "; GPU power not measured")
    )
    return sec
