"""`harness run`: turn the command line into a RunPlan, execute it, print its summary."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.cli.common import resolve_workload, with_source_flags
from harness.cli.console import make_console
from harness.cli.run_answers import write_answers
from harness.cli.run_options import add_run_args, apply_overrides, split_vllm_args, timing_note
from harness.cli.run_view import ConsoleView
from harness.errors import ConfigError
from harness.report import render_console, run_notes
from harness.results import SERVER_LOG_FILE
from harness.run.engine import RunResult, execute
from harness.run.plan import RayChoice, RunPlan, ServerChoice
from harness.run.prepare import check_workload
from harness.run.ray_pool import require_ray
from harness.summary import DEFAULT_PERCENTILES
from harness.telemetry.steady import STEADY_FRAC, STEADY_MIN_S, SteadyRule
from harness.workload.spec import WorkloadSpec


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


def server_choice(args: argparse.Namespace, spec: WorkloadSpec) -> ServerChoice:
    """`--server URL` attaches (repeated: to replicas), `--model M` launches vLLM; neither
    attaches to the workload's `servers:`, or uses the embedded server where it has none."""
    urls = tuple(args.server or ())
    if not urls and not args.model:
        urls = tuple(spec.servers)
    return ServerChoice(
        urls=urls,
        model=args.model or None,
        api_key_env=args.api_key_env,
        vllm_args=split_vllm_args(args.vllm_arg),
        start_timeout_s=args.server_start_timeout_s,
    )


def ray_choice(args: argparse.Namespace) -> RayChoice | None:
    """`--ray [ADDRESS]` and `--ray-placement` as the plan's RayChoice (None: no Ray)."""
    address = getattr(args, "ray", None)
    placement = getattr(args, "ray_placement", None)
    if address is None:
        if placement is not None:
            raise ConfigError("--ray-placement places Ray actors: give --ray too")
        return None
    require_ray()  # the install hint before anything else
    if placement is None:
        return RayChoice(address=address)
    return RayChoice(address=address, placement=placement[0], cores=placement[1])


def run_plan(args: argparse.Namespace, spec: WorkloadSpec, out: Path) -> RunPlan:
    """The plan the command line describes for `spec`, written to `out`."""
    return RunPlan(
        spec=spec,
        out=out,
        trace_format=args.format,
        tokenizer=args.tokenizer,
        seed=args.seed,
        prompt_salt=args.prompt_salt,
        overwrite=args.overwrite,
        sample_hz=args.sample_hz,
        idle_baseline_s=args.idle_baseline,
        server_pid=args.server_pid,
        gpu_metrics=tuple(dict.fromkeys(getattr(args, "gpu_metrics", None) or ())),
        gpu_metrics_every_s=getattr(args, "gpu_metrics_every", 1.0),
        gpus=getattr(args, "gpus", None),
        workers=getattr(args, "workers", None),
        ray=ray_choice(args),
        server_local=server_choice(args, spec).local,
        routing=getattr(args, "routing", None) or spec.routing,
        command=tuple(sys.argv),
        percentiles=getattr(args, "percentiles", DEFAULT_PERCENTILES),
        steady=SteadyRule(
            getattr(args, "steady_frac", STEADY_FRAC), getattr(args, "steady_min_s", STEADY_MIN_S)
        ),
    )


def show_result(result: RunResult, view: ConsoleView, show_summary: bool = True) -> None:
    """The summary table (unless a sweep prints its own), the run's notes and where it is."""
    if result.summary is None:
        return
    if show_summary and result.manifest is not None:
        render_console(result.summary, result.manifest, view.console)
    for note in run_notes(result.summary):
        view.say(f"note: {note}")
    view.say(f"results: {result.out}")


def run(args: argparse.Namespace) -> int:
    """Handler of `harness run`."""
    base = with_source_flags(resolve_workload(args.workload, args.format), args)
    spec = apply_overrides(base, args)
    note = timing_note(base, spec, args)
    plan = replace(
        run_plan(args, spec, args.out or _default_out(spec)),
        load_note=note,
        workload_pattern=base.arrival.pattern,
    )
    checked = check_workload(plan)
    view = ConsoleView(make_console())
    if note is not None:
        view.say(f"note: {note}")
    server = server_choice(args, spec).server(
        progress=view.say, log_path=plan.out / SERVER_LOG_FILE
    )
    result = execute(plan, server, view, checked=checked)
    show_result(result, view)
    write_answers(
        result.out, result.summary, view.say, view.warn, report=not args.no_report, csv=args.csv
    )
    return result.exit_code
