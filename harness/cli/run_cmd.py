"""`harness run`: replay a workload against a server and write a run directory."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness import __version__
from harness.analysis import Slo
from harness.cli.common import resolve_workload
from harness.cli.console import literal_printer, make_console
from harness.cli.measure import RunTelemetry
from harness.cli.run_options import DEFAULT_CALIBRATION, add_run_args, apply_overrides
from harness.cli.stop_signals import StopRequested, StopSignals, stop_signals
from harness.client import Client, ClientOptions, chat_overhead_tokens
from harness.errors import ConfigError
from harness.latency_split import session_split, step_split
from harness.records import RequestRecord, RunClock, StepRecord, ToolRecord
from harness.redact import redact
from harness.replay import Replayer, ReplayOptions, ReplayOutcome, preflight
from harness.report import render_console, run_notes
from harness.results import RunReader, RunWriter, table_frame
from harness.run_summary import read_requests, table_figures, token_mismatches
from harness.server import AttachedServer, Server, ServerInfo
from harness.server_process import EmbeddedServer, LaunchedServer
from harness.telemetry.cpu import host_inventory
from harness.telemetry.gpu import gpu_inventory
from harness.telemetry.server_metrics import Samples, phase_deltas, scrape
from harness.tools.calibrate import Calibration
from harness.tools.runner import KNOWN_TOOL_KINDS, ExecuteTools, ReplayTools
from harness.tools.workers import tool_workers
from harness.workload.model import Session, Step
from harness.workload.prompts import PromptBuilder, chat_content
from harness.workload.source import open_source
from harness.workload.spec import WorkloadSpec
from harness.workload.tokenizer import TokenSpace, load_token_space

EXIT_OK = 0
EXIT_FAILED_REQUESTS = 1
EXIT_INTERRUPTED = 130


def add_parser(sub: Any) -> None:
    """Register `harness run` (its options are in run_options)."""
    p: argparse.ArgumentParser = sub.add_parser("run", help="replay a workload against a server")
    add_run_args(p)
    p.set_defaults(handler=run)


def safe_name(name: str) -> str:
    """A workload name as one plain path part: letters, digits, `.`, `_` and `-` kept, every
    other run of characters (`/`, `..`, spaces, control characters) one `-`."""
    part = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return part[:100] or "run"


def _default_out(spec: WorkloadSpec) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"{safe_name(spec.name)}-{stamp}"


def calibration_path(spec: WorkloadSpec) -> Path | None:
    """The tool calibration execute mode will use (None in replay mode); ConfigError saying
    how to make one where it is missing."""
    if spec.tools.mode == "replay":
        return None
    path = spec.tools.calibration or DEFAULT_CALIBRATION
    if not path.is_file():
        raise ConfigError(
            f"{path}: no tool calibration; run `harness tools calibrate --out {path}` on this "
            "host first (about 20 s), or pass --calibration"
        )
    return path


def make_tools(
    spec: WorkloadSpec, now_ns: Callable[[], int], seed: int
) -> ReplayTools | ExecuteTools:
    """The workload's tool runner: replayed waits, or real kernels sized by a calibration."""
    path = calibration_path(spec)
    if path is None:
        return ReplayTools(now_ns)
    workers, _ = tool_workers(spec.tools.workers)
    return ExecuteTools(
        Calibration.load(path),
        workers,
        now_ns=now_ns,
        prepare_seed=seed,
        allow_unsandboxed=spec.tools.unsafe_no_sandbox,
    )


def tool_workers_plan(spec: WorkloadSpec) -> dict[str, Any] | None:
    """How many tool workers execute mode runs, and where that number came from."""
    if spec.tools.mode != "execute":
        return None
    workers, source = tool_workers(spec.tools.workers)
    return {"workers": workers, "source": source}


def project_root() -> Path:
    """The checkout holding scripts/ and .vllm/ (HARNESS_ROOT overrides)."""
    env = os.environ.get("HARNESS_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def make_server(args: argparse.Namespace) -> Server:
    """`--server URL` attaches, `--model M` launches vLLM, neither uses the embedded server."""
    if args.server:
        return AttachedServer(args.server, api_key_env=args.api_key_env)
    if args.model:
        return LaunchedServer(args.model, extra_args=tuple(args.vllm_arg))
    return EmbeddedServer(project_root(), extra_args=tuple(args.vllm_arg))


def _token_space(args: argparse.Namespace, info: ServerInfo) -> TokenSpace:
    name = args.tokenizer or info.model_root or info.model
    return load_token_space(str(name))


def _chat_renderer(space: TokenSpace, opts: ClientOptions) -> Callable[[list[int]], str]:
    """Token-exact chat text: the template's overhead is measured once, then each prompt of
    N ids becomes content of N − overhead single-token words."""
    probe = PromptBuilder(space, seed=0, salt=0).session(0)
    words = probe.next_prompt(Step(new_input_tokens=32, output_tokens=0))
    overhead = asyncio.run(chat_overhead_tokens(opts, lambda n: chat_content(space, words[:n])))
    return lambda ids: chat_content(space, ids[: max(0, len(ids) - overhead)])


def _scrape_metrics(info: ServerInfo, console: Console) -> Samples | str:
    """The server's /metrics now, or why it could not be read (reported once)."""
    try:
        return asyncio.run(scrape(info.base_url, info.headers()))
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        reason = f"{type(err).__name__}: {err}"
        console.print(
            f"server /metrics unavailable ({reason}); run goes on", style="yellow", markup=False
        )
        return reason


def _server_metrics_delta(
    info: ServerInfo, before: Samples | str, console: Console
) -> dict[str, Any]:
    """Server-side request phases and token counters over the run, or why they are missing."""
    if isinstance(before, str):
        return {"available": False, "reason": before}
    after = _scrape_metrics(info, console)
    if isinstance(after, str):
        return {"available": False, "reason": after}
    return {"available": True, **phase_deltas(before, after)}


def _sessions(spec: WorkloadSpec, fmt: str | None, space: TokenSpace) -> Iterator[Session]:
    return open_source(spec.source, format_override=fmt, token_counter=space)


def _manifest(
    spec: WorkloadSpec,
    opts: ReplayOptions,
    info: ServerInfo,
    space: TokenSpace,
    clock: RunClock,
    plan: dict[str, Any],
) -> dict[str, Any]:
    anchor = dt.datetime.fromtimestamp(clock.anchor_unix_ns / 1e9, tz=dt.UTC)
    return {
        "run_name": spec.name,
        "harness_version": __version__,
        "command": [redact(arg) for arg in sys.argv],
        "anchor": {
            "unix_ns": clock.anchor_unix_ns,
            "perf_counter_ns": clock.anchor_perf_ns,
            "iso": anchor.isoformat(),
            "note": "every *_ns time in the run's tables counts from this instant "
            "(perf_counter_ns: the host's monotonic clock at it)",
        },
        "workload": spec.model_dump(mode="json"),
        "replay": {k: v for k, v in vars(opts).items()},
        "server": info.to_dict(),
        "tokenizer": space.name,
        "host": host_inventory(),
        "gpu": gpu_inventory(),
        "plan": plan,
        "status": "running",
    }


def _extra_summary(
    outcome: ReplayOutcome, plan: dict[str, Any], requests: pd.DataFrame
) -> dict[str, Any]:
    prompt_mismatches, output_mismatches = token_mismatches(requests)
    return {
        "requests_planned": plan["requests"],
        "requests_sent": outcome.requests_sent,
        "requests_not_sent": outcome.requests_not_sent,
        "requests_clipped": outcome.requests_clipped,
        "requests_skipped_overlength": outcome.requests_skipped_overlength,
        "prompt_token_mismatches": prompt_mismatches,
        "output_token_mismatches": output_mismatches,
        "sessions_started": outcome.sessions_started,
        "sessions_failed": outcome.sessions_failed,
        "session_errors": list(outcome.session_errors),
        "interrupted": outcome.interrupted,
        "aborted_reason": outcome.aborted_reason,
    }


async def _replay(
    replayer: Replayer,
    sessions: Iterator[Session],
    client: Client,
    tools: ReplayTools | ExecuteTools,
    signals: StopSignals,
) -> ReplayOutcome:
    if isinstance(tools, ExecuteTools):
        await tools.start()  # workers up before the clock matters
    try:
        async with client:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(replayer.run(sessions))

            def stop() -> None:
                replayer.interrupt("interrupted by a stop signal")
                task.cancel()

            def stop_soon() -> None:
                loop.call_soon_threadsafe(stop)

            with signals.replay(stop_soon):
                return await task
    finally:
        if isinstance(tools, ExecuteTools):
            await tools.aclose()


def _status(outcome: ReplayOutcome) -> str:
    if outcome.interrupted:
        return "interrupted"
    return "aborted" if outcome.aborted_reason else "finished"


def _plan(
    spec: WorkloadSpec,
    args: argparse.Namespace,
    info: ServerInfo,
    space: TokenSpace,
    checked: dict[str, Any] | None = None,
) -> tuple[ReplayOptions, dict[str, Any]]:
    """The replay options against this server and the counted plan (fails on over-length
    requests under the `error` policy). `checked`, the plan `check_workload` counted before
    the server, is reused where every request fits this server: no second pass."""
    opts = ReplayOptions(
        pattern=spec.arrival.pattern,
        time_scale=spec.arrival.time_scale,
        rate_per_s=spec.arrival.rate_per_s,
        concurrency=spec.arrival.concurrency,
        max_concurrency=spec.limits.max_concurrency,
        max_requests=spec.limits.max_requests,
        duration_s=spec.limits.duration_s,
        warmup_requests=spec.limits.warmup_requests,
        seed=args.seed,
        max_model_len=info.max_model_len,
        overlength=spec.request.overlength,
        on_tool_failure=spec.tools.on_failure,
    )
    fits_all = checked is not None and (
        info.max_model_len is None or checked["max_request_tokens"] <= info.max_model_len
    )
    if checked is not None and fits_all:
        plan = dict(checked)
    else:
        plan = preflight(_sessions(spec, args.format, space), opts, KNOWN_TOOL_KINDS)
    if plan["overlength_requests"] and opts.overlength == "error":
        raise ConfigError(
            f"{plan['overlength_requests']} of {plan['requests']} requests exceed the "
            f"server's context window of {info.max_model_len} tokens (prompt + output); "
            "pass --overlength clip or --overlength skip, or serve a longer context"
        )
    return opts, plan


class _CharCounter:
    """Counts characters as tokens: enough to walk a text trace's structure before the
    server's tokenizer is at hand (lengths are counted again against the server)."""

    def __init__(self) -> None:
        self.used = False

    def count(self, text: str) -> int:
        self.used = True
        return len(text)


def check_workload(spec: WorkloadSpec, args: argparse.Namespace) -> dict[str, Any] | None:
    """What can be checked before a server starts: every session's steps and tool calls are
    well formed and every prompt can be built (hash ids), so bad input fails in seconds.
    Returns the counted plan where its lengths need no tokenizer (a trace of token counts,
    a generator), for `execute` to reuse; None for a text trace."""
    calibration_path(spec)
    opts = ReplayOptions(max_requests=spec.limits.max_requests, seed=args.seed)
    counter = _CharCounter()
    sessions = open_source(spec.source, format_override=args.format, token_counter=counter)
    plan = preflight(sessions, opts, KNOWN_TOOL_KINDS)
    return None if counter.used else plan


def execute(
    spec: WorkloadSpec,
    args: argparse.Namespace,
    server: AbstractContextManager[ServerInfo],
    out: Path,
    console: Console,
    show_summary: bool = True,
    checked: dict[str, Any] | None = None,
) -> int:
    """Run `spec` against `server` into `out`; returns the exit code. `show_summary=False`
    prints only the progress and where the results are (a sweep prints its own table);
    `checked` is `check_workload`'s plan, where it gave one.

    Records stream to the run directory's journals as they happen and the summary is
    computed from the tables written there, so memory stays flat however long the run.
    SIGINT and SIGTERM stop the run at any point and its results are still written."""
    with stop_signals(literal_printer(console)) as signals:
        try:
            with server as info:
                code = _execute_on(spec, args, info, out, console, show_summary, signals, checked)
        except StopRequested:
            if not out.exists():
                return signals.exit_code or EXIT_INTERRUPTED
            raise
    return code


def _execute_on(
    spec: WorkloadSpec,
    args: argparse.Namespace,
    info: ServerInfo,
    out: Path,
    console: Console,
    show_summary: bool,
    signals: StopSignals,
    checked: dict[str, Any] | None,
) -> int:
    space = _token_space(args, info)
    if spec.request.api == "chat":
        space = space.stable_words()
    opts, plan = _plan(spec, args, info, space, checked)
    if plan["overlength_requests"]:
        console.print(
            f"{plan['overlength_requests']} requests exceed the context window "
            f"({info.max_model_len}); policy: {opts.overlength}"
        )
    clock = RunClock()
    salt = args.prompt_salt if args.prompt_salt is not None else secrets.randbelow(2**24)
    plan["prompt_salt"] = salt
    plan["tool_workers"] = tool_workers_plan(spec)
    if plan["tool_workers"] is not None:
        workers = plan["tool_workers"]
        console.print(
            f"tools: real kernels in {workers['workers']} worker processes ({workers['source']})",
            markup=False,
            highlight=False,
        )
    outcome = ReplayOutcome()
    replayer: Replayer | None = None
    crash: Exception | None = None
    with RunWriter(out, overwrite=args.overwrite) as writer:
        # Taken once, before the load: inventories (NVML, psutil) are not re-read after it.
        manifest = _manifest(spec, opts, info, space, clock, plan)
        writer.write_manifest(manifest)
        telemetry: RunTelemetry | None = None
        metrics_before: Samples | str = "the run stopped before the load began"
        try:
            client = Client(
                ClientOptions(
                    base_url=info.base_url,
                    model=info.model,
                    api=spec.request.api,
                    ignore_eos=spec.request.ignore_eos,
                    temperature=spec.request.temperature,
                    timeout_s=spec.request.timeout_s,
                    headers=tuple(info.headers().items()),
                    max_connections=spec.limits.max_concurrency or 0,
                ),
                clock.now_ns,
            )
            to_text = _chat_renderer(space, client.opts) if spec.request.api == "chat" else None
            progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[failed]} failed"),
                console=console,
                transient=False,
            )
            with progress:
                bar = progress.add_task(escape(spec.name), total=plan["requests"], failed=0)
                failed = 0

                def on_record(record: RequestRecord) -> None:
                    nonlocal failed
                    writer.append([record])
                    failed += 0 if record.ok else 1
                    progress.update(bar, advance=1, failed=failed)

                def on_step(record: StepRecord) -> None:
                    writer.append_rows("steps", [record])

                def on_tool(record: ToolRecord) -> None:
                    writer.append_rows("tools", [record])

                tool_runner = make_tools(spec, clock.now_ns, args.seed)
                replayer = Replayer(
                    client,
                    PromptBuilder(space, seed=args.seed, salt=salt),
                    opts,
                    clock.now_ns,
                    on_record,
                    tool_runner,
                    api=spec.request.api,
                    to_text=to_text,
                    on_step=on_step,
                    on_tool=on_tool,
                )
                telemetry = RunTelemetry(
                    info,
                    clock.now_ns,
                    args.sample_hz,
                    args.idle_baseline,
                    args.server_pid,
                    sink=writer.append_samples,
                )
                try:
                    telemetry.start()
                    metrics_before = _scrape_metrics(info, console)
                    gc.collect()
                    gc.freeze()  # as vllm bench does: no collector pauses over long-lived setup
                    outcome = asyncio.run(
                        _replay(
                            replayer,
                            _sessions(spec, args.format, space),
                            client,
                            tool_runner,
                            signals,
                        )
                    )
                finally:
                    telemetry.stop()
                    gc.unfreeze()
        except KeyboardInterrupt:  # a stop signal (StopRequested) or a stray Ctrl-C
            outcome = replayer.outcome if replayer is not None else outcome
            outcome.interrupted = True
            outcome.aborted_reason = outcome.aborted_reason or "interrupted by a stop signal"
        except Exception as err:
            # The harness itself failed mid-run: keep what was measured, say so, then report.
            crash = err
            outcome = replayer.outcome if replayer is not None else outcome
            outcome.aborted_reason = f"harness error: {type(err).__name__}: {err}"
        with signals.writing():
            try:
                summary = _finish(
                    spec, writer, out, info, outcome, plan, telemetry, metrics_before, console
                )
            except Exception:
                manifest["status"] = "failed"  # the journals stay: the run is recoverable
                writer.write_manifest(manifest)
                raise
            # summary.json first: a manifest that says how the run ended always has it.
            writer.finalize(summary)
            manifest["status"] = "failed" if crash is not None else _status(outcome)
            writer.write_manifest(manifest)
    if crash is not None:
        console.print(f"results so far: {out}", markup=False, highlight=False)
        raise crash
    if show_summary:
        render_console(summary, manifest, console)
    for note in run_notes(summary):
        console.print(f"note: {note}", markup=False, highlight=False)
    console.print(f"results: {out}", markup=False, highlight=False)
    if outcome.interrupted:
        return signals.exit_code or EXIT_INTERRUPTED
    if summary.get("requests_failed") or outcome.aborted_reason or outcome.sessions_failed:
        return EXIT_FAILED_REQUESTS
    return EXIT_OK


def _finish(
    spec: WorkloadSpec,
    writer: RunWriter,
    out: Path,
    info: ServerInfo,
    outcome: ReplayOutcome,
    plan: dict[str, Any],
    telemetry: RunTelemetry | None,
    metrics_before: Samples | str,
    console: Console,
) -> dict[str, Any]:
    """Seal the tables and compute the summary from what was written."""
    summary_metrics = _server_metrics_delta(info, metrics_before, console)
    writer.seal_tables()
    reader = RunReader(out)
    requests = read_requests(reader)
    steps = reader.table("steps") if reader.has_table("steps") else None
    tools = reader.table("tools") if reader.has_table("tools") else None
    slo = Slo(**spec.slo.model_dump()) if spec.slo is not None else None
    summary = table_figures(requests, steps, tools, slo, spec.name)
    summary["run"] = _extra_summary(outcome, plan, requests.frame)
    summary["server_metrics"] = summary_metrics
    if telemetry is not None:
        sessions_run = int(steps["session_id"].nunique()) if steps is not None else None
        samples = reader.frame("telemetry")
        summary["energy"] = telemetry.energy(samples, requests.frame, tools, sessions_run)
        summary["telemetry"] = telemetry.status()
    else:
        summary["energy"] = None
    if steps is not None and not steps.empty:
        tools_df = tools if tools is not None else table_frame("tools", [])
        writer.write_frame("step_split", step_split(steps, tools_df))
        writer.write_frame("session_split", session_split(steps, tools_df))
    return summary


def run(args: argparse.Namespace) -> int:
    """Handler of `harness run`."""
    spec = apply_overrides(resolve_workload(args.workload, args.format), args)
    checked = check_workload(spec, args)
    out = args.out or _default_out(spec)
    return execute(spec, args, make_server(args), out, make_console(), checked=checked)
