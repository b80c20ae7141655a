"""What a run settles before its load: the workload checked without a server, the replay
options and counted plan against the server, the tokenizer, the chat renderer and the tools."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.client import ClientOptions, chat_overhead_tokens
from harness.errors import ConfigError
from harness.replay import ReplayOptions, preflight
from harness.results import check_run_dir
from harness.run.plan import RunPlan
from harness.server import ServerInfo
from harness.telemetry.attribution import host_gpus
from harness.telemetry.dcgm import check_exporters
from harness.tools.calibrate import Calibration
from harness.tools.runner import KNOWN_TOOL_KINDS, ExecuteTools, ReplayTools
from harness.tools.workers import tool_workers
from harness.workload.detect import detect_format
from harness.workload.formats import RECORDED_FORMATS
from harness.workload.model import Session, Step
from harness.workload.prompts import PromptBuilder, chat_content
from harness.workload.recorded import RecordedSplit
from harness.workload.source import open_source
from harness.workload.spec import WorkloadSpec
from harness.workload.tokenizer import TokenSpace, load_token_space

DEFAULT_CALIBRATION = Path("results") / "tool-calibration.json"

_LOADED_KEPT = 4
"""Tokenizers and calibrations kept once loaded: the check before the server loads them,
the run (and each point of a sweep) reuses them instead of loading again."""


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of a local file, so a file changed since it was loaded is loaded
    again; None where there is no such file (a hub tokenizer's name)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=_LOADED_KEPT)
def _calibration(path: Path, stamp: tuple[int, int] | None) -> Calibration:
    return Calibration.load(path)


def load_calibration(path: Path) -> Calibration:
    """The calibration at `path`, read once per process while the file is unchanged
    (ConfigError naming the file where it is unreadable or invalid; not kept then)."""
    return _calibration(path, _file_stamp(path))


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
    spec: WorkloadSpec, now_ns: Callable[[], int], seed: int, workers: int | None = None
) -> ReplayTools | ExecuteTools:
    """The workload's tool runner: replayed waits, or real kernels sized by a calibration
    in `workers` processes (default: the workload's `tools.workers`)."""
    path = calibration_path(spec)
    if path is None:
        return ReplayTools(now_ns)
    if workers is None:
        workers, _ = tool_workers(spec.tools.workers)
    return ExecuteTools(
        load_calibration(path),
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


def tokenizer_name(plan: RunPlan, info: ServerInfo) -> str:
    """Where prompt ids come from: the plan's tokenizer, else the server's model."""
    return str(plan.tokenizer or info.model_root or info.model)


@functools.lru_cache(maxsize=_LOADED_KEPT)
def _token_space(name: str, api: str, stamp: tuple[int, int] | None) -> TokenSpace:
    space = load_token_space(name)
    return space.stable_words() if api == "chat" else space


def open_token_space(name: str, api: str) -> TokenSpace:
    """The prompt token space of tokenizer `name`; chat prompts use words that are one token
    wherever they stand. Loaded once per process (a hub tokenizer costs seconds and a round
    trip): the check before the server and the run share it, while a local file is unchanged."""
    local = Path(name)
    file = local / "tokenizer.json" if local.is_dir() else local
    return _token_space(name, api, _file_stamp(file))


def chat_overhead(space: TokenSpace, opts: ClientOptions) -> int:
    """Prompt tokens the server's chat template adds around a prompt, measured once."""
    probe = PromptBuilder(space, seed=0, salt=0).session(0)
    words = probe.next_prompt(Step(new_input_tokens=32, output_tokens=0))
    return asyncio.run(chat_overhead_tokens(opts, lambda n: chat_content(space, words[:n])))


def chat_renderer(space: TokenSpace, overhead: int) -> Callable[[list[int]], str]:
    """Token-exact chat text: each prompt of N ids becomes content of N − overhead
    single-token words."""
    return lambda ids: chat_content(space, ids[: max(0, len(ids) - overhead)])


def sessions(plan: RunPlan, counter: Any) -> Iterator[Session]:
    """The workload's sessions, lengths of text counted by `counter`."""
    return open_source(plan.spec.source, format_override=plan.trace_format, token_counter=counter)


def replay_options(plan: RunPlan, info: ServerInfo) -> ReplayOptions:
    """How the workload is replayed against this server."""
    spec = plan.spec
    return ReplayOptions(
        pattern=spec.arrival.pattern,
        time_scale=spec.arrival.time_scale,
        rate_per_s=spec.arrival.rate_per_s,
        concurrency=spec.arrival.concurrency,
        max_concurrency=spec.limits.max_concurrency,
        max_requests=spec.limits.max_requests,
        duration_s=spec.limits.duration_s,
        warmup_requests=spec.limits.warmup_requests,
        seed=plan.seed,
        max_model_len=info.max_model_len,
        overlength=spec.request.overlength,
        on_tool_failure=spec.tools.on_failure,
    )


def counted_plan(
    plan: RunPlan,
    opts: ReplayOptions,
    info: ServerInfo,
    space: TokenSpace,
    checked: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The counted plan against this server (fails on over-length requests under the `error`
    policy). `checked`, the plan `check_workload` counted before the server, is reused where
    every request fits this server: no second pass."""
    fits_all = checked is not None and (
        info.max_model_len is None or checked["max_request_tokens"] <= info.max_model_len
    )
    reuse = checked is not None and fits_all
    counted = dict(checked) if checked is not None and reuse else _preflight(plan, space, opts)
    if counted["overlength_requests"] and opts.overlength == "error":
        raise ConfigError(
            f"{counted['overlength_requests']} of {counted['requests']} requests exceed the "
            f"server's context window of {info.max_model_len} tokens (prompt + output); "
            "pass --overlength clip or --overlength skip, or serve a longer context"
        )
    return counted


class _CharCounter:
    """Counts characters as tokens: enough to walk a text trace's structure before the
    server's tokenizer is at hand (lengths are counted again against the server)."""

    def __init__(self) -> None:
        self.used = False

    def count(self, text: str) -> int:
        self.used = True
        return len(text)


def check_workload(plan: RunPlan) -> dict[str, Any] | None:
    """What can be checked before a server starts, so bad input fails in seconds, not after
    a minute of server start-up: the run directory can take the run, the DCGM exporters
    named answer with GPU readings, execute mode's tool
    calibration is there and readable, a given tokenizer loads (both are kept, so the run
    does not load them again), every session's steps and tool calls are well formed and
    every prompt can be built (hash ids), and the GPUs `--gpus` names are this host's.
    Returns the counted plan where its lengths need no tokenizer (a trace of token counts,
    a generator), for the run to reuse; None for a text trace."""
    check_run_dir(plan.out, overwrite=plan.overwrite)
    if plan.gpu_metrics:
        check_exporters(plan.gpu_metrics)
    check_gpus(plan)
    calibration = calibration_path(plan.spec)
    if calibration is not None:
        load_calibration(calibration)  # kept: the run's tools reuse it
    if plan.tokenizer is not None:
        open_token_space(str(plan.tokenizer), plan.spec.request.api)  # kept for the run
    opts = ReplayOptions(max_requests=plan.spec.limits.max_requests, seed=plan.seed)
    counter = _CharCounter()
    counted = _preflight(plan, counter, opts)
    return None if counter.used else counted


def check_gpus(plan: RunPlan) -> None:
    """The GPUs the plan names (`--gpus`) are this host's; ConfigError naming the option
    (also where DCGM exporters name the server's GPUs: then this host's are not counted)."""
    if plan.gpus is None:
        return
    if plan.gpu_metrics:
        raise ConfigError(
            "--gpus names GPUs of this host, but with --gpu-metrics the server's GPUs are the "
            "DCGM exporters' and this host's are not counted: give one or the other"
        )
    try:
        host_gpus(plan.gpus)
    except ValueError as err:
        raise ConfigError(f"--gpus {','.join(plan.gpus)}: {err}") from None


def _preflight(plan: RunPlan, counter: Any, opts: ReplayOptions) -> dict[str, Any]:
    """`preflight`'s counts, with the recording's own split (`recorded_split`: its LLM, tool
    and human time, tool calls by kind, unmapped ones by name) where the trace times itself."""
    source = plan.spec.source
    fmt = plan.trace_format or source.format
    if source.trace is not None and fmt is None:
        fmt = detect_format(source.trace)
    if fmt not in RECORDED_FORMATS:
        return dict(preflight(sessions(plan, counter), opts, KNOWN_TOOL_KINDS))
    recorded = RecordedSplit()
    counted: dict[str, Any] = dict(
        preflight(recorded.tap(sessions(plan, counter)), opts, KNOWN_TOOL_KINDS)
    )
    split = recorded.to_json_dict()
    del split["sessions"], split["sessions_listed"]
    counted["recorded_split"] = split
    return counted
