"""Executing a run: a RunPlan and a server in, a run directory and a RunResult out.

Records stream to the run directory's journals as they happen and the summary is computed
from the tables written there, so memory stays flat however long the run. SIGINT and SIGTERM
stop the run at any point and its results are still written."""

from __future__ import annotations

import datetime as dt
import secrets
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness import __version__
from harness.client import ClientOptions
from harness.records import RunClock
from harness.redact import redact
from harness.replay import ReplayOptions, ReplayOutcome
from harness.results import MANIFEST_FILE, RunWriter
from harness.routing import RoutingPlan
from harness.run.finish import MetricsBefore, finish, load_applied, scrape_metrics
from harness.run.health import WorkerHealth, client_health
from harness.run.live import LiveBounds, LiveFeed
from harness.run.load import LoadGenerator, LoadPlan
from harness.run.plan import RunPlan
from harness.run.pool import WorkerPool
from harness.run.prepare import (
    chat_overhead,
    counted_plan,
    open_token_space,
    replay_options,
    tokenizer_name,
    tool_workers_plan,
)
from harness.run.ray_pool import Cluster, Placed, RayPool, open_cluster, place, ray_workers
from harness.run.stop_signals import StopRequested, StopSignals, stop_signals
from harness.run.telemetry import RunTelemetry
from harness.run.worker_count import WorkerChoice, choose_workers
from harness.server import ServerInfo
from harness.summary import ClientHealth, Summary, Workers
from harness.telemetry.cpu import host_inventory
from harness.telemetry.dcgm import dcgm_inventory
from harness.telemetry.gpu import gpu_inventory
from harness.workload.spec import RoutingPolicy
from harness.workload.tokenizer import TokenSpace

EXIT_OK = 0
EXIT_FAILED_REQUESTS = 1
EXIT_INTERRUPTED = 130


class RunView(Protocol):
    """How the engine shows a run to whoever started it."""

    def say(self, text: str) -> None:
        """A plain line (printed literally)."""

    def warn(self, text: str) -> None:
        """A line about something that went wrong but did not stop the run."""

    def progress(self, name: str, bounds: LiveBounds) -> AbstractContextManager[LiveFeed]:
        """A live progress display of the load run inside it, bounded by `bounds`; the load
        hands the feed every finished request's record (ok or failed) and each session end."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended and what it measured (the summary is also in `out/summary.json`)."""

    out: Path
    exit_code: int
    status: str
    """finished, aborted, interrupted or failed; `not started` when no run was written."""
    summary: Summary | None
    manifest: dict[str, Any] | None


def _server_record(info: ServerInfo, out: Path) -> dict[str, Any]:
    """The server's inventory for the manifest; the log of a server started for this run,
    kept in the run directory, is named relative to it (`server.log`), so it moves along."""
    record = info.to_dict()
    launch = record["launch"]
    log = launch.get("log_path")
    if isinstance(log, str) and Path(log).is_relative_to(out.resolve()):
        launch["log_path"] = Path(log).relative_to(out.resolve()).as_posix()
    return record


def _workload_record(plan: RunPlan) -> dict[str, Any]:
    """The workload for the manifest: its replicas' URLs without credentials, and the
    routing the run applied (the command line's, where it overrode the file's)."""
    workload: dict[str, Any] = plan.spec.model_dump(mode="json")
    workload["servers"] = [redact(url) for url in plan.spec.servers]
    workload["routing"] = plan.routing
    return workload


def _manifest(
    plan: RunPlan,
    opts: ReplayOptions,
    info: ServerInfo,
    space: TokenSpace,
    clock: RunClock,
    counted: dict[str, Any],
    placed: Placed | None,
) -> dict[str, Any]:
    anchor = dt.datetime.fromtimestamp(clock.anchor_unix_ns / 1e9, tz=dt.UTC)
    return {
        "run_name": plan.spec.name,
        "harness_version": __version__,
        "command": [redact(arg) for arg in plan.command],
        "anchor": {
            "unix_ns": clock.anchor_unix_ns,
            "perf_counter_ns": clock.anchor_perf_ns,
            "iso": anchor.isoformat(),
            "note": "every *_ns time in the run's tables counts from this instant "
            "(perf_counter_ns: the host's monotonic clock at it)",
        },
        "workload": _workload_record(plan),
        "replay": {k: v for k, v in vars(opts).items()},
        "server": _server_record(info, plan.out),
        "tokenizer": space.name,
        "host": host_inventory(),
        "gpu": gpu_inventory(),
        "gpu_metrics": dcgm_inventory(plan.gpu_metrics) if plan.gpu_metrics else None,
        "ray": placed.manifest if placed is not None else None,
        "plan": counted,
        "status": "running",
    }


def routing_plan(info: ServerInfo, policy: RoutingPolicy) -> RoutingPlan | None:
    """How requests are spread over the replicas, each with its own headers; None: one server."""
    if len(info.urls) < 2:
        return None
    headers = tuple(tuple(h.items()) for _, h in info.endpoints())
    return RoutingPlan(info.urls, policy, headers)


def _status(outcome: ReplayOutcome) -> str:
    if outcome.interrupted:
        return "interrupted"
    return "aborted" if outcome.aborted_reason else "finished"


def execute(
    plan: RunPlan,
    server: AbstractContextManager[ServerInfo],
    view: RunView,
    checked: dict[str, Any] | None = None,
) -> RunResult:
    """Run `plan` against `server`; `checked` is `check_workload`'s plan, where it gave one.
    A crash of the harness mid-run keeps what was measured (status failed) and is re-raised.
    A run on a Ray cluster (`plan.ray`) connects to it first: an unreachable one stops the
    run before its server and its directory."""
    cluster: AbstractContextManager[Cluster | None] = (
        open_cluster(plan.ray) if plan.ray is not None else nullcontext(None)
    )
    with stop_signals(view.say) as signals:
        try:
            with cluster as ray, server as info:
                return _execute_on(plan, info, view, signals, checked, ray)
        except StopRequested:
            # Before the run's manifest (a starting server's log may be there already).
            if not (plan.out / MANIFEST_FILE).exists():
                code = signals.exit_code or EXIT_INTERRUPTED
                return RunResult(plan.out, code, "not started", None, None)
            raise


def _execute_on(
    plan: RunPlan,
    info: ServerInfo,
    view: RunView,
    signals: StopSignals,
    checked: dict[str, Any] | None,
    cluster: Cluster | None = None,
) -> RunResult:
    spec = plan.spec
    tokenizer = tokenizer_name(plan, info)
    space = open_token_space(tokenizer, spec.request.api)
    opts = replay_options(plan, info)
    counted = counted_plan(plan, opts, info, space, checked)
    if counted["overlength_requests"]:
        view.say(
            f"{counted['overlength_requests']} requests exceed the context window "
            f"({info.max_model_len}); policy: {opts.overlength}"
        )
    clock = RunClock()
    salt = plan.prompt_salt if plan.prompt_salt is not None else secrets.randbelow(2**24)
    counted["prompt_salt"] = salt
    counted["tool_workers"] = tool_workers_plan(spec)
    counted["percentiles"] = list(plan.percentiles)
    if counted["tool_workers"] is not None:
        workers = counted["tool_workers"]
        view.say(
            f"tools: real kernels in {workers['workers']} worker processes ({workers['source']})"
        )
    requested = plan.workers if plan.workers is not None else spec.client.workers
    placed: Placed | None = None
    if cluster is not None and plan.ray is not None:
        choice = ray_workers(plan.ray, cluster, requested, opts, counted)
        counted["load_workers"] = choice.to_dict()
        placed = place(cluster, plan.ray, choice.used, view.say)
    else:
        choice = choose_workers(requested, opts, counted, plan.server_local)
        counted["load_workers"] = choice.to_dict()
        if choice.used > 1 or choice.used != requested:
            view.say(f"load: {choice.used} worker processes ({choice.reason})")
    try:
        return _load_and_finish(
            plan, info, view, signals, opts, space, clock, counted, choice, placed, salt, tokenizer
        )
    finally:
        if placed is not None:
            placed.shards.close()


def _load_and_finish(
    plan: RunPlan,
    info: ServerInfo,
    view: RunView,
    signals: StopSignals,
    opts: ReplayOptions,
    space: TokenSpace,
    clock: RunClock,
    counted: dict[str, Any],
    choice: WorkerChoice,
    placed: Placed | None,
    salt: int,
    tokenizer: str,
) -> RunResult:
    spec = plan.spec
    client_opts = ClientOptions(
        base_url=info.base_url,
        model=info.model,
        api=spec.request.api,
        ignore_eos=spec.request.ignore_eos,
        temperature=spec.request.temperature,
        timeout_s=spec.request.timeout_s,
        headers=tuple(info.headers().items()),
        max_connections=spec.limits.max_concurrency or 0,
    )
    outcome = ReplayOutcome()
    crash: Exception | None = None
    with RunWriter(plan.out, overwrite=plan.overwrite) as writer:
        # Taken once, before the load: inventories (NVML, psutil) are not re-read after it.
        manifest = _manifest(plan, opts, info, space, clock, counted, placed)
        writer.write_manifest(manifest)
        telemetry: RunTelemetry | None = None
        metrics_before: MetricsBefore = "the run stopped before the load began"
        generator: LoadGenerator | WorkerPool | RayPool | None = None
        try:
            overhead = chat_overhead(space, client_opts) if spec.request.api == "chat" else None
            load = LoadPlan(
                plan=plan,
                replay=opts,
                client=client_opts,
                tokenizer=tokenizer,
                prompt_salt=salt,
                chat_overhead=overhead,
                anchor_perf_ns=clock.anchor_perf_ns,
                routing=routing_plan(info, plan.routing),
            )
            if placed is not None:
                generator = RayPool(load, writer, placed)
            elif choice.used == 1:
                generator = LoadGenerator(load, space, writer)
            else:
                generator = WorkerPool(load, writer, choice.used)
            telemetry = RunTelemetry(
                info,
                clock.now_ns,
                plan.sample_hz,
                plan.idle_baseline_s,
                plan.server_pid,
                sink=writer.append_samples,
                gpu_metrics=plan.gpu_metrics,
                gpu_metrics_every_s=plan.gpu_metrics_every_s,
                steady=plan.steady,
                gpus=plan.gpus,
            )
            bounds = LiveBounds(counted["requests"], spec.limits.duration_s, counted["sessions"])
            try:
                generator.start()  # workers up before the idle baseline and the clock
                telemetry.start()
                metrics_before = scrape_metrics(info, view.warn)
                with view.progress(spec.name, bounds) as feed:  # its clock starts with the load
                    outcome = generator.run(feed, signals)
            finally:
                telemetry.stop()
                generator.close()
        except KeyboardInterrupt:  # a stop signal (StopRequested) or a stray Ctrl-C
            outcome = generator.outcome if generator is not None else outcome
            outcome.interrupted = True
            outcome.aborted_reason = outcome.aborted_reason or "interrupted by a stop signal"
        except Exception as err:
            # The harness itself failed mid-run: keep what was measured, say so, then report.
            crash = err
            outcome = generator.outcome if generator is not None else outcome
            outcome.aborted_reason = f"harness error: {type(err).__name__}: {err}"
        with signals.writing():
            try:
                summary = finish(
                    spec,
                    writer,
                    plan.out,
                    info,
                    outcome,
                    counted,
                    telemetry,
                    metrics_before,
                    view.warn,
                    plan.percentiles,
                    plan.routing,
                )
            except Exception:
                manifest["status"] = "failed"  # the journals stay: the run is recoverable
                writer.write_manifest(manifest)
                raise
            worker_errors = generator.worker_errors if generator is not None else []
            summary.run.worker_errors = list(worker_errors)
            summary.workers = Workers.model_validate(choice.to_dict())
            summary.load = load_applied(spec, choice.used, plan.load_note, plan.workload_pattern)
            health = generator.health if generator is not None else []
            workers_health = [WorkerHealth.model_validate(h) for h in health]
            summary.client = ClientHealth.model_validate(client_health(workers_health))
            # summary.json first: a manifest that says how the run ended always has it.
            writer.finalize(summary)
            manifest["status"] = "failed" if crash is not None else _status(outcome)
            writer.write_manifest(manifest)
    if crash is not None:
        view.say(f"results so far: {plan.out}")
        raise crash
    return RunResult(
        plan.out, _exit_code(outcome, summary, signals), manifest["status"], summary, manifest
    )


def _exit_code(outcome: ReplayOutcome, summary: Summary, signals: StopSignals) -> int:
    if outcome.interrupted:
        return signals.exit_code or EXIT_INTERRUPTED
    failed = summary.requests_failed or summary.run.worker_errors
    if failed or outcome.aborted_reason or outcome.sessions_failed:
        return EXIT_FAILED_REQUESTS
    return EXIT_OK
