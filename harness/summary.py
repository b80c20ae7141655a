"""The schema of summary.json, defined once: every block a run's summary holds, versioned
(`schema_version`) and exported as JSON Schema (`harness schema summary`).

The run engine validates the summary it computed before writing it, and every reader
(report, compare, capacity, fleet, plots) gets a `Summary` and reads figures by attribute or
through `Summary.figures()`, so a key is spelled in one place. Blocks the harness writes
forbid unknown keys (a misspelt key is an error); blocks that carry a vendor's free-form
data (a server's /metrics phases) keep what they do not know. A summary written before the
schema was versioned has no `schema_version`: it is read as version 0 where it fits.

A version adds to the one before it, never changes a key: every key a version adds has a
default (null: not known to the harness that wrote the summary), so older summaries read
as the newer model. Version 2 added the load applied (`load`), min, max and the chosen
percentiles of each figure (`percentiles`, `Stats.min`, `Stats.max`, `Stats.percentiles`)
and implausible timings (`timing_flags`). Version 3 added GPU nodes' DCGM exporters
(`telemetry.dcgm`, `gpu_source` `dcgm-counter`/`dcgm-power`, `energy.gpu_source_note`) and
`energy.gpu_coverage_frac`. Version 4 added the steady-state window and the figures over it
(`energy.steady`). Version 5 added sub-agent sessions: how many their parents started and how
many could not be (`run.subagents_*`), and the parents' wait on them, kept out of the split
(`latency_split.subagent_wait_s`). Version 6 added which of this host's GPUs are the
server's (`telemetry.gpu_attribution`), the GPUs the energy figures count
(`energy.gpu_devices`), the other GPUs of the host apart (`energy.other_gpus`) and which
power reading each GPU's samples are (`telemetry.gpu.power_sources`). Version 7 added runs
against several replicas: the routing and each replica's figures (`servers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from harness.config_files import error_lines, read_json
from harness.errors import ConfigError, ResultsError
from harness.run.health import WorkerHealth
from harness.workload.slo import Slo
from harness.workload.spec import RoutingPolicy

SCHEMA_VERSION = 7
"""The version of summary.json this harness writes; readers accept it and older ones."""
UNVERSIONED = 0
"""The version of a summary written before `schema_version` existed."""


class _Block(BaseModel):
    """A block the harness writes: every key known, so an unknown (misspelt) one is an error.
    Numbers are finite: unavailable is null, never NaN."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        validate_assignment=True,
        validate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
    )


class _Vendor(BaseModel):
    """A block built from a vendor's data: the keys it names are checked, others are kept."""

    model_config = ConfigDict(
        extra="allow", allow_inf_nan=False, validate_assignment=True, use_attribute_docstrings=True
    )


class Stats(_Block):
    """One figure over its samples: count, mean, p50/p90/p99 (linear interpolation), min, max
    and population std, in the unit its key names; every figure null when count is 0."""

    count: NonNegativeInt
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    std: float | None
    min: float | None = None
    """Null in a summary of version 1 or older too (not computed then)."""
    max: float | None = None
    percentiles: dict[str, float | None] | None = None
    """The percentiles the run was asked for (`--percentiles`) beyond the fixed p50/p90/p99,
    by name (`p95`, `p99.9`): a value is stored once (summary.percentiles lists every one
    chosen); empty or null where the figure has only the fixed ones."""

    def percentile(self, name: str) -> float | None:
        """A percentile by name (`p95`): from the chosen ones, else the fixed p50/p90/p99."""
        if self.percentiles is not None and name in self.percentiles:
            return self.percentiles[name]
        return getattr(self, name) if name in PERCENTILE_KEYS else None


class RunBlock(_Block):
    """What was planned, sent and not, and how the replay ended. A summary recovered from
    journals knows less: what it cannot know is null."""

    requests_planned: NonNegativeInt | None
    requests_sent: NonNegativeInt
    requests_not_sent: NonNegativeInt | None = None
    requests_clipped: NonNegativeInt | None = None
    requests_skipped_overlength: NonNegativeInt | None = None
    prompt_token_mismatches: NonNegativeInt
    output_token_mismatches: NonNegativeInt
    sessions_started: NonNegativeInt | None = None
    sessions_failed: NonNegativeInt | None = None
    session_errors: list[str] | None = None
    subagents_started: NonNegativeInt | None = None
    """Sub-agent sessions started where their parents started them (at a step or an offset)."""
    subagents_without_parent: NonNegativeInt | None = None
    """Sub-agent sessions whose parent was not in the run: started at their own arrival."""
    subagents_not_started: NonNegativeInt | None = None
    """Sub-agent sessions not started: their parent ended before the step that starts them."""
    subagent_notes: list[str] | None = None
    """The first sub-agents of the two counts above, each with why."""
    worker_errors: list[str] | None = None
    """Load worker processes that died mid-run, each with why and what it lost."""
    interrupted: bool | None
    aborted_reason: str | None


class SplitShares(_Block):
    """Each row's share of the split's total (they add up to 1); null when the total is 0."""

    llm: float | None
    tool: float | None
    tool_queue: float | None
    slot_queue: float | None
    orchestration: float | None


class SumCheck(_Block):
    """The split's rows (plus the sub-agent wait) against the sessions' wall time less think
    time."""

    session_wall_less_think_s: float
    relative_error: float | None


class ToolKindSplit(_Block):
    """One tool kind's calls and its part of the split's tool and tool-queue rows."""

    calls: NonNegativeInt
    failures: NonNegativeInt
    calls_wall_s: float
    calls_wait_s: float
    calls_work_s: float
    tool_s: float
    queue_s: float
    tool_cpu_s: float | None
    share: float | None
    call_s: Stats
    limits_clamped: NonNegativeInt | None = None
    sandbox: str | None = None


class WorkloadSplit(_Block):
    """One workload's rows and shares (a run replays one workload)."""

    llm_s: float
    tool_s: float
    tool_queue_s: float
    slot_queue_s: float
    orchestration_s: float
    tool_cpu_s: float | None
    total_s: float
    cpu_share: float | None
    gpu_share: float | None
    queue_share: float | None


class LatencySplit(_Block):
    """The CPU/GPU latency split of agent sessions, in seconds summed over sessions: five
    rows that add up to the sessions' wall time less think time and sub-agent waits
    (harness.latency_split)."""

    llm_s: float
    tool_s: float
    tool_queue_s: float
    slot_queue_s: float
    orchestration_s: float
    tool_cpu_s: float | None
    think_s: float
    total_s: float
    cpu_share: float | None
    gpu_share: float | None
    queue_share: float | None
    shares: SplitShares
    subagent_wait_s: float | None = None
    """Parents' wait on the sub-agents their steps started (those steps' waits), kept out of
    the rows like think time: the sub-agents' work is in their own sessions' rows. Null in a
    summary of version 3 or older."""
    queue_note: str | None
    sum_check: SumCheck
    sessions: NonNegativeInt
    steps: NonNegativeInt
    per_tool_kind: dict[str, ToolKindSplit]
    per_workload: dict[str, WorkloadSplit]

    @property
    def queued_s(self) -> float:
        """Seconds spent in the harness's own queues (tool workers and concurrency slots)."""
        return self.tool_queue_s + self.slot_queue_s

    @property
    def tool_cpu_s_per_session(self) -> float | None:
        """Tool CPU seconds per session; null (never 0) where no tool ran or no call
        measured its CPU."""
        calls = sum(k.calls for k in self.per_tool_kind.values())
        if self.tool_cpu_s is None or not self.sessions or not calls:
            return None
        return self.tool_cpu_s / self.sessions


class SessionFigures(_Block):
    """Per-session figures of an agent run."""

    sessions: NonNegativeInt
    sessions_completed: NonNegativeInt
    session_latency_s: Stats
    steps_per_session: Stats
    tokens_per_session: Stats
    sessions_per_hour: float | None


class ServerPhase(_Vendor):
    """One request phase from the server's /metrics histograms, as a delta over the run;
    `reset` where the counters went backwards (a server restart)."""

    requests: NonNegativeInt | None = None
    total_s: float | None = None
    mean_s: float | None = None
    reset: bool = False


class ServerMetrics(_Block):
    """Server-side request phases and token counters over the run, or why they are missing."""

    available: bool
    reason: str | None = None
    phases: dict[str, ServerPhase] = Field(default_factory=dict)
    counters: dict[str, float | None] = Field(default_factory=dict)


class ReplicaFigures(_Block):
    """One replica's share of a run against several: the request figures of the requests
    routed to it (as the run's own, over its first send to its last completion), its prefix
    cache as the server counted it and as the responses' usage told it, and its /metrics
    deltas."""

    url: str
    requests_total: NonNegativeInt
    requests_completed: NonNegativeInt
    requests_failed: NonNegativeInt
    sessions: NonNegativeInt
    duration_s: float | None
    input_tokens: NonNegativeInt | None
    output_tokens: NonNegativeInt | None
    request_throughput_rps: float | None
    output_throughput_tok_s: float | None
    ttft_ms: Stats
    tpot_ms: Stats
    itl_ms: Stats
    e2el_ms: Stats
    errors: dict[str, NonNegativeInt]
    cached_prompt_tokens: NonNegativeInt | None
    """Prompt tokens the responses' usage reported as cached, over its completed requests;
    null where no response reported them."""
    cached_prompt_frac: Annotated[float, Field(ge=0, le=1)] | None
    """cached_prompt_tokens over the prompt tokens of the completed requests that reported
    cached tokens; null where none did or those prompts hold no tokens."""
    prefix_cache_hit_rate: Annotated[float, Field(ge=0, le=1)] | None
    """vllm:prefix_cache_hits / vllm:prefix_cache_queries over the run (tokens); null where
    its /metrics did not tell (the reason is in server_metrics)."""
    server_metrics: ServerMetrics


class Servers(_Block):
    """A run against several replicas of one deployment: how requests were routed, how many
    sessions went to more than one replica, and each replica's figures."""

    routing: RoutingPolicy
    sessions_on_several_replicas: NonNegativeInt
    """Sessions whose measured requests went to more than one replica (0 under
    session-affinity unless a replica was taken out)."""
    unrouted_requests: NonNegativeInt
    """Requests that name no replica: in flight on a load worker that was lost (which replica
    it sent them to went with it), or sent when every replica was out of the routing."""
    replicas: list[ReplicaFigures]


GpuSource = Literal["nvml-counter", "nvml-power", "dcgm-counter", "dcgm-power", "unavailable"]
"""Where GPU energy came from: this host's NVML or GPU nodes' DCGM exporters, by the energy
counter's deltas or (where a GPU has no counter) integrated power."""


class SteadyEnergy(_Block):
    """The steady state (harness.telemetry.steady): the longest span where the server's running
    requests stayed at or above `frac` × the run's maximum for at least `min_s`, and energy,
    power and throughput over it, beside the whole run's (which include ramp-up and drain).
    Tokens are the server's counter deltas over the window, or the client's stream chunks
    received in it (`tokens_source`), of every request the server worked on. No window:
    every figure null and `reason` says why."""

    frac: float = Field(gt=0, le=1)
    min_s: float = Field(gt=0)
    window_ns: list[int] | None = Field(min_length=2, max_length=2)
    """[start, end] on the run clock: the first and last /metrics scrape of the span."""
    duration_s: float | None
    reason: str | None
    """Why there is no steady window; null where there is one."""
    max_running_requests: float | None
    """The most requests the server's /metrics showed running in the measured window."""
    threshold_running_requests: float | None
    mean_running_requests: float | None
    """Mean running requests over the window's scrapes."""
    gpu_energy_j: float | None
    gpu_source: GpuSource
    avg_power_w: float | None
    """Average GPU power over the steady window."""
    prompt_tokens: NonNegativeInt | None
    output_tokens: NonNegativeInt | None
    tokens_source: Literal["server-counter", "client-chunks", "unavailable"]
    output_throughput_tok_s: float | None
    total_throughput_tok_s: float | None
    j_per_output_token: float | None


PowerSource = Literal["nvml-instant", "nvml-average"]
"""Which NVML reading a GPU's power samples are: NVML_FI_DEV_POWER_INSTANT, or (where the
GPU lacks that field) nvmlDeviceGetPowerUsage, a one-second average on Ampere and newer."""


class OtherGpusEnergy(_Block):
    """This host's GPUs that are not the server's, over the same window: sampled, shown
    apart, and counted in none of the server's figures."""

    devices: list[NonNegativeInt]
    """Their NVML indices."""
    gpu_energy_j: float | None
    gpu_source: GpuSource
    gpu_energy_per_device_j: dict[str, float]
    idle_power_w: float | None
    avg_power_w: float | None
    peak_power_w: float | None


class Energy(_Block):
    """Energy over the measured window (first send → last completion), from telemetry; every
    unmeasured figure null, with its source `unavailable`."""

    window_ns: list[int] = Field(min_length=2, max_length=2)
    gpu_energy_j: float | None
    gpu_source: GpuSource
    gpu_energy_per_device_j: dict[str, float]
    gpu_counter_resets: dict[str, NonNegativeInt]
    idle_power_w: float | None
    avg_power_w: float | None
    """Average GPU power over the window."""
    peak_power_w: float | None
    gpu_dynamic_energy_j: float | None
    j_per_output_token: float | None
    j_per_request: float | None
    j_per_session: float | None
    gpu_energy_while_tools_j: float | None
    tool_time_s: float
    cpu_energy_j: float | None
    cpu_source: Literal["rapl", "unavailable"]
    gpu_coverage_frac: float | None = None
    """The least share of the window any GPU's readings cover (1: all of it; less where a
    source stopped mid-run: the energy covers what was measured)."""
    gpu_source_note: str | None = None
    """Which GPUs the energy counts, in words: the DCGM exporters' (not this host's), or which
    of this host's are the server's and how that was told."""
    steady: SteadyEnergy | None = None
    """The steady-state figures beside these whole-run ones; null in a summary of version 3
    or older (not computed then)."""
    gpu_devices: list[NonNegativeInt] | None = None
    """The GPUs (NVML indices) the GPU figures count: the server's. Null: every GPU NVML
    sees, the server's not being told (telemetry.gpu_attribution says why), the DCGM
    exporters' GPUs being counted, or version 5 or older."""
    other_gpus: OtherGpusEnergy | None = None
    """Other GPUs on this host, apart; null where there are none or the server's GPUs were
    not told."""


class GpuStatus(_Block):
    """Whether NVML could be read, why not, and read failures."""

    available: bool
    reason: str | None
    devices: NonNegativeInt
    read_errors: dict[str, NonNegativeInt]
    not_supported: list[str]
    power_sources: dict[str, list[PowerSource]] | None = None
    """Per GPU index, which readings its power samples were (both where the instantaneous
    field failed now and then); null in version 5 or older."""


AttributionMethod = Literal["--gpus", "processes", "CUDA_VISIBLE_DEVICES", "unknown"]


class GpuDevice(_Block):
    """One GPU as NVML names it."""

    index: NonNegativeInt
    """NVML's index (PCI bus order; CUDA's may differ)."""
    uuid: str | None
    name: str | None


class GpuAttribution(_Block):
    """Which of this host's GPUs are the server's, and how that was told: named (`--gpus`),
    seen holding the server's processes (`processes`), from the CUDA_VISIBLE_DEVICES it was
    launched with, or `unknown` with the reason (then the figures are every GPU's)."""

    method: AttributionMethod
    reason: str | None
    """Why unknown, or what qualifies the method."""
    server_gpus: list[GpuDevice]
    other_gpus: list[GpuDevice]
    server_pid: int | None
    server_pids_on_gpus: list[int]
    """The server's processes NVML listed on a GPU."""
    first_seen_ns: dict[str, int]
    """Run-clock time each GPU was first seen holding a server process (by index)."""
    checks: NonNegativeInt
    """How many times the process lists were matched."""


class RaplStatus(_Block):
    """Whether RAPL (CPU package energy) could be read, and why not."""

    available: bool
    reason: str | None
    zones: list[str]
    problems: list[str]


class DcgmGpu(_Block):
    """One GPU a DCGM exporter reported: its UUID (the key of its energy), index on its node,
    node, model, exporter, and the Kubernetes pod using it where the exporter says."""

    uuid: str
    gpu: int | None
    host: str | None
    model_name: str | None
    url: str
    pod: str | None = None
    namespace: str | None = None


class DcgmStatus(_Block):
    """The GPU nodes' DCGM exporters (`--gpu-metrics`): which GPUs they gave, failed scrapes,
    how often their energy counters changed, and problems (each said once)."""

    urls: list[str]
    every_s: float
    """Seconds between scrapes (`--gpu-metrics-every`)."""
    available: bool
    reason: str | None
    gpus: list[DcgmGpu]
    scrapes: NonNegativeInt
    scrape_errors: dict[str, NonNegativeInt]
    refresh_s: float | None
    """Median seconds between changes of a GPU's energy counter: the exporter's own refresh
    (its --collect-interval); scrapes more frequent than it repeat the last reading."""
    problems: list[str]


class SamplerOverhead(_Block):
    """The sampler's own cost over the run."""

    cpu_s: float
    wall_s: float
    samples: float


class Telemetry(_Block):
    """What the background sampler read and what it could not, and its own cost."""

    rate_hz: float
    gpu: GpuStatus
    rapl: RaplStatus
    server_pid: int | None
    problems: list[str]
    sampler_overhead: SamplerOverhead
    sampler_cpu_pct_of_one_core: float | None
    idle_baseline_s: float
    dcgm: DcgmStatus | None = None
    """The GPU nodes' DCGM exporters, where `--gpu-metrics` named any: then their GPUs are
    the server's, and this host's NVML readings are not counted."""
    gpu_attribution: GpuAttribution | None = None
    """Which of this host's GPUs are the server's; null where NVML could not be read, where
    DCGM exporters name the server's GPUs, or in version 5 or older."""

    def unavailable_sources(self) -> list[tuple[str, str]]:
        """(source, reason) for each power source the run could not read (the GPUs are the
        DCGM exporters' where the run named any)."""
        out: list[tuple[str, str]] = []
        gpu: GpuStatus | DcgmStatus = self.dcgm if self.dcgm is not None else self.gpu
        for source, status in (("gpu", gpu), ("rapl", self.rapl)):
            if not status.available:
                out.append((source, status.reason or "unavailable"))
        return out


class Recovered(_Block):
    """Set where the run never wrote its summary: figures come from its journals."""

    from_: Literal["journals"] = Field(alias="from")
    status: str
    note: str


class ClientLimits(_Block):
    """The limits above which a run is marked client bound."""

    loop_lag_p99_ms: float
    cpu_util: float


class ClientHealth(_Block):
    """The load generator's own health (harness.run.health): per worker, the worst of each
    figure, and `client_bound` (true: the client may have set the pace; null: unknown)."""

    workers: list[WorkerHealth]
    loop_lag_p99_ms_worst: float | None
    cpu_util_max: float | None
    cpu_s_total: float | None
    limits: ClientLimits
    client_bound: bool | None
    client_bound_reasons: list[str]
    unavailable_reasons: list[str]


class Workers(_Block):
    """The load worker processes asked for, used, and why that many."""

    requested: Annotated[int, Field(ge=1)] | Literal["auto"]
    used: Annotated[int, Field(ge=1)]
    reason: str


ArrivalPattern = Literal["trace", "poisson", "constant", "closed"]


class LoadApplied(_Block):
    """The load the run applied: how sessions arrived, at what rate or concurrency, under
    which caps and limits, from how many load workers."""

    pattern: ArrivalPattern
    description: str
    """The arrivals in words (describe_arrivals): `trace timestamps × 0.5`, `Poisson arrivals
    at 5 sessions/s`."""
    time_scale: float | None
    """Trace gaps × this (0: sent as fast as the other limits allow); null off a trace."""
    rate_per_s: float | None
    """Sessions per second of Poisson or constant arrivals; null otherwise."""
    concurrency: NonNegativeInt | None
    """Closed-loop concurrent sessions; null for open-loop patterns."""
    max_concurrency: NonNegativeInt | None
    """The cap on requests in flight; null: none."""
    max_requests: NonNegativeInt | None
    duration_s: float | None
    warmup_requests: NonNegativeInt
    workers: NonNegativeInt | None
    """Load worker processes used (summary.workers says why)."""
    trace_timing_replaced: bool
    """True where the workload's own timestamps were replaced by rated arrivals."""
    note: str | None = None
    """Why and by what the workload's timing was replaced, where it was."""


def describe_arrivals(
    pattern: str,
    *,
    time_scale: float | None = None,
    rate_per_s: float | None = None,
    concurrency: int | None = None,
    max_concurrency: int | None = None,
) -> str:
    """The arrivals in words, one wording for summary.load, the console's note on a replaced
    trace timing and a comparison's settings: `trace timestamps × 0.5`, `Poisson arrivals at
    5 sessions/s`, `a closed loop of 8 concurrent sessions`, then the cap on requests in
    flight where there is one. A figure not known is said so."""
    if pattern == "trace":
        if time_scale == 0:
            text = "trace timestamps, sent as fast as the other limits allow (time scale 0)"
        else:
            text = "trace timestamps" + ("" if time_scale is None else f" × {time_scale:g}")
    elif pattern == "closed":
        sessions = "an unrecorded number of" if concurrency is None else f"{concurrency}"
        text = f"a closed loop of {sessions} concurrent sessions"
    elif pattern in ("poisson", "constant"):
        kind = "Poisson" if pattern == "poisson" else "constant"
        rate = "an unrecorded rate" if rate_per_s is None else f"{rate_per_s:g} sessions/s"
        text = f"{kind} arrivals at {rate}"
    else:
        text = pattern
    if max_concurrency is not None:
        text += f", at most {max_concurrency} requests in flight"
    return text


class TimingFlag(_Block):
    """A latency figure that is implausible or poorly backed, and why."""

    kind: Literal["token_bursts", "few_samples"]
    figures: list[str]
    """The stats blocks in doubt for this reason (`itl_ms`)."""
    percentiles: list[str]
    """Which of their percentiles are in doubt (`p50`, `p99`)."""
    reason: str


class Summary(_Block):
    """A run's summary.json: request metrics as `vllm bench serve` defines them (over
    completed measured requests; warmup excluded), goodput against the workload's SLO, the
    latency split and session figures of agent runs, the run's accounting, server-side
    phases, energy and telemetry, and the client's own health."""

    model_config = ConfigDict(title="harness summary.json")

    schema_version: int = Field(ge=UNVERSIONED, le=SCHEMA_VERSION)
    """The schema this summary follows (0: written before summaries were versioned)."""
    requests_total: NonNegativeInt
    requests_warmup_excluded: NonNegativeInt
    requests_completed: NonNegativeInt
    requests_failed: NonNegativeInt
    requests_missing_usage: NonNegativeInt
    sessions: NonNegativeInt | None
    duration_s: float | None
    input_tokens: NonNegativeInt | None
    output_tokens: NonNegativeInt | None
    request_throughput_rps: float | None
    output_throughput_tok_s: float | None
    total_throughput_tok_s: float | None
    ttft_ms: Stats
    tpot_ms: Stats
    itl_ms: Stats
    e2el_ms: Stats
    e2el_from_scheduled_ms: Stats
    send_lag_ms: Stats
    max_concurrency_observed: NonNegativeInt | None
    errors: dict[str, NonNegativeInt]
    """Failed requests by error text (the most frequent kinds)."""
    slo: Slo | None = None
    requests_meeting_slo: NonNegativeInt | None = None
    goodput_rps: float | None = None
    slo_attainment: Annotated[float, Field(ge=0, le=1)] | None = None
    latency_split: LatencySplit | None = None
    session_figures: SessionFigures | None = None
    run: RunBlock
    server_metrics: ServerMetrics
    """The server's /metrics deltas; over several replicas, their sums."""
    servers: Servers | None = None
    """Several replicas: the routing and each one's figures; null for one server (and in
    summaries of version 6 or older)."""
    energy: Energy | None = None
    telemetry: Telemetry | None = None
    recovered: Recovered | None = None
    client: ClientHealth | None = None
    workers: Workers | None = None
    load: LoadApplied | None = None
    """The load applied; null in summaries of version 1 or older, and where recovered."""
    percentiles: list[float] | None = None
    """The percentiles each latency figure reports (`--percentiles`); null: p50, p90, p99."""
    timing_flags: list[TimingFlag] | None = None
    """Implausible or poorly backed latency figures; null: not checked (version 1 or older)."""

    def percentile_names(self) -> tuple[str, ...]:
        """The names of the percentiles this summary's latency figures report."""
        if self.percentiles is None:
            return PERCENTILE_KEYS
        return tuple(percentile_name(p) for p in self.percentiles)

    def figures(self) -> dict[str, float | int | None]:
        """The run's headline figures under one flat name each (FIGURES): the names of
        capacity.json's load points and of `harness compare`."""
        energy, split, sessions = self.energy, self.latency_split, self.session_figures
        per_hour = sessions.sessions_per_hour if sessions is not None else None
        out: dict[str, float | int | None] = {
            "requests_completed": self.requests_completed,
            "requests_failed": self.requests_failed,
            "request_throughput_rps": self.request_throughput_rps,
            "output_throughput_tok_s": self.output_throughput_tok_s,
            "total_throughput_tok_s": self.total_throughput_tok_s,
            "goodput_rps": self.goodput_rps,
            "slo_attainment": self.slo_attainment,
        }
        for name in LATENCY_FIGURES:
            stats: Stats = getattr(self, name)
            out.update({f"{name}_{p}": getattr(stats, p) for p in PERCENTILE_KEYS})
        out.update(
            {
                "avg_power_w": energy.avg_power_w if energy is not None else None,
                "idle_power_w": energy.idle_power_w if energy is not None else None,
                "j_per_output_token": energy.j_per_output_token if energy is not None else None,
                **_steady_figures(energy),
                "cpu_share": split.cpu_share if split is not None else None,
                "gpu_share": split.gpu_share if split is not None else None,
                "sessions_per_s": None if per_hour is None else per_hour / 3600.0,
                "tool_cpu_s_per_session": (
                    split.tool_cpu_s_per_session if split is not None else None
                ),
            }
        )
        return out

    def to_json(self) -> dict[str, Any]:
        """The JSON form written as summary.json."""
        return self.model_dump(mode="json")


STEADY_FIGURES: tuple[str, ...] = (
    "steady_avg_power_w",
    "steady_j_per_output_token",
    "steady_output_throughput_tok_s",
    "steady_total_throughput_tok_s",
)
"""The steady window's figures `Summary.figures` gives: `steady_` and energy.steady's name."""


def _steady_figures(energy: Energy | None) -> dict[str, float | None]:
    """STEADY_FIGURES of an energy block; null where there is no steady window."""
    steady = energy.steady if energy is not None else None
    return {
        name: None if steady is None else getattr(steady, name.removeprefix("steady_"))
        for name in STEADY_FIGURES
    }


LATENCY_FIGURES: tuple[str, ...] = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms")
"""The latency stats `Summary.figures` flattens, as `<name>_<percentile>`."""
PERCENTILE_KEYS: tuple[str, ...] = ("p50", "p90", "p99")
"""The percentiles every Stats block has, whatever the run chose (capacity and compare read
them)."""


DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0)
"""Percentiles the latency figures report where a run names none (`--percentiles`)."""


def percentile_name(p: float) -> str:
    """A percentile's key: 50 → `p50`, 99.9 → `p99.9`."""
    return f"p{p:.10g}"


FIGURES: tuple[str, ...] = (
    "requests_completed",
    "requests_failed",
    "request_throughput_rps",
    "output_throughput_tok_s",
    "total_throughput_tok_s",
    "goodput_rps",
    "slo_attainment",
    *(f"{m}_{p}" for m in LATENCY_FIGURES for p in PERCENTILE_KEYS),
    "avg_power_w",
    "idle_power_w",
    "j_per_output_token",
    *STEADY_FIGURES,
    "cpu_share",
    "gpu_share",
    "sessions_per_s",
    "tool_cpu_s_per_session",
)
"""Every name `Summary.figures` gives, in its order."""


def summary_schema() -> dict[str, Any]:
    """summary.json's JSON Schema (draft 2020-12)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Summary.model_json_schema(),
    }


def new_summary(figures: Mapping[str, Any]) -> Summary:
    """The summary of this version from the figures a run computed; a figure that does not
    fit the schema (a misspelt key, a wrong type) is a pydantic ValidationError: a bug of
    the harness, not of its input."""
    return Summary.model_validate({**figures, "schema_version": SCHEMA_VERSION})


def parse_summary(data: Any, path: Path | str) -> Summary:
    """A summary.json's parsed content as a Summary; anything that does not fit (a wrong
    type, a misspelt key, a newer version) is a ResultsError naming the file and the key."""
    if not isinstance(data, Mapping):
        raise ResultsError(f"{path}: not a summary: expected a JSON object")
    version = data.get("schema_version", UNVERSIONED)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: summary schema_version {version} is newer than this harness reads "
            f"({SCHEMA_VERSION}): upgrade the harness"
        )
    unversioned = "schema_version" not in data
    content = {"schema_version": UNVERSIONED, **data} if unversioned else dict(data)
    try:
        return Summary.model_validate(content, strict=True)
    except ValidationError as err:
        lines = error_lines(err)
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        old = (
            f"; it has no schema_version (written by an older harness) and does not fit "
            f"schema {SCHEMA_VERSION}"
            if unversioned
            else ""
        )
        raise ResultsError(f"{path}: invalid summary: {lines[0]}{more}{old}") from None


def read_summary_file(path: Path) -> Summary:
    """A summary.json file as a Summary (errors name the file and the key)."""
    try:
        data = read_json(path, "summary")
    except ConfigError as err:
        raise ResultsError(str(err)) from None
    return parse_summary(data, path)
