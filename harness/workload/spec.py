"""The workload YAML: a source (trace file or synthetic generator), the arrival pattern,
request options and SLOs. Validated with pydantic; unknown keys are errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.config_files import Count, FiniteFloat, read_yaml, validate
from harness.errors import ConfigError
from harness.workload.limits import (
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_LOAD_WORKERS,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_SCALE,
    MAX_SEED,
    MAX_TIME_SCALE,
    MAX_TOOL_WORKERS,
)
from harness.workload.slo import Slo
from harness.workload.synthetic import validate_params
from harness.workload.tool_names import check_tool_map

TraceFormat = Literal[
    "mooncake", "azure", "burstgpt", "sharegpt", "sessions", "tracelab", "weka", "bailian", "otel"
]
TRACE_FORMATS: tuple[str, ...] = (
    "mooncake",
    "azure",
    "burstgpt",
    "sharegpt",
    "sessions",
    "tracelab",
    "weka",
    "bailian",
    "otel",
)


class _Strict(BaseModel):
    """Base for every section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    """Where sessions come from: a trace file or a synthetic generator (exactly one)."""

    trace: Path | None = None
    format: TraceFormat | None = None
    synthetic: Literal["chatbot", "agent", "random"] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    seed: Count = Field(default=0, ge=0, le=MAX_SEED)
    limit_requests: Count | None = Field(default=None, gt=0, le=MAX_REQUESTS)
    token_scale: FiniteFloat = Field(default=1.0, gt=0, le=MAX_SCALE)
    """Every token length (inputs, outputs, kept prefixes, hash-block sizes) times this, so a
    real trace's shape runs on a small server (`--token-scale`)."""
    tool_map: dict[str, str] = Field(default_factory=dict)
    """Recorded tool names to kinds, over `harness.workload.tool_names.DEFAULT_TOOL_MAP`."""
    repair_tokens: bool = False
    """Repair a recorded round whose tokens contradict its session instead of refusing it."""

    @model_validator(mode="after")
    def _one_source(self) -> SourceSpec:
        if (self.trace is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'trace' or 'synthetic'")
        if self.synthetic is None and self.params:
            raise ValueError("'params' belongs to a synthetic source")
        return self


class ArrivalSpec(_Strict):
    """When sessions start: trace timestamps (scaled; 0 sends at once), Poisson or constant
    rate, or closed loop."""

    pattern: Literal["trace", "poisson", "constant", "closed"] = "trace"
    time_scale: FiniteFloat = Field(default=1.0, ge=0, le=MAX_TIME_SCALE)
    rate_per_s: FiniteFloat | None = Field(default=None, gt=0, le=MAX_RATE_PER_S)
    concurrency: Count | None = Field(default=None, gt=0, le=MAX_CONCURRENCY)
    seed: Count = Field(default=0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _needs(self) -> ArrivalSpec:
        if self.pattern in ("poisson", "constant") and self.rate_per_s is None:
            raise ValueError(f"pattern '{self.pattern}' needs 'rate_per_s'")
        if self.pattern == "closed" and self.concurrency is None:
            raise ValueError("pattern 'closed' needs 'concurrency'")
        return self


class RequestSpec(_Strict):
    """How each request is sent."""

    api: Literal["completions", "chat"] = "completions"
    ignore_eos: bool = True
    temperature: FiniteFloat = Field(default=0.0, ge=0, le=100)
    overlength: Literal["error", "clip", "skip"] = "error"
    timeout_s: FiniteFloat = Field(default=600.0, gt=0, le=MAX_DURATION_S)


class ToolsSpec(_Strict):
    """How agent tool calls run: replayed waits or the real CPU kernels sized by calibration."""

    mode: Literal["replay", "execute"] = "replay"
    on_failure: Literal["continue", "stop"] = "continue"
    calibration: Path | None = None
    workers: Annotated[Count, Field(ge=1, le=MAX_TOOL_WORKERS)] | Literal["auto"] = "auto"
    """Tool worker processes for execute mode; `auto`: as many as the host's usable CPUs."""
    unsafe_no_sandbox: bool = False
    """Let code_exec run as root without the bubblewrap sandbox (per-process rlimits only)."""


class ClientSpec(_Strict):
    """The load-generating client: how many worker processes share the sessions."""

    workers: Annotated[Count, Field(ge=1, le=MAX_LOAD_WORKERS)] | Literal["auto"] = "auto"
    """Load worker processes, each with its own event loop on the run's one clock; `auto`:
    from the expected stream rate and the cores free of the server."""


class LimitSpec(_Strict):
    """Bounds on a run."""

    max_requests: Count | None = Field(default=None, gt=0, le=MAX_REQUESTS)
    max_concurrency: Count | None = Field(default=None, gt=0, le=MAX_CONCURRENCY)
    duration_s: FiniteFloat | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    warmup_requests: Count = Field(default=0, ge=0, le=MAX_REQUESTS)


RoutingPolicy = Literal["round-robin", "least-outstanding", "session-affinity"]
"""How a run spreads its requests over several replicas (harness.routing)."""
ROUTING_POLICIES: tuple[str, ...] = get_args(RoutingPolicy)


class WorkloadSpec(_Strict):
    """A whole workload file."""

    name: str
    description: str = ""
    source: SourceSpec
    arrival: ArrivalSpec = Field(default_factory=ArrivalSpec)
    request: RequestSpec = Field(default_factory=RequestSpec)
    limits: LimitSpec = Field(default_factory=LimitSpec)
    tools: ToolsSpec = Field(default_factory=ToolsSpec)
    client: ClientSpec = Field(default_factory=ClientSpec)
    slo: Slo | None = None
    """Service-level objectives; goodput counts requests that meet every one given."""
    servers: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=64)
    """Replicas of one deployment to attach to (base URLs), where the command line names no
    server; empty: the command line's server, or the embedded one."""
    routing: RoutingPolicy = "round-robin"
    """How requests are spread over the replicas (`--routing` overrides it)."""


def parse_workload(data: Any, path: Path) -> WorkloadSpec:
    """Validate a mapping read from `path` (a synthetic source's parameters included); a trace
    path inside is resolved relative to it."""
    spec = validate(WorkloadSpec, data, path)
    check_tool_map(spec.source.tool_map, str(path))
    if spec.source.synthetic is not None:
        try:
            validate_params(spec.source.synthetic, dict(spec.source.params), "source.params.")
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    trace = spec.source.trace
    if trace is not None and not trace.is_absolute():
        source = spec.source.model_copy(update={"trace": (path.parent / trace).resolve()})
        spec = spec.model_copy(update={"source": source})
    return spec


def load_workload(path: Path) -> WorkloadSpec:
    """Read and validate a workload YAML file."""
    return parse_workload(read_yaml(path, "workload"), path)


def is_workload_file(path: Path) -> bool:
    """True for a workload YAML (by extension), as opposed to a trace file."""
    return path.suffix.lower() in (".yaml", ".yml")
