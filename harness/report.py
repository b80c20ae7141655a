"""Run reports: a rich console view and a Markdown file built from the summary and manifest.

Both views are rendered from the same list of sections, so they always show the same figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import console_tables
from harness.figures import (
    MISSING,
    FigureRef,
    Section,
    format_share,
    format_value,
    lookup,
    slo_text,
)
from harness.recorded_report import recorded_sections
from harness.replica_report import replica_section
from harness.results import RunReader, write_run_file
from harness.run_summary import read_summary
from harness.steady_report import steady_section
from harness.summary import LatencySplit, Stats, Summary

REPORT_FILE = "report.md"
_RUN_NAME_KEYS: tuple[str, ...] = ("run_name", "run", "name", "run_dir")


def _latency_columns(summary: Summary) -> tuple[str, ...]:
    """The latency table's figure columns: mean, min, the run's percentiles, max, std, count."""
    return ("mean", "min", *summary.percentile_names(), "max", "std", "count")


def _stat_cell(stats: Stats, column: str) -> str:
    """One latency cell: a percentile by name, else the stats block's figure."""
    if column.startswith("p"):
        return format_value(stats.percentile(column))
    return format_value(getattr(stats, column))


def _latency_rows(summary: Summary) -> tuple[tuple[str, Stats], ...]:
    """The latency table's rows: label and stats."""
    return (
        ("TTFT", summary.ttft_ms),
        ("TPOT", summary.tpot_ms),
        ("ITL", summary.itl_ms),
        ("E2EL", summary.e2el_ms),
        ("E2EL from scheduled", summary.e2el_from_scheduled_ms),
        ("Send lag", summary.send_lag_ms),
    )


def _scalar(mapping: Mapping[str, Any], *paths: str) -> Any:
    """Like `lookup`, but skips values that are mappings or lists (not printable in a cell)."""
    for path in paths:
        value = lookup(mapping, path)
        if value is not None and not isinstance(value, Mapping | list | tuple):
            return value
    return None


def _server_text(manifest: Mapping[str, Any]) -> str | None:
    """A one-line description of the server from the manifest, if it has one."""
    server = manifest.get("server")
    if isinstance(server, Mapping):
        replicas = server.get("replicas")
        urls = (
            " + ".join(str(r.get("base_url")) for r in replicas if isinstance(r, Mapping))
            if isinstance(replicas, list) and replicas
            else None
        )
        parts = [
            str(v)
            for v in (
                urls or lookup(server, "base_url", "url", "endpoint"),
                lookup(server, "kind", "engine", "name"),
                lookup(server, "version", "vllm_version"),
            )
            if v is not None
        ]
        return " ".join(parts) or None
    return None if server is None else str(server)


def split_rows(split: LatencySplit) -> tuple[tuple[str, float], ...]:
    """The rows of the latency split, which add up to the total (shares to 100 %)."""
    return (
        ("LLM: request sent → done (inference server)", split.llm_s),
        ("Tools working (host CPU, wall)", split.tool_s),
        ("Waiting for a free tool worker (harness queue)", split.tool_queue_s),
        ("Waiting for a max_concurrency slot (harness queue)", split.slot_queue_s),
        ("Orchestration (prompt building, parsing, event loop)", split.orchestration_s),
    )


def _split_sections(summary: Summary) -> list[Section]:
    """Latency split, tool kinds, sessions, energy and server-side phases, where the run has
    them."""
    out: list[Section] = []
    split = summary.latency_split
    if split is not None:
        sec = Section("Latency split (CPU vs GPU)", ("part", "seconds", "share"))
        total = split.total_s
        for label, value in split_rows(split):
            share = value / total if total else None
            sec.rows.append((label, format_value(value, 3), format_share(share)))
        sec.rows.append(("Tool CPU seconds (user + system)", format_value(split.tool_cpu_s, 3), ""))
        sec.rows.append(
            (
                "Think time (user's or the recording's, not in the split)",
                format_value(split.think_s, 3),
                "",
            )
        )
        if split.subagent_wait_s:
            sec.rows.append(
                (
                    "Parents waiting on their sub-agents (not in the split: the sub-agents' "
                    "own rows hold their work)",
                    format_value(split.subagent_wait_s, 3),
                    "",
                )
            )
        sec.rows.append(("CPU share (tools + orchestration)", "", format_share(split.cpu_share)))
        sec.rows.append(("GPU share (LLM)", "", format_share(split.gpu_share)))
        sec.rows.append(
            ("Queue share (the harness's own queues)", "", format_share(split.queue_share))
        )
        out.append(sec)
        if split.per_tool_kind:
            tk = Section(
                "Tool kinds",
                ("kind", "calls", "failed", "tool s", "queued s", "CPU s", "share of total"),
            )
            for name, k in sorted(split.per_tool_kind.items()):
                tk.rows.append(
                    (
                        name,
                        format_value(k.calls),
                        format_value(k.failures),
                        format_value(k.tool_s, 3),
                        format_value(k.queue_s, 3),
                        format_value(k.tool_cpu_s, 3),
                        format_share(k.share),
                    )
                )
            out.append(tk)
    figures = summary.session_figures
    if figures is not None:
        ss = Section("Sessions", ("figure", "mean", "p50", "p90", "p99"))
        for label, st in (
            ("Session latency (s)", figures.session_latency_s),
            ("Steps per session", figures.steps_per_session),
            ("Tokens per session", figures.tokens_per_session),
        ):
            ss.rows.append((label, *(format_value(v) for v in (st.mean, st.p50, st.p90, st.p99))))
        ss.rows.append(
            ("Completed sessions per hour", format_value(figures.sessions_per_hour, 1), "", "", "")
        )
        out.append(ss)
    energy = summary.energy
    if energy is not None:
        en = Section("Energy", ("figure", "value"))
        rows: tuple[tuple[str, float | str | None, int], ...] = (
            ("GPU energy (J)", energy.gpu_energy_j, 1),
            ("GPU energy source", energy.gpu_source, 0),
            ("Idle power (W)", energy.idle_power_w, 1),
            ("Average power (W)", energy.avg_power_w, 1),
            ("Peak power (W)", energy.peak_power_w, 1),
            ("J per output token", energy.j_per_output_token, 4),
            ("J per request", energy.j_per_request, 2),
            ("J per session", energy.j_per_session, 2),
            ("GPU energy while tools ran (J)", energy.gpu_energy_while_tools_j, 1),
            ("CPU package energy (J)", energy.cpu_energy_j, 1),
            ("CPU energy source", energy.cpu_source, 0),
        )
        gpu_rows, cpu_rows = rows[:9] + _gpu_attribution_rows(summary), rows[9:]
        reasons = dict(summary.telemetry.unavailable_sources()) if summary.telemetry else {}
        missing: list[str] = []
        for part, source, measured, part_rows in (
            ("GPU", "gpu", energy.gpu_source != "unavailable", gpu_rows),
            ("CPU package", "rapl", energy.cpu_source != "unavailable", cpu_rows),
        ):
            if measured:
                en.rows.extend((label, format_value(v, digits)) for label, v, digits in part_rows)
                if source == "gpu" and energy.gpu_source_note:
                    en.rows.insert(2, ("GPUs counted", energy.gpu_source_note))
            else:  # one line for the source, not a row of n/a per figure
                missing.append(f"{part} ({reasons.get(source, 'unavailable')})")
        if missing:
            en.note = "not measured: " + "; ".join(missing)
        out.append(en)
    steady = steady_section(summary)
    if steady is not None:
        out.append(steady)
    server = summary.server_metrics
    if server.available:
        sp = Section("Server-side phases (/metrics, over the run)", ("phase", "requests", "mean s"))
        for phase, d in server.phases.items():
            sp.rows.append((phase, format_value(d.requests), format_value(d.mean_s, 4)))
        out.append(sp)
    return out


def _gpu_attribution_rows(summary: Summary) -> tuple[tuple[str, float | str | None, int], ...]:
    """The energy table's rows on this host's GPUs that are not the server's, apart."""
    other = summary.energy.other_gpus if summary.energy is not None else None
    if other is None:
        return ()
    devices = ", ".join(str(d) for d in other.devices)
    return (
        (f"Other GPUs on this host ({devices}): energy (J)", other.gpu_energy_j, 1),
        (f"Other GPUs on this host ({devices}): average power (W)", other.avg_power_w, 1),
    )


def build_sections(summary: Summary, manifest: Mapping[str, Any]) -> list[Section]:
    """The report's tables: run, throughput, latency, goodput (if an SLO was set), errors."""
    run = Section("Run", ("field", "value"))
    run.rows.append(("Run", format_value(_scalar(manifest, *_RUN_NAME_KEYS))))
    run.rows.append(
        ("Model", format_value(_scalar(manifest, "model", "server.model", "workload.model")))
    )
    run.rows.append(("Server", format_value(_server_text(manifest))))
    workload = _scalar(manifest, "workload.name", "workload")
    if workload is not None:
        run.rows.append(("Workload", format_value(workload)))
    started = _scalar(manifest, "started_at", "start_time", "started", "anchor.iso")
    if started is not None:
        run.rows.append(("Started", format_value(started)))
    status = _scalar(manifest, "status")
    if status is not None:
        run.rows.append(("Status", format_value(status)))
    version = _scalar(manifest, "server.server_version")
    if version is not None:
        run.rows.append(("Server version", format_value(version)))
    host = manifest.get("host")
    if isinstance(host, Mapping):
        cores = host.get("cpu_logical_cores")
        run.rows.append(("Host", f"{host.get('cpu_model') or MISSING}, {cores or MISSING} cores"))
    gpu = manifest.get("gpu")
    if isinstance(gpu, Mapping):
        if gpu.get("available"):
            names = ", ".join(str(g.get("name")) for g in gpu.get("gpus", []))
            run.rows.append(("GPUs", names or MISSING))
        else:
            run.rows.append(("GPUs", f"unavailable ({gpu.get('reason', 'no reason given')})"))
    exporters = manifest.get("gpu_metrics")
    if isinstance(exporters, Mapping):
        if exporters.get("available"):
            names = ", ".join(f"{g.get('name')} on {g.get('host')}" for g in exporters["gpus"])
            run.rows.append(("Server GPUs (DCGM)", names or MISSING))
        else:
            reason = exporters.get("reason", "no reason given")
            run.rows.append(("Server GPUs (DCGM)", f"unavailable ({reason})"))

    tput = Section("Throughput", ("metric", "value"))
    for label, value, digits in (
        ("Requests completed", summary.requests_completed, 0),
        ("Requests failed", summary.requests_failed, 0),
        ("Warmup requests excluded", summary.requests_warmup_excluded, 0),
        ("Duration (s)", summary.duration_s, 3),
        ("Input tokens", summary.input_tokens, 0),
        ("Output tokens", summary.output_tokens, 0),
        ("Request throughput (req/s)", summary.request_throughput_rps, 3),
        ("Output throughput (tok/s)", summary.output_throughput_tok_s, 2),
        ("Total throughput (tok/s)", summary.total_throughput_tok_s, 2),
        ("Max concurrency observed", summary.max_concurrency_observed, 0),
    ):
        tput.rows.append((label, format_value(value, digits)))

    columns = _latency_columns(summary)
    latency = Section("Latency (ms)", ("metric", *columns))
    for label, stats in _latency_rows(summary):
        latency.rows.append((label, *(_stat_cell(stats, c) for c in columns)))

    load = _load_section(summary)
    sections = [run, *([load] if load is not None else []), tput, latency]
    replicas = replica_section(summary)
    if replicas is not None:
        sections.append(replicas)
    sections.extend(_split_sections(summary))
    sections.extend(recorded_sections(summary, manifest))
    accounting = summary.run
    acc = Section("Run accounting", ("figure", "value"))
    for label, count in (
        ("Requests planned", accounting.requests_planned),
        ("Requests sent", accounting.requests_sent),
        ("Requests clipped to the context window", accounting.requests_clipped),
        ("Requests skipped (over the context window)", accounting.requests_skipped_overlength),
        ("Prompt token mismatches (usage vs. trace)", accounting.prompt_token_mismatches),
        ("Output token mismatches (usage vs. trace)", accounting.output_token_mismatches),
        ("Sessions started", accounting.sessions_started),
        ("Sub-agent sessions started by their parents", accounting.subagents_started or None),
        (
            "Sub-agent sessions without their parent (started at their own arrival)",
            accounting.subagents_without_parent or None,
        ),
        (
            "Sub-agent sessions not started (parent ended before their step)",
            accounting.subagents_not_started or None,
        ),
        ("Interrupted", accounting.interrupted),
        ("Stopped early because", accounting.aborted_reason),
    ):
        if count is not None:
            acc.rows.append((label, format_value(count)))
    if summary.workers is not None:
        workers = summary.workers
        acc.rows.append(("Load workers", f"{workers.used} ({workers.reason})"))
    if summary.client is not None:
        verdict = {True: "yes", False: "no", None: "unknown"}[summary.client.client_bound]
        acc.rows.append(("Client bound (the harness may have set the pace)", verdict))
    sections.append(acc)
    if summary.slo is not None:
        good = Section("Goodput", ("metric", "value"))
        good.rows.append(("SLO", slo_text(summary.slo)))
        good.rows.append(("Requests meeting SLO", format_value(summary.requests_meeting_slo)))
        good.rows.append(("Goodput (req/s)", format_value(summary.goodput_rps, 3)))
        good.rows.append(("SLO attainment", format_share(summary.slo_attainment)))
        sections.append(good)

    client = _client_section(summary)
    if client is not None:
        sections.append(client)
    if summary.errors:
        err = Section("Errors", ("error", "count"))
        err.rows.extend((str(k), format_value(v)) for k, v in summary.errors.items())
        sections.append(err)
    return sections


def _load_section(summary: Summary) -> Section | None:
    """The load the run applied (arrivals, rate or concurrency, caps, limits, workers); None
    for a summary that does not record it (older, or recovered from journals)."""
    load = summary.load
    if load is None:
        return None
    sec = Section("Load applied", ("setting", "value"))
    sec.rows.append(("Arrivals", load.description))
    for label, value, digits in (
        ("Time scale (trace gaps ×)", load.time_scale, 3),
        ("Rate (sessions/s)", load.rate_per_s, 3),
        ("Concurrency (closed-loop sessions)", load.concurrency, 0),
        ("Max requests in flight", load.max_concurrency, 0),
        ("Max requests", load.max_requests, 0),
        ("Duration limit (s)", load.duration_s, 1),
    ):
        if value is not None:
            sec.rows.append((label, format_value(value, digits)))
    sec.rows.append(("Warmup requests", format_value(load.warmup_requests)))
    if load.workers is not None:
        sec.rows.append(("Load workers", format_value(load.workers)))
    if load.trace_timing_replaced:
        sec.rows.append(("Trace timing", "replaced (see the notes)"))
    return sec


def _client_section(summary: Summary) -> Section | None:
    """The load generator's own health, one row per worker: whether the client, not the
    server, may have set a figure."""
    client = summary.client
    if client is None:
        return None
    sec = Section(
        "Client (the harness's own load workers)",
        ("worker", "loop lag p50 ms", "loop lag p99 ms", "loop lag max ms", "CPU % of a core"),
    )
    for w in client.workers:
        util = None if w.cpu_util is None else 100 * w.cpu_util
        lag = w.loop_lag_ms
        sec.rows.append(
            (
                str(w.worker),
                format_value(lag.p50, 2),
                format_value(lag.p99, 2),
                format_value(lag.max, 2),
                format_value(util, 0),
            )
        )
    return sec


def render_console(summary: Summary, manifest: Mapping[str, Any], console: Console) -> None:
    """Print the summary as rich tables."""
    print_sections(build_sections(summary, manifest), console)


def print_sections(sections: Sequence[Section], console: Console) -> None:
    """Print sections as rich tables that fit the console (harness.console_tables: text
    left, figures right, names wrapped, never cut)."""
    console_tables.print_sections(sections, console)


def _md_cell(text: str) -> str:
    """Escape a string for one Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _md_alt(text: str) -> str:
    """A caption as a Markdown image's alt text (square brackets would end it)."""
    return text.replace("[", "(").replace("]", ")")


def report_title(manifest: Mapping[str, Any]) -> str:
    """The heading of a run's report: "Benchmark report: NAME" (or without a name)."""
    name = _scalar(manifest, *_RUN_NAME_KEYS)
    return f"Benchmark report: {name}" if name is not None else "Benchmark report"


def sections_markdown(
    title: str,
    sections: Sequence[Section],
    notes: Sequence[str] = (),
    figures: Sequence[tuple[str, str]] = (),
    headline: Sequence[tuple[str, str]] = (),
) -> str:
    """Sections as a Markdown document (GitHub tables) under `title`: the `headline`
    figures (label, value) first, `notes` as a bullet list, `figures` (image file, caption)
    each with its caption under it, then the tables. The HTML page (harness.html_report)
    renders the same sections."""
    lines = [f"# {title}", ""]
    if headline:
        lines.append(" · ".join(f"**{_md_cell(k)}** {_md_cell(v)}" for k, v in headline))
        lines.append("")
    if notes:
        lines.extend(f"- {note}" for note in notes)
        lines.append("")
    for name, caption in figures:
        lines.extend((f"![{_md_alt(caption)}]({name})", "", f"*{_md_cell(caption)}*", ""))
    for section in sections:
        lines.append(f"## {section.title}")
        lines.append("")
        if section.rows:
            lines.append("| " + " | ".join(_md_cell(h) for h in section.headers) + " |")
            lines.append("|" + "|".join("---" for _ in section.headers) + "|")
            lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in section.rows)
            lines.append("")
        if section.note:
            lines.extend((section.note, ""))
    return "\n".join(lines)


def render_markdown(
    summary: Summary, manifest: Mapping[str, Any], notes: Sequence[str] = ()
) -> str:
    """The summary as a Markdown document (GitHub tables); `notes` become a bullet list on top."""
    return sections_markdown(report_title(manifest), build_sections(summary, manifest), notes)


def breakdown_markdown(runs: Sequence[tuple[str, LatencySplit]], figure: str) -> str:
    """The latency breakdown of several runs (workloads) side by side, per session."""
    lines = [
        "# Latency breakdown per workload",
        "",
        f"![seconds per session by component]({figure})",
        "",
        "Seconds per session; CPU share = (tools + orchestration) / total, "
        "GPU share = LLM / total; queued = waiting for the harness's tool workers and "
        "concurrency slots, in neither share.",
        "",
        "| workload | sessions | LLM s | tool s | queued s | tool CPU s | orchestration s "
        "| total s | CPU share | GPU share | tool kinds (s per session) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, split in runs:
        n = float(split.sessions) or 1.0
        cpu = split.tool_cpu_s
        kinds = ", ".join(
            f"{kind} {k.tool_s / n:.2f}" for kind, k in sorted(split.per_tool_kind.items())
        )
        cells = [
            name,
            format_value(split.sessions),
            format_value(split.llm_s / n, 3),
            format_value(split.tool_s / n, 3),
            format_value(split.queued_s / n, 3),
            format_value(None if cpu is None else cpu / n, 3),
            format_value(split.orchestration_s / n, 3),
            format_value(split.total_s / n, 3),
            format_share(split.cpu_share),
            format_share(split.gpu_share),
            kinds or "none",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


@dataclass(slots=True)
class RunReportContent:
    """What a run's report shows, shared by report.md and report.html."""

    title: str
    sections: list[Section]
    notes: list[str]
    headline: list[tuple[str, str]] = field(default_factory=list)
    """The few figures a reader looks for first (label, value), shown above everything."""


def run_headline(summary: Summary) -> list[tuple[str, str]]:
    """A run's headline figures: requests done and failed, output throughput, TTFT, TPOT
    and E2EL medians and p99, SLO attainment where an SLO was set."""

    def ms(stats: Stats) -> str:
        p50, p99 = stats.p50, stats.percentile("p99")
        if p50 is None:
            return MISSING
        return f"{format_value(p50)} / {format_value(p99)} ms"

    out = [
        ("Requests", f"{summary.requests_completed:,} done, {summary.requests_failed:,} failed"),
        ("Output throughput", f"{format_value(summary.output_throughput_tok_s, 1)} tok/s"),
        ("TTFT p50 / p99", ms(summary.ttft_ms)),
        ("TPOT p50 / p99", ms(summary.tpot_ms)),
        ("E2EL p50 / p99", ms(summary.e2el_ms)),
    ]
    if summary.slo is not None:
        out.append(("SLO attainment", format_share(summary.slo_attainment)))
    return out


def run_notes(summary: Summary) -> list[str]:
    """What a reader must know before trusting the figures: a recovered run, sessions the
    harness failed, a load worker that died, the client setting the pace, the harness's
    queues dominating the session time, the workload's timing replaced by the options,
    implausible or thinly backed latency figures, what went wrong with the GPU nodes' DCGM
    exporters, and GPU figures that may not be the server's alone."""
    notes: list[str] = []
    if summary.recovered is not None:
        notes.append(summary.recovered.note)
    accounting = summary.run
    if accounting.sessions_failed:
        errors = accounting.session_errors or []
        first = f"; first: {errors[0]}" if errors else ""
        notes.append(
            f"{accounting.sessions_failed} sessions ended on an error of the harness{first}"
        )
    for error in accounting.worker_errors or []:
        notes.append(f"{error}; the other workers went on")
    orphans = (accounting.subagents_without_parent or 0) + (accounting.subagents_not_started or 0)
    if orphans:
        notes_kept = accounting.subagent_notes or []
        first = f"; first: {notes_kept[0]}" if notes_kept else ""
        notes.append(
            f"{orphans} sub-agent sessions were not started where their parent started them{first}"
        )
    client = summary.client
    if client is not None and client.client_bound:
        notes.extend(f"client bound: {reason}" for reason in client.client_bound_reasons)
    split = summary.latency_split
    if split is not None and split.queue_note:
        notes.append(split.queue_note)
    if summary.load is not None and summary.load.note:
        notes.append(summary.load.note)
    dcgm = summary.telemetry.dcgm if summary.telemetry is not None else None
    if dcgm is not None:
        notes.extend(f"GPU metrics: {problem}" for problem in dcgm.problems)
    notes.extend(flag.reason for flag in summary.timing_flags or [])
    note = _gpu_attribution_note(summary)
    if note is not None:
        notes.append(note)
    return notes


def _gpu_attribution_note(summary: Summary) -> str | None:
    """Where NVML sees more than one GPU and the server's could not be told: the GPU
    figures are every GPU's, and why."""
    telemetry = summary.telemetry
    found = telemetry.gpu_attribution if telemetry is not None else None
    if telemetry is None or found is None or found.method != "unknown":
        return None
    if telemetry.gpu.devices <= 1:
        return None
    return (
        f"GPU energy and power cover all {telemetry.gpu.devices} GPUs NVML sees: the "
        f"server's could not be told ({found.reason})"
    )


def run_report_content(run_dir: Path, reader: RunReader | None = None) -> RunReportContent:
    """Title, sections and notes of a run's report; an unfinished run is summarized from its
    journals (and says so). `reader` is the run dir's RunReader where one is open."""
    reader = RunReader(run_dir) if reader is None else reader
    manifest: dict[str, Any] = {"run_name": Path(run_dir).name, **reader.manifest}
    summary = read_summary(reader)
    notes = run_notes(summary)
    sections = build_sections(summary, manifest)
    return RunReportContent(report_title(manifest), sections, notes, run_headline(summary))


def write_report(
    run_dir: Path, figures: Sequence[FigureRef] = (), content: RunReportContent | None = None
) -> Path:
    """Write report.md into a run dir and return its path; an unfinished run is summarized.
    `figures` (image files already in the run dir) are linked with their captions after the
    headline; one not drawn is a note saying why; `content` is the report's, where already
    built (else it is built from the run dir)."""
    content = run_report_content(run_dir) if content is None else content
    drawn = [(f.file, f.caption) for f in figures if f.file is not None]
    notes = [*content.notes, *(f.caption for f in figures if f.file is None)]
    text = sections_markdown(content.title, content.sections, notes, drawn, content.headline)
    return write_run_file(Path(run_dir), REPORT_FILE, text)
