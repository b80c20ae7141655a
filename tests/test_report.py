"""Unit tests for harness.report: Markdown and console rendering, report.md in a run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console
from summary_builders import run_block, summary

from harness.analysis import percentile_stats, summarize_requests
from harness.errors import ResultsError
from harness.figures import MISSING
from harness.records import RequestRecord, record_to_row
from harness.report import build_sections, render_console, render_markdown, run_notes, write_report
from harness.results import RunWriter
from harness.summary import Summary, new_summary
from harness.workload.slo import Slo

MANIFEST: dict[str, Any] = {
    "run_name": "chat-c32",
    "model": "tiny-llama",
    "server": {"base_url": "http://127.0.0.1:8000", "version": "0.32.0+cpu"},
}


def _summary(**extra: Any) -> Summary:
    """A summary with round numbers."""
    return summary(
        **{
            "requests_total": 4,
            "requests_completed": 3,
            "requests_failed": 1,
            "requests_warmup_excluded": 0,
            "duration_s": 0.05,
            "input_tokens": 45,
            "output_tokens": 8,
            "request_throughput_rps": 60.0,
            "output_throughput_tok_s": 160.0,
            "total_throughput_tok_s": 1060.0,
            "max_concurrency_observed": 4,
            "ttft_ms": percentile_stats([10.0, 20.0, 30.0]),
            "tpot_ms": percentile_stats([10.0, 5.0]),
            "itl_ms": percentile_stats([]),
            "e2el_ms": percentile_stats([40.0, 30.0, 30.0]),
            "errors": {"timeout | read": 1},
            **extra,
        }
    )


def test_markdown_has_run_throughput_and_latency_lines() -> None:
    md = render_markdown(_summary(), MANIFEST)
    lines = md.splitlines()
    assert lines[0] == "# Benchmark report: chat-c32"
    assert "| Model | tiny-llama |" in lines
    assert "| Server | http://127.0.0.1:8000 0.32.0+cpu |" in lines
    assert "| Requests completed | 3 |" in lines
    assert "| Duration (s) | 0.050 |" in lines
    assert "| Output throughput (tok/s) | 160.00 |" in lines
    assert "| Total throughput (tok/s) | 1,060.00 |" in lines
    # A summary that names no percentiles (schema 1) shows its p50, p90 and p99.
    assert "| metric | mean | min | p50 | p90 | p99 | max | std | count |" in lines
    assert "| TTFT | 20.00 | 10.00 | 20.00 | 28.00 | 29.80 | 30.00 | 8.16 | 3 |" in lines
    assert "| TPOT | 7.50 | 5.00 | 7.50 | 9.50 | 9.95 | 10.00 | 2.50 | 2 |" in lines
    # No data is shown as missing, never as 0.
    assert f"| ITL | {' | '.join([MISSING] * 7)} | 0 |" in lines
    # Error text is escaped so the pipe does not split the cell.
    assert "| timeout \\| read | 1 |" in lines
    assert "## Goodput" not in md


def test_markdown_goodput_section_only_with_slo() -> None:
    md = render_markdown(
        _summary(
            slo={"ttft_ms": 25.0, "tpot_ms": 6.0},
            requests_meeting_slo=1,
            goodput_rps=20.0,
            slo_attainment=0.25,
        ),
        MANIFEST,
    )
    lines = md.splitlines()
    assert "## Goodput" in lines
    assert "| SLO | TTFT <= 25.00 ms, TPOT <= 6.00 ms |" in lines
    assert "| Goodput (req/s) | 20.000 |" in lines
    assert "| SLO attainment | 25.0 % |" in lines


def test_markdown_with_sparse_manifest_and_notes() -> None:
    md = render_markdown(summary(duration_s=None), {}, notes=["recovered"])
    lines = md.splitlines()
    assert lines[0] == "# Benchmark report"
    assert "- recovered" in lines
    assert f"| Model | {MISSING} |" in lines
    assert f"| Duration (s) | {MISSING} |" in lines
    assert "## Errors" not in md


def test_manifest_shaped_like_the_cli_writes_it() -> None:
    manifest = {
        "anchor": {"unix_ns": 1, "iso": "2025-01-01T00:00:00+00:00"},
        "workload": {"name": "chat-mix", "sessions": 10},
        "server": {"base_url": "http://h:8000", "model": "m-7b", "version": "0.8"},
        "status": "finished",
        "run": {"not": "a name"},
    }
    lines = render_markdown(_summary(), manifest).splitlines()
    assert lines[0] == "# Benchmark report"  # a dict under "run" is not taken for a name
    assert "| Model | m-7b |" in lines
    assert "| Workload | chat-mix |" in lines
    assert "| Started | 2025-01-01T00:00:00+00:00 |" in lines
    assert "| Status | finished |" in lines
    assert "| Server | http://h:8000 0.8 |" in lines


def test_console_output() -> None:
    console = Console(record=True, width=160, color_system=None)
    render_console(_summary(slo={"e2el_ms": 35.0}, goodput_rps=40.0), MANIFEST, console)
    text = console.export_text()
    assert "chat-c32" in text
    assert "tiny-llama" in text
    assert "Output throughput (tok/s)" in text
    assert "Goodput (req/s)" in text
    assert "40.000" in text
    ttft_line = next(line for line in text.splitlines() if "TTFT" in line)
    for figure in ("20.00", "28.00", "29.80", "8.16"):
        assert figure in ttft_line


def _run_and_server() -> dict[str, Any]:
    """The blocks a run adds to the request figures."""
    return {"run": run_block(), "server_metrics": {"available": False, "reason": "test"}}


def _record(i: int) -> RequestRecord:
    """A completed request: TTFT 10 ms, E2EL 30 ms, 3 output tokens."""
    base = 100_000_000 * i
    ms = 1_000_000
    return RequestRecord(
        request_id=f"r{i}",
        session_id="s",
        step_index=i,
        api="chat",
        prompt_tokens_expected=10,
        output_tokens_expected=3,
        scheduled_ns=base,
        sent_ns=base,
        first_token_ns=base + 10 * ms,
        last_token_ns=base + 30 * ms,
        done_ns=base + 30 * ms,
        chunk_ns=[base + 10 * ms, base + 20 * ms, base + 30 * ms],
        chunk_tokens=[1, 1, 1],
        prompt_tokens=10,
        output_tokens=3,
        http_status=200,
    )


def test_write_report_for_a_finished_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "finished"
    records = [_record(i) for i in range(3)]
    writer = RunWriter(run_dir)
    writer.write_manifest({"model": "tiny-llama"})
    writer.append(records)
    figures = summarize_requests(pd.DataFrame([record_to_row(r) for r in records]), Slo(ttft_ms=5))
    writer.finalize(new_summary({**figures, **_run_and_server()}))
    path = write_report(run_dir)
    assert path == run_dir / "report.md"
    lines = path.read_text().splitlines()
    assert lines[0] == "# Benchmark report: finished"  # run name falls back to the dir name
    assert "| metric | mean | min | p50 | p90 | p95 | p99 | max | std | count |" in lines
    assert "| TTFT | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 0.00 | 3 |" in lines
    assert "| Requests meeting SLO | 0 |" in lines
    assert not any("did not finish" in line for line in lines)


def test_write_report_for_a_killed_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    writer = RunWriter(run_dir)
    writer.write_manifest({"run_name": "killed-run"})
    writer.append([_record(0), _record(1)])
    path = write_report(run_dir)  # no summary.json: computed from the journal
    text = path.read_text()
    assert "# Benchmark report: killed-run" in text
    assert "the run did not finish" in text
    assert "recovered from its journals" in text
    assert "| Requests completed | 2 |" in text
    assert "| E2EL | 30.00 | 30.00 | 30.00 | 30.00 | 30.00 | 30.00 | 30.00 | 0.00 | 2 |" in text
    writer.close()


def test_write_report_without_manifest_fails(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(ResultsError, match="manifest"):
        write_report(tmp_path / "x")


def test_run_accounting_and_host_are_reported() -> None:
    """The run block of summary.json and the host/GPU inventory appear in the report."""
    from harness.report import render_markdown

    run = run_block(requests_planned=5, requests_sent=3, aborted_reason="server unreachable")
    manifest = {
        "host": {"cpu_model": "Test CPU", "cpu_logical_cores": 2},
        "gpu": {"available": False, "reason": "NVML did not initialise"},
        "server": {"server_version": "0.32.0"},
    }
    text = render_markdown(summary(run=run), manifest)
    assert "| Requests planned | 5 |" in text
    assert "| Stopped early because | server unreachable |" in text
    assert "Test CPU, 2 cores" in text
    assert "unavailable (NVML did not initialise)" in text
    assert "| Server version | 0.32.0 |" in text


def test_lookup_takes_the_first_present_dotted_path() -> None:
    from harness.figures import lookup

    data = {"server": {"model": "m", "url": None}, "list": [1]}
    assert lookup(data, "server.model") == "m"
    assert lookup(data, "server.url", "server.model") == "m"  # None is skipped
    assert lookup(data, "list.0", "missing", "server.model.deeper") is None
    assert lookup(None, "server") is None


def test_share_and_slo_text() -> None:
    from harness.figures import format_share, slo_text

    assert format_share(0.4567) == "45.7 %"
    assert format_share(None) == MISSING
    slo = Slo(ttft_ms=25.0, e2el_ms=900)
    assert slo_text(slo) == "TTFT <= 25.00 ms, E2EL <= 900.00 ms"
    assert slo_text(slo, number="{:g}".format, at_most="≤") == "TTFT ≤ 25 ms, E2EL ≤ 900 ms"
    assert slo_text(None) == "none set"
    assert slo_text(Slo(), none="none") == "none"


def test_headline_notes_then_figures_with_captions_come_first() -> None:
    from harness.figures import Section
    from harness.report import sections_markdown

    sections = [Section("T", ("a",), [("1",)])]
    figures = [("x.png", "X [1]"), ("y.png", "Y")]
    text = sections_markdown("Title", sections, ["a note"], figures, [("TTFT", "3 ms")])
    assert text.splitlines()[:12] == [
        "# Title",
        "",
        "**TTFT** 3 ms",
        "",
        "- a note",
        "",
        "![X (1)](x.png)",
        "",
        "*X [1]*",
        "",
        "![Y](y.png)",
        "",
    ]
    assert sections_markdown("Title", sections) == sections_markdown("Title", sections, (), ())


def _client(bound: bool | None, reasons: list[str]) -> dict[str, object]:
    worker = {
        "worker": 0,
        "loop_lag_ms": {"count": 100, "p50": 0.2, "p99": 12.5, "max": 30.0},
        "cpu_s": 1.0,
        "wall_s": 2.0,
        "cpu_util": 0.5,
    }
    return {
        "workers": [worker],
        "loop_lag_p99_ms_worst": 12.5,
        "cpu_util_max": 0.5,
        "cpu_s_total": 1.0,
        "limits": {"loop_lag_p99_ms": 5.0, "cpu_util": 0.9},
        "client_bound": bound,
        "client_bound_reasons": reasons,
        "unavailable_reasons": [],
    }


def test_a_client_bound_run_says_so_in_its_notes_and_shows_each_worker() -> None:
    reason = "worker 0's event loop ran 12.5 ms late at p99 (limit 5 ms)"
    s = summary(
        client=_client(True, [reason]),
        workers={"requested": "auto", "used": 1, "reason": "auto: 1 core free"},
    )
    assert f"client bound: {reason}" in run_notes(s)
    sections = {sec.title: sec for sec in build_sections(s, {"run_name": "r"})}
    client = sections["Client (the harness's own load workers)"]
    assert client.rows == [("0", "0.20", "12.50", "30.00", "50")]
    accounting = dict(sections["Run accounting"].rows)
    assert accounting["Load workers"] == "1 (auto: 1 core free)"
    assert accounting["Client bound (the harness may have set the pace)"] == "yes"
    calm = summary(client=_client(False, []))
    assert not any(n.startswith("client bound") for n in run_notes(calm))


def test_a_dead_load_worker_is_a_note() -> None:
    error = "load worker 1 exited with code -9; 2 requests in flight recorded as failed"
    s = summary(run=run_block(worker_errors=[error]))
    assert f"{error}; the other workers went on" in run_notes(s)


def _load(**overrides: Any) -> dict[str, Any]:
    """summary.load of a Poisson run that replaced a trace's timing."""
    return {
        "pattern": "poisson",
        "description": "Poisson arrivals at 5 sessions/s, at most 16 requests in flight",
        "time_scale": None,
        "rate_per_s": 5.0,
        "concurrency": None,
        "max_concurrency": 16,
        "max_requests": 200,
        "duration_s": None,
        "warmup_requests": 0,
        "workers": 2,
        "trace_timing_replaced": True,
        "note": "--rate 5 replaced the trace's own timestamps with Poisson arrivals at 5/s",
        **overrides,
    }


def test_the_load_applied_is_a_section_after_the_run_and_its_note_is_said() -> None:
    s = summary(load=_load())
    sections = build_sections(s, MANIFEST)
    assert [sec.title for sec in sections[:3]] == ["Run", "Load applied", "Throughput"]
    rows = dict(sections[1].rows)
    assert rows["Arrivals"] == "Poisson arrivals at 5 sessions/s, at most 16 requests in flight"
    assert rows["Rate (sessions/s)"] == "5.000"
    assert rows["Max requests in flight"] == "16" and rows["Max requests"] == "200"
    assert rows["Load workers"] == "2" and rows["Trace timing"] == "replaced (see the notes)"
    assert "Time scale (trace gaps ×)" not in rows and "Duration limit (s)" not in rows
    assert s.load is not None and s.load.note in run_notes(s)
    console = Console(record=True, width=160)
    render_console(s, MANIFEST, console)
    assert "Poisson arrivals at 5 sessions/s" in console.export_text()


def test_an_older_summary_has_no_load_section() -> None:
    titles = [sec.title for sec in build_sections(summary(), MANIFEST)]
    assert "Load applied" not in titles


def test_the_latency_table_shows_the_chosen_percentiles_between_min_and_max() -> None:
    figures = summarize_requests(
        pd.DataFrame([record_to_row(_record(i)) for i in range(3)]), percentiles=[75.0, 99.9]
    )
    s = summary(**figures)
    lines = render_markdown(s, MANIFEST).splitlines()
    assert "| metric | mean | min | p75 | p99.9 | max | std | count |" in lines
    assert "| TTFT | 10.00 | 10.00 | 10.00 | 10.00 | 10.00 | 0.00 | 3 |" in lines


def test_implausible_timings_are_notes_of_the_report_and_console() -> None:
    reason = "itl_ms p50 is 0.010 ms, under 0.1 ms: tokens arrive in bursts"
    flag = {"kind": "token_bursts", "figures": ["itl_ms"], "percentiles": ["p50"], "reason": reason}
    s = summary(timing_flags=[flag])
    assert reason in run_notes(s)
    assert f"- {reason}" in render_markdown(s, MANIFEST, run_notes(s)).splitlines()


def test_unmeasured_energy_is_one_line_not_rows_of_na() -> None:
    from summary_builders import energy_block, telemetry_block

    run = summary(energy=energy_block(), telemetry=telemetry_block())
    energy = next(s for s in build_sections(run, {}) if s.title == "Energy")
    assert energy.rows == []  # no row of n/a per figure
    assert energy.note is not None and energy.note.startswith("not measured: GPU (")
    assert "CPU package (" in energy.note
    markdown = render_markdown(run, {})
    assert "## Energy\n\nnot measured: GPU (" in markdown
    assert "GPU energy (J)" not in markdown


def test_run_headline_has_the_figures_a_reader_looks_for_first() -> None:
    from harness.report import run_headline

    labels = [label for label, _ in run_headline(summary())]
    assert labels[:3] == ["Requests", "Output throughput", "TTFT p50 / p99"]


def test_gpu_nodes_counted_and_their_problems_are_said() -> None:
    from summary_builders import energy_block, telemetry_block

    url = "http://node-a:9400/metrics"
    problem = f"{url}: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION of node-a GPU 0 (GPU-a) disappeared"
    dcgm = {
        "urls": [url],
        "every_s": 1.0,
        "available": True,
        "reason": None,
        "gpus": [{"uuid": "GPU-a", "gpu": 0, "host": "node-a", "model_name": "H100", "url": url}],
        "scrapes": 30,
        "scrape_errors": {url: 0},
        "refresh_s": 1.0,
        "problems": [problem],
    }
    note = f"GPUs of the DCGM exporters ({url}): 1 on node-a; this host's NVML GPUs are not counted"
    energy = energy_block(
        gpu_energy_j=500.0,
        gpu_source="dcgm-counter",
        gpu_energy_per_device_j={"GPU-a": 500.0},
        gpu_source_note=note,
    )
    run = summary(energy=energy, telemetry=telemetry_block(dcgm=dcgm))
    assert f"GPU metrics: {problem}" in run_notes(run)
    section = next(s for s in build_sections(run, {}) if s.title == "Energy")
    assert section.rows[:3] == [
        ("GPU energy (J)", "500.0"),
        ("GPU energy source", "dcgm-counter"),
        ("GPUs counted", note),
    ]
    inventory = {"available": True, "gpus": [{"name": "NVIDIA H100", "host": "node-a"}]}
    run_rows = build_sections(run, {"gpu_metrics": inventory})[0].rows
    assert ("Server GPUs (DCGM)", "NVIDIA H100 on node-a") in run_rows


def _attribution(method: str, reason: str | None, server: list[int], other: list[int]) -> Any:
    def gpus(indices: list[int]) -> list[dict[str, Any]]:
        return [{"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA H100"} for i in indices]

    return {
        "method": method,
        "reason": reason,
        "server_gpus": gpus(server),
        "other_gpus": gpus(other),
        "server_pid": 10,
        "server_pids_on_gpus": [11, 12] if server else [],
        "first_seen_ns": {str(i): 0 for i in server},
        "checks": 3,
    }


def test_the_energy_table_names_the_servers_gpus_and_shows_the_others_apart() -> None:
    from summary_builders import energy_block, telemetry_block

    gpu = {"available": True, "reason": None, "devices": 4, "read_errors": {}, "not_supported": []}
    other = {
        "devices": [0, 3],
        "gpu_energy_j": 400.0,
        "gpu_source": "nvml-counter",
        "gpu_energy_per_device_j": {"0": 200.0, "3": 200.0},
        "idle_power_w": None,
        "avg_power_w": 200.0,
        "peak_power_w": 200.0,
    }
    note = "GPUs 1, 2 of the 4 on this host, the server's (by processes); the others are apart"
    energy = energy_block(
        gpu_energy_j=540.0,
        gpu_source="nvml-counter",
        gpu_devices=[1, 2],
        other_gpus=other,
        gpu_source_note=note,
    )
    telemetry = telemetry_block(
        gpu=gpu, gpu_attribution=_attribution("processes", None, [1, 2], [0, 3])
    )
    run = summary(energy=energy, telemetry=telemetry)
    rows = dict(next(s for s in build_sections(run, {}) if s.title == "Energy").rows)
    assert rows["GPUs counted"] == note
    assert rows["Other GPUs on this host (0, 3): energy (J)"] == "400.0"
    assert not any("GPU energy and power cover" in n for n in run_notes(run))


def test_gpus_that_could_not_be_told_are_a_note() -> None:
    from summary_builders import energy_block, telemetry_block

    gpu = {"available": True, "reason": None, "devices": 8, "read_errors": {}, "not_supported": []}
    why = "no server pid"
    telemetry = telemetry_block(gpu=gpu, gpu_attribution=_attribution("unknown", why, [], []))
    run = summary(
        energy=energy_block(gpu_energy_j=1.0, gpu_source="nvml-counter"), telemetry=telemetry
    )
    assert (
        f"GPU energy and power cover all 8 GPUs NVML sees: the server's could not be told ({why})"
        in run_notes(run)
    )
