"""Run reports: a rich console view and a Markdown file built from the summary and manifest.

Both views are rendered from the same list of sections, so they always show the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.results import RunReader, write_run_file
from harness.run_summary import read_summary

REPORT_FILE = "report.md"
MISSING = "n/a"
"""Shown where a figure is absent (never a made-up 0)."""

_LATENCY_ROWS: tuple[tuple[str, str], ...] = (
    ("TTFT", "ttft_ms"),
    ("TPOT", "tpot_ms"),
    ("ITL", "itl_ms"),
    ("E2EL", "e2el_ms"),
    ("E2EL from scheduled", "e2el_from_scheduled_ms"),
    ("Send lag", "send_lag_ms"),
)
_RUN_NAME_KEYS: tuple[str, ...] = ("run_name", "run", "name", "run_dir")
_LATENCY_STATS: tuple[str, ...] = ("mean", "p50", "p90", "p99", "std", "count")


@dataclass(slots=True)
class Section:
    """One titled table of a report, already formatted as strings."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)


def format_value(value: Any, digits: int = 2) -> str:
    """A figure as text: ints plain, floats to `digits` decimals, None as n/a."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def lookup(mapping: Mapping[str, Any] | None, *paths: str) -> Any:
    """The first present value among dotted `paths` (e.g. "server.model"), else None (also
    where `mapping`, or any level on the way, is not a mapping)."""
    for path in paths:
        node: Any = mapping
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return None


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
        parts = [
            str(v)
            for v in (
                lookup(server, "base_url", "url", "endpoint"),
                lookup(server, "kind", "engine", "name"),
                lookup(server, "version", "vllm_version"),
            )
            if v is not None
        ]
        return " ".join(parts) or None
    return None if server is None else str(server)


def format_share(value: Any) -> str:
    """A fraction as a percentage ("42.0 %"), None as n/a."""
    return MISSING if value is None else f"{100 * float(value):.1f} %"


def slo_text(
    slo: Mapping[str, Any],
    *,
    number: Callable[[Any], str] = format_value,
    at_most: str = "<=",
    none: str = "none set",
) -> str:
    """SLO limits (ttft_ms, tpot_ms, e2el_ms) as "TTFT <= 25.00 ms, TPOT <= 6.00 ms": each
    limit written with `number`, limits that are not set left out, `none` where none is."""
    limits = [
        f"{key.removesuffix('_ms').upper()} {at_most} {number(value)} ms"
        for key, value in slo.items()
        if value is not None
    ]
    return ", ".join(limits) or none


SPLIT_ROWS: tuple[tuple[str, str], ...] = (
    ("LLM: request sent → done (inference server)", "llm_s"),
    ("Tools working (host CPU, wall)", "tool_s"),
    ("Waiting for a free tool worker (harness queue)", "tool_queue_s"),
    ("Waiting for a max_concurrency slot (harness queue)", "slot_queue_s"),
    ("Orchestration (prompt building, parsing, event loop)", "orchestration_s"),
)
"""The rows of the latency split, which add up to the total (shares to 100 %)."""


def _split_sections(summary: Mapping[str, Any]) -> list[Section]:
    """Latency split, tool kinds, sessions and server-side phases, where the run has them."""
    out: list[Section] = []
    split = summary.get("latency_split")
    if isinstance(split, Mapping):
        sec = Section("Latency split (CPU vs GPU)", ("part", "seconds", "share"))
        total = split.get("total_s") or 0.0
        for label, key in SPLIT_ROWS:
            value: float | None = split.get(key)
            share = value / total if total and value is not None else None
            sec.rows.append((label, format_value(value, 3), format_share(share)))
        for label, key in (
            ("Tool CPU seconds (user + system)", "tool_cpu_s"),
            ("Think time (user's or the recording's, not in the split)", "think_s"),
        ):
            sec.rows.append((label, format_value(split.get(key), 3), ""))
        sec.rows.append(
            ("CPU share (tools + orchestration)", "", format_share(split.get("cpu_share")))
        )
        sec.rows.append(("GPU share (LLM)", "", format_share(split.get("gpu_share"))))
        sec.rows.append(
            ("Queue share (the harness's own queues)", "", format_share(split.get("queue_share")))
        )
        out.append(sec)
        kinds = split.get("per_tool_kind") or {}
        if kinds:
            tk = Section(
                "Tool kinds",
                ("kind", "calls", "failed", "tool s", "queued s", "CPU s", "share of total"),
            )
            for name, k in sorted(kinds.items()):
                tk.rows.append(
                    (
                        name,
                        format_value(k.get("calls")),
                        format_value(k.get("failures")),
                        format_value(k.get("tool_s"), 3),
                        format_value(k.get("queue_s"), 3),
                        format_value(k.get("tool_cpu_s"), 3),
                        format_share(k.get("share")),
                    )
                )
            out.append(tk)
    figures = summary.get("session_figures")
    if isinstance(figures, Mapping):
        ss = Section("Sessions", ("figure", "mean", "p50", "p90", "p99"))
        for label, key in (
            ("Session latency (s)", "session_latency_s"),
            ("Steps per session", "steps_per_session"),
            ("Tokens per session", "tokens_per_session"),
        ):
            st = figures.get(key) or {}
            ss.rows.append(
                (label, *(format_value(st.get(p)) for p in ("mean", "p50", "p90", "p99")))
            )
        ss.rows.append(
            (
                "Completed sessions per hour",
                format_value(figures.get("sessions_per_hour"), 1),
                "",
                "",
                "",
            )
        )
        out.append(ss)
    energy = summary.get("energy")
    if isinstance(energy, Mapping):
        en = Section("Energy", ("figure", "value"))
        for label, key, digits in (
            ("GPU energy (J)", "gpu_energy_j", 1),
            ("GPU energy source", "gpu_source", 0),
            ("Idle power (W)", "idle_power_w", 1),
            ("Average power (W)", "avg_power_w", 1),
            ("Peak power (W)", "peak_power_w", 1),
            ("J per output token", "j_per_output_token", 4),
            ("J per request", "j_per_request", 2),
            ("J per session", "j_per_session", 2),
            ("GPU energy while tools ran (J)", "gpu_energy_while_tools_j", 1),
            ("CPU package energy (J)", "cpu_energy_j", 1),
            ("CPU energy source", "cpu_source", 0),
        ):
            en.rows.append((label, format_value(energy.get(key), digits)))
        out.append(en)
    server = summary.get("server_metrics")
    if isinstance(server, Mapping) and server.get("available"):
        sp = Section("Server-side phases (/metrics, over the run)", ("phase", "requests", "mean s"))
        for phase, d in (server.get("phases") or {}).items():
            sp.rows.append(
                (phase, format_value(d.get("requests")), format_value(d.get("mean_s"), 4))
            )
        out.append(sp)
    return out


def build_sections(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[Section]:
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

    tput = Section("Throughput", ("metric", "value"))
    for label, key, digits in (
        ("Requests completed", "requests_completed", 0),
        ("Requests failed", "requests_failed", 0),
        ("Warmup requests excluded", "requests_warmup_excluded", 0),
        ("Duration (s)", "duration_s", 3),
        ("Input tokens", "input_tokens", 0),
        ("Output tokens", "output_tokens", 0),
        ("Request throughput (req/s)", "request_throughput_rps", 3),
        ("Output throughput (tok/s)", "output_throughput_tok_s", 2),
        ("Total throughput (tok/s)", "total_throughput_tok_s", 2),
        ("Max concurrency observed", "max_concurrency_observed", 0),
    ):
        if key in summary:
            tput.rows.append((label, format_value(summary[key], digits)))

    latency = Section("Latency (ms)", ("metric", *_LATENCY_STATS))
    for label, key in _LATENCY_ROWS:
        stats = summary.get(key)
        if isinstance(stats, Mapping):
            latency.rows.append((label, *(format_value(stats.get(s)) for s in _LATENCY_STATS)))

    sections = [run, tput, latency, *_split_sections(summary)]
    accounting = summary.get("run")
    if isinstance(accounting, Mapping):
        acc = Section("Run accounting", ("figure", "value"))
        for label, key in (
            ("Requests planned", "requests_planned"),
            ("Requests sent", "requests_sent"),
            ("Requests clipped to the context window", "requests_clipped"),
            ("Requests skipped (over the context window)", "requests_skipped_overlength"),
            ("Prompt token mismatches (usage vs. trace)", "prompt_token_mismatches"),
            ("Output token mismatches (usage vs. trace)", "output_token_mismatches"),
            ("Sessions started", "sessions_started"),
            ("Interrupted", "interrupted"),
            ("Stopped early because", "aborted_reason"),
        ):
            if key in accounting and accounting[key] is not None:
                acc.rows.append((label, format_value(accounting[key])))
        sections.append(acc)
    slo = summary.get("slo")
    if isinstance(slo, Mapping):
        good = Section("Goodput", ("metric", "value"))
        good.rows.append(("SLO", slo_text(slo)))
        good.rows.append(
            ("Requests meeting SLO", format_value(summary.get("requests_meeting_slo")))
        )
        good.rows.append(("Goodput (req/s)", format_value(summary.get("goodput_rps"), 3)))
        attainment = summary.get("slo_attainment")
        good.rows.append(("SLO attainment", format_share(attainment)))
        sections.append(good)

    errors = summary.get("errors")
    if isinstance(errors, Mapping) and errors:
        err = Section("Errors", ("error", "count"))
        err.rows.extend((str(k), format_value(v)) for k, v in errors.items())
        sections.append(err)
    return sections


def render_console(
    summary: Mapping[str, Any], manifest: Mapping[str, Any], console: Console
) -> None:
    """Print the summary as rich tables."""
    print_sections(build_sections(summary, manifest), console)


def print_sections(sections: Sequence[Section], console: Console) -> None:
    """Print sections as rich tables (first column left, figures right-aligned); every title,
    header and cell is literal text, never rich markup (names and paths are user data)."""
    for section in sections:
        table = Table(title=Text(section.title), title_justify="left")
        for i, header in enumerate(section.headers):
            table.add_column(Text(header), justify="left" if i == 0 else "right")
        for row in section.rows:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)


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
) -> str:
    """Sections as a Markdown document (GitHub tables) under `title`; `figures` (image file,
    caption) are linked right after the title, `notes` become a bullet list above the
    tables. The HTML page (harness.html_report) renders the same sections."""
    lines = [f"# {title}", ""]
    if figures:
        lines.extend(f"![{_md_alt(caption)}]({name})" for name, caption in figures)
        lines.append("")
    if notes:
        lines.extend(f"- {note}" for note in notes)
        lines.append("")
    for section in sections:
        lines.append(f"## {section.title}")
        lines.append("")
        lines.append("| " + " | ".join(_md_cell(h) for h in section.headers) + " |")
        lines.append("|" + "|".join("---" for _ in section.headers) + "|")
        lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in section.rows)
        lines.append("")
    return "\n".join(lines)


def render_markdown(
    summary: Mapping[str, Any], manifest: Mapping[str, Any], notes: Sequence[str] = ()
) -> str:
    """The summary as a Markdown document (GitHub tables); `notes` become a bullet list on top."""
    return sections_markdown(report_title(manifest), build_sections(summary, manifest), notes)


def _queued_s(split: Mapping[str, Any]) -> float:
    """Seconds the split spent in the harness's queues (0 for runs written before they were
    counted apart)."""
    return float(split.get("tool_queue_s") or 0.0) + float(split.get("slot_queue_s") or 0.0)


def breakdown_markdown(runs: Sequence[tuple[str, Mapping[str, Any]]], figure: str) -> str:
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
        n = float(split.get("sessions") or 0) or 1.0
        cpu = split.get("tool_cpu_s")
        kinds = ", ".join(
            f"{kind} {float(k['tool_s']) / n:.2f}"
            for kind, k in sorted((split.get("per_tool_kind") or {}).items())
        )
        cells = [
            name,
            format_value(split.get("sessions")),
            format_value(float(split["llm_s"]) / n, 3),
            format_value(float(split["tool_s"]) / n, 3),
            format_value(_queued_s(split) / n, 3),
            format_value(None if cpu is None else float(cpu) / n, 3),
            format_value(float(split["orchestration_s"]) / n, 3),
            format_value(float(split["total_s"]) / n, 3),
            format_share(split.get("cpu_share")),
            format_share(split.get("gpu_share")),
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


def run_notes(summary: Mapping[str, Any]) -> list[str]:
    """What a reader must know before trusting the figures: a recovered run, sessions the
    harness failed, the harness's queues dominating the session time."""
    notes: list[str] = []
    recovered = summary.get("recovered")
    if isinstance(recovered, Mapping) and recovered.get("note"):
        notes.append(str(recovered["note"]))
    accounting = summary.get("run")
    if isinstance(accounting, Mapping) and accounting.get("sessions_failed"):
        errors = accounting.get("session_errors") or []
        first = f"; first: {errors[0]}" if errors else ""
        notes.append(
            f"{accounting['sessions_failed']} sessions ended on an error of the harness{first}"
        )
    split = summary.get("latency_split")
    if isinstance(split, Mapping) and split.get("queue_note"):
        notes.append(str(split["queue_note"]))
    return notes


def run_report_content(run_dir: Path, reader: RunReader | None = None) -> RunReportContent:
    """Title, sections and notes of a run's report; an unfinished run is summarized from its
    journals (and says so). `reader` is the run dir's RunReader where one is open."""
    reader = RunReader(run_dir) if reader is None else reader
    manifest: dict[str, Any] = {"run_name": Path(run_dir).name, **reader.manifest}
    summary = read_summary(reader)
    notes = run_notes(summary)
    return RunReportContent(report_title(manifest), build_sections(summary, manifest), notes)


def write_report(
    run_dir: Path, figures: Sequence[str] = (), content: RunReportContent | None = None
) -> Path:
    """Write report.md into a run dir and return its path; an unfinished run is summarized.
    `figures` are image files already in the run dir, linked at the top; `content` is the
    report's, where already built (else it is built from the run dir)."""
    content = run_report_content(run_dir) if content is None else content
    text = sections_markdown(
        content.title, content.sections, content.notes, [(f, f) for f in figures]
    )
    return write_run_file(Path(run_dir), REPORT_FILE, text)
