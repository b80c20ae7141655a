"""A run's typed plan: what to replay, against which server, how it is measured and where its
results go. The CLI turns arguments into one; a sweep makes one per load point."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from harness.server import AttachedReplicas, AttachedServer, Server
from harness.server_process import DEFAULT_STARTUP_TIMEOUT_S, EmbeddedServer, LaunchedServer
from harness.summary import DEFAULT_PERCENTILES, ArrivalPattern
from harness.telemetry.steady import SteadyRule
from harness.workload.spec import RoutingPolicy, WorkloadSpec


def project_root() -> Path:
    """The checkout holding scripts/ and .vllm/ (HARNESS_ROOT overrides)."""
    env = os.environ.get("HARNESS_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServerChoice:
    """Where the server comes from: attach to `urls` (several: replicas of one deployment),
    launch `vllm serve model`, or (neither) the embedded vLLM CPU server."""

    urls: tuple[str, ...] = ()
    model: str | None = None
    api_key_env: str = "HARNESS_API_KEY"
    vllm_args: tuple[str, ...] = ()
    start_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    """How long a server the harness starts has to serve (`--server-start-timeout-s`)."""

    @property
    def local(self) -> bool:
        """Whether the server runs on this host, sharing its cores with the client."""
        return not self.urls

    def server(
        self, progress: Callable[[str], None] | None = None, log_path: Path | None = None
    ) -> Server:
        """The server as a context manager that yields its ServerInfo; one the harness starts
        tells `progress` how its start-up goes and writes its output to `log_path` (None:
        the server's own default place)."""
        if len(self.urls) > 1:
            return AttachedReplicas(self.urls, api_key_env=self.api_key_env)
        if self.urls:
            return AttachedServer(self.urls[0], api_key_env=self.api_key_env)
        if self.model:
            return LaunchedServer(
                self.model,
                extra_args=self.vllm_args,
                log_path=log_path,
                startup_timeout_s=self.start_timeout_s,
                progress=progress,
            )
        return EmbeddedServer(
            project_root(),
            extra_args=self.vllm_args,
            log_path=log_path,
            startup_timeout_s=self.start_timeout_s,
            progress=progress,
        )


@dataclass(frozen=True)
class RayChoice:
    """Load workers as Ray actors (`--ray`, `--ray-placement`): which cluster, and how many
    actors go where."""

    address: str
    """`auto` (the cluster ray.init finds), `local` (one started for the run), HOST:PORT or
    ray://HOST:PORT."""
    placement: Literal["spread", "per-node", "per-cores"] = "spread"
    """spread: the run's worker count spread over the nodes; per-node: one actor per node;
    per-cores: one actor per `cores` CPUs of the cluster."""
    cores: int = 1
    """CPUs each actor holds on its node."""


@dataclass(frozen=True)
class RunPlan:
    """Everything one run needs besides the server it is pointed at."""

    spec: WorkloadSpec
    out: Path
    trace_format: str | None = None
    tokenizer: str | None = None
    """Tokenizer for prompt ids (default: the server's model)."""
    seed: int = 0
    prompt_salt: int | None = None
    """Salt of the prompts' leading tokens; None draws one per run (recorded in the manifest)."""
    overwrite: bool = False
    sample_hz: float = 10.0
    idle_baseline_s: float | None = None
    server_pid: int | None = None
    gpu_metrics: tuple[str, ...] = ()
    """GPU nodes' DCGM exporters (`--gpu-metrics`): their GPUs are the server's."""
    gpu_metrics_every_s: float = 1.0
    """Seconds between scrapes of the DCGM exporters."""
    gpus: tuple[str, ...] | None = None
    """The server's GPUs by NVML index or UUID (`--gpus`); None: told from its processes."""
    workers: int | Literal["auto"] | None = None
    """Load-generating worker processes; None takes the workload's `client.workers`."""
    ray: RayChoice | None = None
    """Where the load workers run when they are Ray actors; None: processes on this host."""
    server_local: bool = True
    """Whether the server shares this host's cores (fewer are left for workers)."""
    routing: RoutingPolicy = "round-robin"
    """How requests are spread over several replicas (`--routing`, the workload's `routing`)."""
    command: tuple[str, ...] = field(default_factory=tuple)
    """The command line that made the plan, for the manifest (credentials redacted there)."""
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    """The percentiles each latency figure reports, besides min and max (`--percentiles`)."""
    load_note: str | None = None
    """How the command line replaced the workload's own timing, where it did (summary.load)."""
    workload_pattern: ArrivalPattern | None = None
    """The workload file's own arrival pattern, before the command line's options (None: the
    spec's); summary.load.trace_timing_replaced compares it with the pattern applied."""
    steady: SteadyRule = field(default_factory=SteadyRule)
    """What counts as the steady state of summary.energy.steady (`--steady-frac`,
    `--steady-min-s`)."""

    def with_spec(self, spec: WorkloadSpec, out: Path) -> RunPlan:
        """The same plan for another workload (a sweep's load point) and run directory."""
        return replace(self, spec=spec, out=out)
