"""Background telemetry sampling on the run's time axis, in threads so the replay's event loop
is never disturbed; rows for `telemetry.parquet`, each source's failure reported once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, Protocol

from harness.telemetry.cpu import CpuReader
from harness.telemetry.dcgm import DcgmReader
from harness.telemetry.gpu import GpuReader
from harness.telemetry.rapl import RaplReader

Row = dict[str, Any]

SERVER_FIELDS: dict[str, tuple[str, ...]] = {
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage_frac": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "prompt_tokens_total": ("vllm:prompt_tokens_total",),
    "generation_tokens_total": ("vllm:generation_tokens_total",),
    "prefix_cache_queries_total": ("vllm:prefix_cache_queries_total",),
    "prefix_cache_hits_total": ("vllm:prefix_cache_hits_total",),
}
"""Server row column → vLLM sample names to take it from (first present wins; vLLM's
`kv_cache_usage_perc` is a 0–1 fraction despite its name)."""

SERVER_SAMPLE_NAMES: frozenset[str] = frozenset(
    n for names in SERVER_FIELDS.values() for n in names
)
"""Every /metrics sample a server row reads: the scrape parses only these lines."""


class AttributionCheck(Protocol):
    """What tells the server's GPUs during the run (harness.telemetry.attribution)."""

    def check(self, t_ns: int) -> None:
        """Look again, where it is time to (cheap otherwise)."""


class Sampler:
    """Samples GPU, CPU and RAPL at `rate_hz`, the server's /metrics every `metrics_every_s`,
    and GPU nodes' DCGM exporters every `gpu_metrics_every_s`; each hardware tick also lets
    `attribution` look again at which GPUs are the server's."""

    def __init__(
        self,
        gpu: GpuReader | None,
        cpu: CpuReader | None,
        rapl: RaplReader | None,
        now_ns: Callable[[], int],
        rate_hz: float = 10.0,
        server_pid: int | None = None,
        metrics_scrape: Callable[[], Mapping[str, float]] | None = None,
        metrics_every_s: float = 1.0,
        sink: Callable[[list[Row]], object] | None = None,
        gpu_metrics: DcgmReader | None = None,
        gpu_metrics_every_s: float = 1.0,
        attribution: AttributionCheck | None = None,
    ) -> None:
        """`sink`, where given, receives each tick's rows (e.g. a run's journal) and the
        sampler keeps none in memory, so a long run's memory stays flat. `gpu_metrics` reads
        GPU nodes' DCGM exporters every `gpu_metrics_every_s` in a thread of its own."""
        if rate_hz <= 0 or metrics_every_s <= 0 or gpu_metrics_every_s <= 0:
            raise ValueError("rate_hz, metrics_every_s and gpu_metrics_every_s must be positive")
        self.gpu_metrics = gpu_metrics
        self.gpu_metrics_every_s = gpu_metrics_every_s
        self.gpu, self.cpu, self.rapl = gpu, cpu, rapl
        self.now_ns = now_ns
        self.period_s = 1.0 / rate_hz
        self.server_pid = server_pid
        self.metrics_scrape = metrics_scrape
        self.metrics_every_s = metrics_every_s
        self.attribution = attribution
        self.problems: list[str] = []
        self._rows: list[Row] = []
        self._sink = sink
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._cpu_s: dict[str, float] = {}
        self._samples = 0
        self._wall0: float | None = None
        self._wall1: float | None = None
        self._reported: set[str] = set()
        for name, reader in (("gpu", gpu), ("rapl", rapl)):
            if reader is not None and not reader.available:
                self._report(name, f"{name} unavailable: {reader.reason}")

    def _report(self, source: str, problem: str) -> None:
        """Record a source's problem once (keyed by source and problem text)."""
        key = f"{source}:{problem}"
        with self._lock:
            if key not in self._reported:
                self._reported.add(key)
                self.problems.append(problem)

    def _fail(self, source: str, err: BaseException) -> None:
        """Record a failing read once per source and error type; sampling goes on."""
        key = f"{source}:{type(err).__name__}"
        with self._lock:
            if key not in self._reported:
                self._reported.add(key)
                self.problems.append(f"{source} read failed: {type(err).__name__}: {err}")

    def sample_once(self) -> None:
        """One tick of every hardware source at one run-clock time (callable directly in tests)."""
        t = self.now_ns()
        rows: list[Row] = []
        if self.gpu is not None and self.gpu.available:
            try:
                for g in self.gpu.read():
                    row: Row = {"t_ns": t, "source": "gpu", "device": g.index, **asdict(g)}
                    del row["index"]
                    row["energy_source"] = "nvml-counter" if g.energy_j is not None else None
                    rows.append(row)
            except Exception as err:
                self._fail("gpu", err)
        if self.attribution is not None:
            try:
                self.attribution.check(t)
            except Exception as err:
                self._fail("gpu attribution", err)
        if self.cpu is not None:
            try:
                c = self.cpu.read(self.server_pid)
                rows.append({"t_ns": t, "source": "cpu", "device": None, **asdict(c)})
                for problem in self.cpu.problems:
                    self._report("cpu", problem)
            except Exception as err:
                self._fail("cpu", err)
        if self.rapl is not None and self.rapl.available:
            try:
                for r in self.rapl.read():
                    rows.append(
                        {
                            "t_ns": t,
                            "source": "rapl",
                            "device": r.zone,
                            "zone": r.name,
                            "energy_j": r.energy_j,
                            "energy_source": "rapl",
                        }
                    )
                for problem in self.rapl.problems:
                    self._report("rapl", problem)
            except Exception as err:
                self._fail("rapl", err)
        self._emit(rows)
        with self._lock:
            self._samples += 1

    def _emit(self, rows: list[Row]) -> None:
        """Hand rows to the sink, or keep them for `rows()`; a failing sink is reported once."""
        if self._sink is None:
            with self._lock:
                self._rows.extend(rows)
            return
        try:
            self._sink(rows)
        except Exception as err:
            key = f"sink:{type(err).__name__}"
            with self._lock:
                if key in self._reported:
                    return
                self._reported.add(key)
                self.problems.append(
                    f"telemetry samples could not be written: {type(err).__name__}: {err}"
                )

    def _sample_server(self) -> None:
        """One /metrics scrape as a 'server' row."""
        assert self.metrics_scrape is not None
        t = self.now_ns()
        try:
            metrics = self.metrics_scrape()
        except Exception as err:
            self._fail("server", err)
            return
        row: Row = {"t_ns": t, "source": "server", "device": None}
        for column, names in SERVER_FIELDS.items():
            row[column] = next((float(metrics[n]) for n in names if n in metrics), None)
        self._emit([row])

    def sample_gpu_metrics_once(self) -> None:
        """One scrape of the DCGM exporters as 'dcgm' rows, one per GPU, keyed by UUID (callable
        directly in tests); the reader's problems join the sampler's, each once."""
        assert self.gpu_metrics is not None
        t = self.now_ns()
        rows: list[Row] = []
        try:
            for g in self.gpu_metrics.read():
                row: Row = {"t_ns": t, "source": "dcgm", "device": g.gpu, **asdict(g)}
                del row["gpu"], row["url"]
                row["power_source"] = "dcgm-power" if g.power_w is not None else None
                row["energy_source"] = "dcgm-counter" if g.energy_j is not None else None
                rows.append(row)
        except Exception as err:
            self._fail("dcgm", err)
        for problem in self.gpu_metrics.problems:
            self._report("dcgm", problem)
        self._emit(rows)

    def _loop(self, name: str, tick: Callable[[], None], period_s: float) -> None:
        """Call `tick` every period (on a fixed schedule, skipping missed ticks) until stopped."""
        cpu0 = time.thread_time()
        next_at = time.perf_counter()
        while not self._stop.is_set():
            tick()
            with self._lock:
                self._cpu_s[name] = time.thread_time() - cpu0
            next_at += period_s
            now = time.perf_counter()
            if next_at < now:  # fell behind: skip to the next slot rather than burst
                next_at = now + period_s - ((now - next_at) % period_s)
            self._stop.wait(next_at - now)

    def start(self) -> None:
        """Start the sampling threads (daemon, so a crashed run can still exit)."""
        if self._threads:
            raise RuntimeError("sampler already started")
        self._wall0 = time.perf_counter()
        loops: list[tuple[str, Callable[[], None], float]] = [
            ("hardware", self.sample_once, self.period_s)
        ]
        if self.metrics_scrape is not None:
            loops.append(("server", self._sample_server, self.metrics_every_s))
        if self.gpu_metrics is not None:
            loops.append(("gpu-metrics", self.sample_gpu_metrics_once, self.gpu_metrics_every_s))
        for name, tick, period in loops:
            thread = threading.Thread(
                target=self._loop, args=(name, tick, period), name=f"telemetry-{name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop sampling and wait for the threads; safe to call twice."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
            if thread.is_alive():
                self._report("sampler", f"{thread.name} did not stop within {timeout_s} s")
        if self._wall0 is not None and self._wall1 is None:
            # One last hardware reading after the load: the run window's end lies before it,
            # not up to a period after the last tick (that energy would go uncounted).
            self.sample_once()
            self._wall1 = time.perf_counter()

    def rows(self) -> list[Row]:
        """All rows kept so far (none where a sink takes them), sorted by time, every row
        holding every column (None where absent)."""
        with self._lock:
            rows = list(self._rows)
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        rows.sort(key=lambda r: r["t_ns"])
        return [{c: row.get(c) for c in columns} for row in rows]

    def overhead(self) -> dict[str, float]:
        """The sampler's own cost: its threads' CPU seconds, wall seconds, and hardware ticks."""
        end = self._wall1 if self._wall1 is not None else time.perf_counter()
        with self._lock:
            cpu_s = sum(self._cpu_s.values())
            samples = self._samples
        wall_s = 0.0 if self._wall0 is None else end - self._wall0
        return {"cpu_s": cpu_s, "wall_s": wall_s, "samples": float(samples)}

    def status(self) -> dict[str, Any]:
        """Problems and sources' status for the manifest."""
        return {
            "problems": list(self.problems),
            "gpu": self.gpu.status() if self.gpu is not None else {"available": False},
            "rapl": self.rapl.status() if self.rapl is not None else {"available": False},
            "overhead": self.overhead(),
        }
