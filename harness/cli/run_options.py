"""The options of `harness run` (shared with `harness sweep`) and how they override a workload."""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from harness.cli.common import add_workload_args, number_in, option_errors, out_dir
from harness.errors import ConfigError
from harness.run.prepare import DEFAULT_CALIBRATION
from harness.server_process import DEFAULT_STARTUP_TIMEOUT_S
from harness.summary import DEFAULT_PERCENTILES, describe_arrivals
from harness.telemetry.dcgm import exporter_url
from harness.telemetry.steady import STEADY_FRAC, STEADY_MIN_S
from harness.tools.sandbox import require_sandbox
from harness.workload.limits import MAX_LOAD_WORKERS, MAX_SEED
from harness.workload.spec import ROUTING_POLICIES, WorkloadSpec

MAX_START_TIMEOUT_S = 86_400.0
"""A day: longer than any start, short of a timeout that never comes."""


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """Where the server comes from: embedded (default), `--model` launch, `--server` attach."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--server",
        metavar="URL",
        action="append",
        help="attach to a running server; repeated: replicas of one deployment, each request "
        "routed to one of them (--routing; the workload's `servers:` list is used where none "
        "is given)",
    )
    group.add_argument("--model", help="launch `vllm serve MODEL` (needs vLLM installed)")
    parser.add_argument(
        "--api-key-env",
        default="HARNESS_API_KEY",
        help="environment variable holding the server's API key (never written to results)",
    )
    parser.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra `vllm serve` argument for a launched or embedded server (repeatable; "
        "`--vllm-arg --enforce-eager` works, and one value may hold several words, split as "
        "a shell would: --vllm-arg '--max-model-len 2048')",
    )
    parser.add_argument(
        "--routing",
        choices=ROUTING_POLICIES,
        default=None,
        help="how requests are spread over several replicas: round-robin (in turn), "
        "least-outstanding (the fewest in flight from this load worker), session-affinity "
        "(a session stays on one replica, as a prefix-cache-aware router would place it); "
        "default: the workload's `routing`, else round-robin",
    )
    add_start_timeout_arg(parser)


def add_start_timeout_arg(parser: argparse.ArgumentParser) -> None:
    """`--server-start-timeout-s`: how long a server the harness starts may take to serve."""
    parser.add_argument(
        "--server-start-timeout-s",
        type=number_in(0, MAX_START_TIMEOUT_S, low_open=True),
        default=DEFAULT_STARTUP_TIMEOUT_S,
        metavar="S",
        help="seconds a launched or embedded server may take to serve before the start counts "
        f"as failed (default {DEFAULT_STARTUP_TIMEOUT_S:g}; a first start that downloads or "
        "compiles the model may need more)",
    )


def split_vllm_args(values: Sequence[str]) -> tuple[str, ...]:
    """Each `--vllm-arg` value split into words as a shell would (`--max-model-len 2048` is
    two arguments); ConfigError for unbalanced quotes."""
    words: list[str] = []
    for value in values:
        try:
            words.extend(shlex.split(value))
        except ValueError as err:
            raise ConfigError(f"--vllm-arg {value!r}: {err}") from None
    return tuple(words)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Every option of `harness run`: the workload, the server, the output and the load."""
    add_workload_args(p)
    add_server_args(p)
    p.add_argument(
        "--out", type=out_dir, default=None, help="run directory (default results/NAME-TIME)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing finished run")
    p.add_argument(
        "--rate",
        type=float,
        help="sessions per second, Poisson arrivals as `vllm bench serve --request-rate` "
        "(constant with --pattern constant or a constant workload); on a trace workload it "
        "replaces the trace's own timestamps, and the run says so (console and summary.load)",
    )
    p.add_argument("--concurrency", type=int, help="closed-loop concurrent sessions")
    add_load_options(p)
    add_answer_options(p)


def add_answer_options(p: argparse.ArgumentParser) -> None:
    """What a run writes at its end besides its tables and summary: the reports, CSV, and
    which percentiles its latency figures give."""
    p.add_argument(
        "--percentiles",
        type=percentile_list,
        default=DEFAULT_PERCENTILES,
        metavar="P,P,...",
        help="percentiles of TTFT, TPOT, ITL and E2EL in the summary, console and report, "
        "each in (0, 100), as `vllm bench serve --metric-percentiles` (default "
        f"{','.join(f'{p:g}' for p in DEFAULT_PERCENTILES)}; min and max always)",
    )
    p.add_argument(
        "--csv",
        action="store_true",
        help="also write requests.csv (one row per request) and summary.csv (name, value, "
        "unit per figure) into the run directory",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not write report.md and report.html at the end of the run",
    )


def percentile_list(text: str) -> tuple[float, ...]:
    """An argparse `type` for `--percentiles`: comma-separated numbers in (0, 100), each once;
    sorted."""
    values: list[float] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise argparse.ArgumentTypeError(f"{text!r}: an empty item (give e.g. 50,90,99)")
        try:
            value = float(item.removeprefix("p"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a number") from None
        if not math.isfinite(value) or not 0 < value < 100:
            raise argparse.ArgumentTypeError(
                f"{item} is not a percentile: each must be > 0 and < 100"
            )
        if value in values:
            raise argparse.ArgumentTypeError(f"{item} is given twice")
        values.append(value)
    return tuple(sorted(values))


def timing_note(base: WorkloadSpec, merged: WorkloadSpec, args: argparse.Namespace) -> str | None:
    """What the options did to a trace workload's own timing, where they replaced it with
    rated arrivals (said on the console and kept in summary.load); None where they did not."""
    if base.arrival.pattern != "trace" or merged.arrival.pattern == "trace":
        return None
    arrival = merged.arrival
    given = [
        f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}"
        for name, value in (
            ("pattern", args.pattern),
            ("rate", args.rate),
            ("concurrency", args.concurrency),
        )
        if value is not None
    ]
    arrivals = describe_arrivals(
        arrival.pattern, rate_per_s=arrival.rate_per_s, concurrency=arrival.concurrency
    )
    return (
        f"{' '.join(given) or 'the options'} replaced the trace's own timestamps with "
        f"{arrivals} (leave --rate out to replay the trace's timing, --time-scale to scale it)"
    )


def add_load_options(p: argparse.ArgumentParser) -> None:
    """How a workload is replayed and measured, beyond its load level (shared by run and sweep)."""
    p.add_argument("--pattern", choices=("trace", "poisson", "constant", "closed"))
    p.add_argument("--time-scale", type=float, help="multiply trace gaps by F; 0 = no waiting")
    p.add_argument("--max-concurrency", type=int, help="cap on requests in flight")
    p.add_argument("--max-requests", type=int, help="stop after this many requests")
    p.add_argument("--duration", type=float, help="stop sending after this many seconds")
    p.add_argument("--warmup", type=int, help="first N requests are excluded from metrics")
    p.add_argument("--api", choices=("completions", "chat"))
    p.add_argument("--overlength", choices=("error", "clip", "skip"))
    p.add_argument(
        "--tools",
        choices=("replay", "execute"),
        help="agent tool calls: wait their recorded duration, or run the real CPU kernels",
    )
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        default=None,
        help="let --tools execute run generated code as root without the bubblewrap sandbox "
        "(per-process rlimits only; install bubblewrap instead where you can)",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        help=f"tool calibration for --tools execute (default {DEFAULT_CALIBRATION})",
    )
    p.add_argument(
        "--seed",
        type=number_in(0, MAX_SEED, integer=True),
        default=0,
        help="seed for prompt tokens and arrivals",
    )
    p.add_argument(
        "--server-pid",
        type=number_in(0, 2**22, integer=True, low_open=True),
        default=None,
        help="pid of an attached server on this host, to sample its process tree's CPU and RSS",
    )
    p.add_argument(
        "--gpus",
        type=gpu_names,
        default=None,
        metavar="I|UUID,...",
        help="the server's GPUs on this host, by NVML index or UUID, comma-separated (default: "
        "the GPUs its processes hold, else its CUDA_VISIBLE_DEVICES); only they count in "
        "energy and power, the others are shown apart",
    )
    p.add_argument(
        "--sample-hz",
        type=number_in(0, 1000, low_open=True),
        default=10.0,
        help="telemetry sampling rate (default 10)",
    )
    p.add_argument(
        "--gpu-metrics",
        type=gpu_metrics_url,
        action="append",
        default=[],
        metavar="URL",
        help="a GPU node's DCGM exporter (http://NODE:9400/metrics; repeatable, one per node): "
        "its GPUs are the server's, their energy from their counters (source dcgm-counter), "
        "and this host's NVML GPUs are not counted; an exporter that does not answer with GPU "
        "readings stops the run before it starts",
    )
    p.add_argument(
        "--gpu-metrics-every",
        type=number_in(0, 60, low_open=True),
        default=1.0,
        metavar="S",
        help="seconds between scrapes of the DCGM exporters (default 1; an exporter refreshes "
        "its readings every --collect-interval, 30 s unless set: run it with -c 1000)",
    )
    p.add_argument(
        "--idle-baseline",
        type=number_in(0, 3600),
        default=None,
        help="seconds of idle power sampled before the load (default 3 where GPU or RAPL "
        "power is readable, else 0)",
    )
    p.add_argument(
        "--steady-frac",
        type=number_in(0, 1, low_open=True),
        default=STEADY_FRAC,
        metavar="F",
        help="the steady state's batch: running requests (server /metrics) at least F × the "
        f"run's maximum (default {STEADY_FRAC:g}); energy, power and throughput are also "
        "reported over that window",
    )
    p.add_argument(
        "--steady-min-s",
        type=number_in(0, 86400, low_open=True),
        default=STEADY_MIN_S,
        metavar="S",
        help=f"the shortest steady window in seconds (default {STEADY_MIN_S:g})",
    )
    p.add_argument(
        "--workers",
        type=load_workers,
        default=None,
        metavar="N|auto",
        help="load-generating worker processes, each with its own event loop (default: the "
        "workload's client.workers, auto: from the expected stream rate and the free cores)",
    )
    p.add_argument(
        "--ray",
        type=ray_address,
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run the load workers as Ray actors on a cluster: auto (the one ray.init finds, "
        "the default), local (one started for the run), HOST:PORT or ray://HOST:PORT; every "
        "node needs this harness installed (pip install 'harness[ray]')",
    )
    p.add_argument(
        "--ray-placement",
        type=ray_placement,
        default=None,
        metavar="spread|per-node|per-cores:N",
        help="where the Ray actors go: spread (--workers actors, auto: one per node, spread "
        "over the nodes; the default), per-node (one on each node) or per-cores:N (one per N "
        "CPUs of the cluster, holding N each)",
    )
    p.add_argument(
        "--prompt-salt",
        type=number_in(0, MAX_SEED, integer=True),
        default=None,
        help="salt of the prompts' leading tokens (default: random per run, so runs on one "
        "server never share prefix-cache entries; the manifest records it)",
    )


def gpu_metrics_url(text: str) -> str:
    """An argparse `type` for `--gpu-metrics`: an exporter's URL (`node:9400` is enough)."""
    try:
        return exporter_url(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def gpu_names(text: str) -> tuple[str, ...]:
    """An argparse `type` for `--gpus`: comma-separated NVML indices or GPU UUIDs (GPU-...),
    each once; whether this host has them is checked before the run starts."""
    names: list[str] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            raise argparse.ArgumentTypeError(f"{text!r}: an empty item (give e.g. 2,5)")
        if not (item.isdigit() or item.upper().startswith(("GPU-", "MIG-"))):
            raise argparse.ArgumentTypeError(
                f"{item!r} is neither a GPU index nor a UUID (GPU-...; `nvidia-smi -L` lists them)"
            )
        if item in names:
            raise argparse.ArgumentTypeError(f"{item} is given twice")
        names.append(item)
    return tuple(names)


def ray_address(text: str) -> str:
    """An argparse `type` for `--ray`: auto, local, HOST:PORT or ray://HOST:PORT."""
    value = text.strip()
    if value.lower() in ("auto", "local"):
        return value.lower()
    host, _, port = value.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Ray address (auto, local, HOST:PORT or ray://HOST:PORT)"
        )
    return value


def ray_placement(text: str) -> tuple[Literal["spread", "per-node", "per-cores"], int]:
    """An argparse `type` for `--ray-placement`: spread, per-node or per-cores:N."""
    value = text.strip().lower()
    if value == "spread":
        return "spread", 1
    if value == "per-node":
        return "per-node", 1
    kind, _, cores = value.partition(":")
    if kind == "per-cores" and cores.isdigit() and 1 <= int(cores) <= 1024:
        return "per-cores", int(cores)
    raise argparse.ArgumentTypeError(
        f"{text!r}: choose spread, per-node or per-cores:N (N CPUs per actor, 1 to 1024)"
    )


def load_workers(text: str) -> int | Literal["auto"]:
    """An argparse `type` for `--workers`: `auto` or a count from 1 to MAX_LOAD_WORKERS."""
    if text.strip().lower() == "auto":
        return "auto"
    return int(number_in(1, MAX_LOAD_WORKERS, integer=True)(text))


_OPTION_DESTS: dict[tuple[str, ...], str] = {
    ("arrival", "pattern"): "pattern",
    ("arrival", "time_scale"): "time_scale",
    ("arrival", "rate_per_s"): "rate",
    ("arrival", "concurrency"): "concurrency",
    ("limits", "max_requests"): "max_requests",
    ("limits", "max_concurrency"): "max_concurrency",
    ("limits", "duration_s"): "duration",
    ("limits", "warmup_requests"): "warmup",
    ("request", "api"): "api",
    ("request", "overlength"): "overlength",
    ("tools", "mode"): "tools",
    ("tools", "calibration"): "calibration",
}
"""The workload keys apply_overrides sets, and the argparse dest of the option behind each."""


def apply_overrides(spec: WorkloadSpec, args: argparse.Namespace) -> WorkloadSpec:
    """Command-line options over the workload file's values."""
    if args.rate is not None and args.concurrency is not None:
        raise ConfigError("--rate (open loop) and --concurrency (closed loop) exclude each other")
    arrival: dict[str, Any] = {}
    if args.time_scale is not None:
        arrival["time_scale"] = args.time_scale
    pattern = args.pattern
    if args.rate is not None:
        arrival["rate_per_s"] = args.rate
        if pattern is None and spec.arrival.pattern != "closed":
            # A rate makes a trace replay open-loop Poisson; a rated pattern keeps its kind.
            rated = spec.arrival.pattern in ("poisson", "constant")
            pattern = spec.arrival.pattern if rated else "poisson"
    if args.concurrency is not None:
        arrival["concurrency"] = args.concurrency
        pattern = pattern or "closed"
    if pattern is not None:
        arrival["pattern"] = pattern
    effective = pattern or spec.arrival.pattern
    if args.rate is not None and effective not in ("poisson", "constant"):
        raise ConfigError(f"--rate needs a poisson or constant pattern, not {effective!r}")
    if args.concurrency is not None and effective != "closed":
        raise ConfigError(f"--concurrency needs the closed pattern, not {effective!r}")
    limits: dict[str, Any] = {}
    for key, value in (
        ("max_requests", args.max_requests),
        ("max_concurrency", args.max_concurrency),
        ("duration_s", args.duration),
        ("warmup_requests", args.warmup),
    ):
        if value is not None:
            limits[key] = value
    request: dict[str, Any] = {}
    if args.api is not None:
        request["api"] = args.api
    if args.overlength is not None:
        request["overlength"] = args.overlength
    tools: dict[str, Any] = {}
    if getattr(args, "tools", None) is not None:
        tools["mode"] = args.tools
    if getattr(args, "calibration", None) is not None:
        tools["calibration"] = args.calibration
    if getattr(args, "unsafe_no_sandbox", None):
        tools["unsafe_no_sandbox"] = True
    data = spec.model_dump()
    data["tools"].update(tools)
    data["arrival"].update(arrival)
    data["limits"].update(limits)
    data["request"].update(request)
    try:
        merged = WorkloadSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(option_errors(err, _OPTION_DESTS, args)) from None
    if merged.tools.mode == "execute":  # before any server starts
        require_sandbox(merged.tools.unsafe_no_sandbox)
    return merged
