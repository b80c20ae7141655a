"""`harness sweep`: run a workload at rising load on one server, find the highest load whose
goodput meets the SLO, and write `capacity.json`, the calibration of one hardware generation."""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import shlex
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from harness.capacity import (
    CAPACITY_FILE,
    capacity_block,
    capacity_document,
    capacity_points,
    failed_point,
    lower_loads,
    mean_context_tok,
    point_figures,
    refine_load,
    stop_reason,
)
from harness.cli.common import (
    add_workload_args,
    option_errors,
    resolve_workload,
    with_source_flags,
)
from harness.cli.console import literal_printer, make_console, rule
from harness.cli.run_answers import write_answers, write_or_warn
from harness.cli.run_cmd import ray_choice, run_plan, server_choice, show_result
from harness.cli.run_options import (
    add_answer_options,
    add_load_options,
    add_server_args,
    apply_overrides,
    timing_note,
)
from harness.cli.run_view import ConsoleView
from harness.cli.sweep_generations import add_generation_args, generations_sweep
from harness.errors import ConfigError, ResultsError
from harness.fleet.catalog import (
    catalog_name,
    load_catalog,
    match_accelerator,
    unknown_accelerator,
)
from harness.model_shape import model_shape
from harness.report import print_sections
from harness.results import SERVER_LOG_FILE, RunReader, write_run_file
from harness.run.engine import EXIT_INTERRUPTED, execute
from harness.run.plan import RunPlan
from harness.run.prepare import check_workload
from harness.run.ray_pool import open_cluster
from harness.run.stop_signals import StopRequested, stop_signals
from harness.run_summary import read_summary
from harness.server import ServerInfo
from harness.summary import Summary
from harness.sweep_report import (
    LOAD_FLAGS,
    STOP_REASONS,
    format_loads,
    ladder_section,
    lower_loads_note,
    window_text,
    write_sweep_report,
)
from harness.telemetry.cpu import host_inventory
from harness.telemetry.dcgm import dcgm_inventory
from harness.telemetry.gpu import gpu_inventory
from harness.workload.slo import Slo
from harness.workload.spec import WorkloadSpec


def _loads(text: str, kind: type[float] | type[int], flag: str) -> list[float]:
    """A comma-separated list of positive, strictly rising loads."""
    try:
        values = [float(kind(v)) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ConfigError(f"{flag}: every load must be positive and finite, got {text!r}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ConfigError(f"{flag}: loads must rise, got {text!r}")
    return values


def add_parser(sub: Any) -> None:
    """Register `harness sweep`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "sweep", help="find a server's capacity at the workload's SLO (capacity.json)"
    )
    add_workload_args(p)
    add_server_args(p)
    levels = p.add_mutually_exclusive_group(required=True)
    levels.add_argument("--rates", help="open-loop session rates per second, e.g. 1,2,4,8")
    levels.add_argument("--concurrencies", help="closed-loop concurrent sessions, e.g. 1,4,16")
    p.add_argument("--out", type=Path, default=None, help="sweep directory (default results/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep")
    p.add_argument(
        "--slo-attainment",
        type=float,
        default=0.9,
        help="fraction of requests that must meet the SLO for a load to count (default 0.9)",
    )
    p.add_argument("--slo-ttft-ms", type=float, help="TTFT SLO (overrides the workload's)")
    p.add_argument("--slo-tpot-ms", type=float, help="TPOT SLO (overrides the workload's)")
    p.add_argument("--slo-e2el-ms", type=float, help="E2E latency SLO (overrides the workload's)")
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="accelerators the server uses (default: the GPUs --gpus names, else the server's "
        "GPUs as its first point tells them, else every GPU NVML sees, or 1 for a CPU server)",
    )
    p.add_argument(
        "--accelerator", default=None, help="catalog name of the GPU (default: matched by name)"
    )
    p.add_argument("--catalog", type=Path, default=None, help="extra accelerator catalog YAML")
    p.add_argument(
        "--refine",
        type=int,
        default=2,
        help="extra loads bisecting between the capacity load and the next load that missed "
        "the SLO (default 2; 0 = only the given loads)",
    )
    p.add_argument(
        "--no-stop-early",
        action="store_true",
        help="run every load even once the server is saturated",
    )
    add_load_options(p)
    add_answer_options(p)
    add_generation_args(p)
    p.set_defaults(handler=sweep)


def _with_slo(spec: WorkloadSpec, args: argparse.Namespace) -> WorkloadSpec:
    """The workload with the command line's SLO thresholds over its own; one is required."""
    slo = spec.slo.model_dump() if spec.slo is not None else {}
    for key, value in (
        ("ttft_ms", args.slo_ttft_ms),
        ("tpot_ms", args.slo_tpot_ms),
        ("e2el_ms", args.slo_e2el_ms),
    ):
        if value is not None:
            slo[key] = value
    if not any(v is not None for v in slo.values()):
        raise ConfigError(
            f"{args.workload}: a sweep needs an SLO: give the workload an `slo:` block or "
            "pass --slo-ttft-ms / --slo-tpot-ms / --slo-e2el-ms"
        )
    data = spec.model_dump()
    data["slo"] = slo
    try:
        return WorkloadSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(option_errors(err, _SLO_OPTIONS, args)) from None


_SLO_OPTIONS: dict[tuple[str, ...], str] = {
    ("slo", "ttft_ms"): "slo_ttft_ms",
    ("slo", "tpot_ms"): "slo_tpot_ms",
    ("slo", "e2el_ms"): "slo_e2el_ms",
}
"""The workload keys the SLO options set, and each option's argparse dest."""


def point_plan(
    template: RunPlan, base: WorkloadSpec, args: argparse.Namespace, load_kind: str, load: float
) -> RunPlan:
    """The plan of one load point: the workload at that rate or concurrency, in its folder
    under the template's; where the load replaced a trace's own timing, the plan says how
    (the point's console note and summary.load), as `harness run --rate` does."""
    point_args = copy.copy(args)
    point_args.rate = load if load_kind == "rate" else None
    point_args.concurrency = int(load) if load_kind == "concurrency" else None
    spec = apply_overrides(base, point_args)
    plan = template.with_spec(spec, template.out / _point_name(load_kind, load))
    return replace(
        plan,
        load_note=timing_note(base, spec, point_args),
        workload_pattern=base.arrival.pattern,
    )


def _point_summary(run_dir: Path) -> Summary | None:
    """A point's summary, recovered from its journals where it did not finish; None where the
    point left no run at all."""
    try:
        return read_summary(RunReader(run_dir))
    except ResultsError:
        return None


def _point_name(kind: str, load: float) -> str:
    return f"{kind}-{load:g}"


def _devices(args: argparse.Namespace, gpus: dict[str, Any]) -> tuple[int, str, str | None]:
    """(device count, 'gpu' or 'cpu', catalog accelerator name or None)."""
    catalog = load_catalog(args.catalog)
    named = None if args.accelerator is None else catalog_name(args.accelerator, catalog)
    if args.accelerator is not None and named is None:
        why = unknown_accelerator(args.accelerator, catalog)
        raise ConfigError(f"--accelerator {why} (add it with --catalog)")
    if args.devices is not None and args.devices < 1:
        raise ConfigError(f"--devices must be at least 1, got {args.devices}")
    found = gpus.get("gpus") or [] if gpus.get("available") else []
    kind = "gpu" if found or named else "cpu"
    named_gpus = getattr(args, "gpus", None)
    count = args.devices or (len(named_gpus) if named_gpus else len(found) if found else 1)
    accelerator = named
    if accelerator is None and found:
        accelerator = match_accelerator(str(found[0].get("name", "")), catalog)
    return count, kind, accelerator


def sweep(args: argparse.Namespace) -> int:
    """Handler of `harness sweep`: one connection to a Ray cluster (`--ray`) serves every
    point, made before the sweep's directory; with --generation, one sweep per generation's
    server (harness.run.generations)."""
    if args.generation:
        return generations_sweep(args, lambda: sweep_inputs(args)[2])
    choice = ray_choice(args)
    with open_cluster(choice) if choice is not None else nullcontext():
        return _sweep(args)


def sweep_inputs(args: argparse.Namespace) -> tuple[str, list[float], WorkloadSpec]:
    """The sweep's load kind (rate or concurrency), its loads and its workload with the SLO,
    checked (ConfigError naming the flag)."""
    if args.refine < 0:
        raise ConfigError(f"--refine must be 0 or more, got {args.refine}")
    if not 0 < args.slo_attainment <= 1:
        raise ConfigError(f"--slo-attainment must be in (0, 1], got {args.slo_attainment}")
    load_kind = "rate" if args.rates is not None else "concurrency"
    loads = (
        _loads(args.rates, float, "--rates")
        if args.rates is not None
        else _loads(args.concurrencies, int, "--concurrencies")
    )
    base = _with_slo(with_source_flags(resolve_workload(args.workload, args.format), args), args)
    return load_kind, loads, base


def _server_named(info: ServerInfo) -> dict[str, Any]:
    """Which server a sweep measured, for capacity.json: a calibration read back later (or
    compared) says what it was taken of. URLs carry no credentials (ServerInfo keeps them
    apart); `launch_kind` is how the harness reached it (attached, replicas, embedded,
    launched)."""
    return {
        "urls": list(info.urls),
        "model": info.model,
        "server_version": info.server_version,
        "launch_kind": info.launch.get("kind"),
    }


def _sweep(args: argparse.Namespace) -> int:
    console = make_console()
    load_kind, loads, base = sweep_inputs(args)
    out: Path = args.out or Path("results") / f"sweep-{base.name}"
    if (out / CAPACITY_FILE).exists() and not args.overwrite:
        raise ConfigError(f"{out}: a sweep is already there; pass --overwrite or another --out")

    point_dir = out / "points"
    template = run_plan(args, base, point_dir)

    def point(load: float) -> tuple[float, RunPlan]:
        return load, point_plan(template, base, args, load_kind, load)

    specs = [point(load) for load in loads]
    checked = check_workload(specs[0][1])
    # The server's GPUs: the DCGM exporters' where named (the GPU nodes), else this host's.
    gpus = dcgm_inventory(template.gpu_metrics) if template.gpu_metrics else gpu_inventory()
    devices, device_kind, accelerator = _devices(args, gpus)
    power_note = _power_note(gpus, devices, device_kind)
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    host = {**host_inventory(), "gpu": gpus}
    points: list[dict[str, Any]] = []
    slo = base.slo if base.slo is not None else Slo()
    status = "running"
    interrupted_code = EXIT_INTERRUPTED
    stopped: str | None = None
    model: dict[str, Any] = model_shape(None)
    server_named: dict[str, Any] | None = None

    def write(status: str) -> dict[str, Any]:
        """Rewrite capacity.json with the points so far; returns the document."""
        doc = capacity_document(
            name=out.name,
            workload=base.name,
            load_kind=load_kind,
            slo=slo,
            target_attainment=args.slo_attainment,
            points=points,
            status=status,
            stopped=stopped,
            devices=devices,
            device_kind=device_kind,
            accelerator=accelerator,
            model=model,
            host=host,
            power_note=power_note,
            server=server_named,
        )
        write_run_file(out, CAPACITY_FILE, json.dumps(doc, indent=2) + "\n")
        return doc

    view = ConsoleView(console)

    def run_point(info: ServerInfo, load: float, plan: RunPlan, title: str) -> int:
        nonlocal devices
        name = _point_name(load_kind, load)
        rule(console, f"{base.name}: {load_kind} {load:g} ({title})")
        if plan.load_note is not None:
            view.say(f"note: {plan.load_note}")
        result = execute(plan, nullcontext(info), view, checked=checked)
        show_result(result, view, show_summary=False)
        write_answers(
            plan.out, result.summary, view.say, view.warn, report=not args.no_report, csv=args.csv
        )
        # A point that stopped before its summary is recovered from its journals.
        summary = result.summary if result.summary is not None else _point_summary(plan.out)
        if summary is None:
            points.append(
                failed_point(load, f"points/{name}", f"no summary (exit {result.exit_code})")
            )
        else:
            points.append(point_figures(load, f"points/{name}", summary, args.slo_attainment))
            told = _told_devices(args, points[-1], devices)
            if told is not None:
                view.say(
                    f"note: the server's GPUs are {told} of the {devices} NVML sees (told by "
                    f"{points[-1]['gpu_attribution']}): capacity and power are per those {told}"
                )
                devices = told
        return result.exit_code

    try:
        say = literal_printer(console)
        server = server_choice(args, base).server(progress=say, log_path=out / SERVER_LOG_FILE)
        with stop_signals(say), server as info:
            model = _model(info)
            server_named = _server_named(info)
            for i, (load, plan) in enumerate(specs):
                code = run_point(info, load, plan, f"{i + 1}/{len(specs)}")
                if _interrupted(code):
                    status = "interrupted"
                    interrupted_code = code
                    break
                write(status)
                stopped = None if args.no_stop_early else stop_reason(points)
                if stopped is not None and i + 1 < len(specs):
                    why = STOP_REASONS.get(stopped, stopped)
                    console.print(f"stopping early at {load_kind} {load:g}: {why}")
                    break
                stopped = None
            for r in range(args.refine if status == "running" else 0):
                mid = refine_load(points, integer=load_kind == "concurrency")
                if mid is None:
                    break
                load, plan = point(mid)
                code = run_point(info, load, plan, f"refine {r + 1}/{args.refine}")
                if _interrupted(code):
                    status = "interrupted"
                    interrupted_code = code
                    break
                write(status)
    except StopRequested as stop:
        # A stop signal between points (or while the server started): what was measured is
        # kept, the server is stopped on the way out.
        status = "interrupted"
        interrupted_code = 128 + stop.signum
        write(status)
        _write_report(view, out, args)
        return interrupted_code
    except BaseException:
        status = "failed"  # a crash leaves what was measured, marked as such
        write(status)
        raise
    if status == "running":
        status = "finished"
    best = capacity_block(points, devices, device_kind, accelerator)["run_dir"]
    model.update(_mean_context(out / best) if best else _NO_CONTEXT)
    doc = write(status)
    print_sections([ladder_section(doc, full=False)], console)
    cap = doc["capacity"]
    if cap["capacity_tok_s"] is None:
        console.print("no load met the SLO: capacity unavailable")
    else:
        console.print(
            f"capacity at the SLO: {load_kind} {cap['load']:g}, "
            f"{cap['capacity_tok_s']:,.1f} tok/s per {device_kind} device "
            f"({cap['capacity_output_tok_s']:,.1f} output tok/s), over "
            f"{window_text(cap.get('capacity_window'))}"
        )
        nxt = cap["next_load_missed"]
        console.print(
            "a lower bound: no higher load was tried"
            if nxt is None
            else f"a lower bound: the capacity lies below {load_kind} {nxt:g}, the next load "
            "tried, which missed the SLO"
        )
        if cap["lower_loads_missed"]:
            lower = ", ".join(f"{x:g}" for x in cap["lower_loads_missed"])
            _note(console, f"lower loads missed the SLO ({lower}): a noisy server")
        if cap["power_note"]:
            _note(console, str(cap["power_note"]))
    if status == "finished":
        _suggest_lower_loads(console, doc, args, out)
    bound = [f"{p['load']:g}" for p in points if p.get("client_bound")]
    if bound:
        _note(
            console,
            f"the client may have set the pace at {load_kind} {', '.join(bound)} (see each "
            "point's summary: client); give it more --workers or cores before trusting those",
        )
    console.print(f"capacity: {out / CAPACITY_FILE}")
    _write_report(view, out, args)
    return interrupted_code if status == "interrupted" else 0


def _write_report(view: ConsoleView, out: Path, args: argparse.Namespace) -> None:
    """The sweep's own report of the points so far (unless --no-report); a failure to write
    it is a warning, as a run's is: capacity.json and the points are already written."""
    if args.no_report:
        return
    again = f"harness report {out}"
    kept = "the sweep's capacity.json and points"
    write_or_warn("report", lambda: write_sweep_report(out), again, view.say, view.warn, kept)


def _suggest_lower_loads(
    console: Console, doc: dict[str, Any], args: argparse.Namespace, out: Path
) -> None:
    """Where every load missed the SLO: the lower loads to try and the command that runs
    them (this one with the lower ladder, into a new folder beside this sweep's)."""
    text = lower_loads_note(doc)
    if text is None:
        return
    _note(console, text)
    loads = lower_loads(capacity_points(doc), integer=doc["load_kind"] == "concurrency")
    argv = getattr(args, "argv", None)
    if loads and argv is not None:
        flag = LOAD_FLAGS[doc["load_kind"]]
        command = rerun_command(argv, flag, format_loads(loads), out.with_name(f"{out.name}-lower"))
        console.print(f"  run: {shlex.join(command)}", markup=False, highlight=False)


def rerun_command(argv: list[str], flag: str, loads: str, out: Path) -> list[str]:
    """`harness` + `argv` with `flag` (--rates or --concurrencies) set to `loads` and `--out`
    set to `out` with `--overwrite`, every other option kept as given: running the suggestion
    a second time redoes the lower ladder in `out` instead of failing on the first one's."""
    command: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in (flag, "--out"):
            skip = "=" not in arg and i + 1 < len(argv)
            continue
        if arg == "--overwrite":
            continue
        command.append(arg)
    return ["harness", *command, flag, loads, "--out", str(out), "--overwrite"]


def _interrupted(code: int) -> bool:
    """Whether a point's exit code says a stop signal ended it (130 for Ctrl-C, 143 for
    SIGTERM: 128 + the signal)."""
    return code > 128


def _note(console: Console, text: str) -> None:
    """`note: TEXT`, the label in yellow, the text literal."""
    console.print(Text.assemble(("note:", "yellow"), " ", text))


def _model(info: ServerInfo) -> dict[str, Any]:
    """The served model's shape where its folder is on this host."""
    root = Path(info.model_root) if info.model_root else None
    return model_shape(root if root is not None and root.is_dir() else None, info.model)


_NO_CONTEXT: dict[str, Any] = {"mean_context_tok": None, "mean_context_source": None}


def _mean_context(run_dir: Path) -> dict[str, Any]:
    """capacity.mean_context_tok at the capacity point, from the server's `usage` lengths;
    where a request has none its trace length is used, and the source says so."""
    df = RunReader(run_dir).requests()
    reported = df["prompt_tokens"].notna()
    prompt = df["prompt_tokens"].fillna(df["prompt_tokens_expected"])
    keep = df["output_tokens"].notna() & prompt.notna()
    lengths = zip(prompt[keep].astype(float), df["output_tokens"][keep].astype(float), strict=True)
    mean = mean_context_tok(lengths)
    if mean is None:
        return dict(_NO_CONTEXT)
    estimated = int((keep & ~reported).sum())
    source = "server usage counts"
    if estimated:
        source += f"; {estimated} requests' prompt lengths from the trace (no usage)"
    return {"mean_context_tok": mean, "mean_context_source": source}


def _told_devices(args: argparse.Namespace, point: dict[str, Any], devices: int) -> int | None:
    """The server's GPU count a point's summary told, where it differs from the sweep's
    default count (every GPU NVML sees) and neither --devices nor --gpus set the count."""
    told = point.get("gpu_devices")
    if args.devices is not None or getattr(args, "gpus", None) or not told or told == devices:
        return None
    return int(told)


def _power_note(gpus: dict[str, Any], devices: int, device_kind: str) -> str | None:
    """Why GPU power can't be attributed to the server's devices, or None when it can:
    without attribution the sampler's figures are every GPU NVML sees, so a server on fewer
    of them would be charged for the others' power (a point whose summary told the server's
    GPUs counts only theirs, and capacity_block takes that instead)."""
    seen = len(gpus.get("gpus") or []) if gpus.get("available") else 0
    if device_kind != "gpu" or seen in (0, devices):
        return None
    if gpus.get("source") == "dcgm":
        return (
            f"the DCGM exporters report {seen} GPUs but the server uses {devices}: the sampled "
            "power covers every GPU, so busy_w and idle_w per device are not reported"
        )
    return (
        f"NVML sees {seen} GPUs but the server uses {devices} and which are its own could not "
        "be told: the sampled power covers every GPU, so busy_w and idle_w per device are not "
        "reported (give --gpus, or --server-pid for an attached server on this host)"
    )
