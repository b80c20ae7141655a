"""Wiring of the background telemetry for a run: which readers, the idle baseline, which
GPUs are the server's, and the energy block of summary.json from the samples."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from harness.errors import ConfigError
from harness.server import ServerInfo
from harness.telemetry.attribution import Attribution, CudaEnv, GpuAttributor
from harness.telemetry.cpu import CpuReader, process_env
from harness.telemetry.dcgm import DcgmReader, gpu_name
from harness.telemetry.energy import GpuRows, other_gpus_energy, split_gpu_rows, summarize_energy
from harness.telemetry.gpu import GpuReader
from harness.telemetry.rapl import RaplReader
from harness.telemetry.sampler import SERVER_SAMPLE_NAMES, Sampler
from harness.telemetry.server_metrics import metrics_scraper
from harness.telemetry.steady import MAX_GAP_PERIODS, SteadyRule, summarize_steady

ENERGY_SOURCES: tuple[str, ...] = ("gpu", "dcgm", "rapl", "server")
"""The sample sources the energy block is computed from (the server's for its steady
window)."""

LAUNCHED_KINDS: frozenset[str] = frozenset({"embedded", "launched"})
"""Servers the harness starts: their environment is this process's plus what it added."""


def server_cuda_env(info: ServerInfo, server_pid: int | None) -> CudaEnv | None:
    """The server's CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER as it started: from the launch
    for a server the harness started, else read from its process where a pid is given and
    readable; None where neither tells."""
    launch = info.launch
    if launch.get("kind") in LAUNCHED_KINDS and launch.get("pid") == server_pid:
        env = {**os.environ, **{str(k): str(v) for k, v in (launch.get("env") or {}).items()}}
        return CudaEnv(env.get("CUDA_VISIBLE_DEVICES"), env.get("CUDA_DEVICE_ORDER"), "launch")
    if server_pid is None:
        return None
    readable, visible = process_env(server_pid, "CUDA_VISIBLE_DEVICES")
    if not readable:
        return None
    _, order = process_env(server_pid, "CUDA_DEVICE_ORDER")
    return CudaEnv(visible, order, "process")


class RunTelemetry:
    """The run's sampler with the readers this host has, and the idle window before load."""

    def __init__(
        self,
        info: ServerInfo,
        now_ns: Callable[[], int],
        rate_hz: float,
        idle_s: float | None,
        server_pid: int | None = None,
        sink: Callable[[list[dict[str, Any]]], object] | None = None,
        gpu_metrics: Sequence[str] = (),
        gpu_metrics_every_s: float = 1.0,
        steady: SteadyRule | None = None,
        gpus: Sequence[str] | None = None,
        nvml: Any | None = None,
    ) -> None:
        """`sink` receives the samples as they are taken (the run's journal). `gpu_metrics`
        names GPU nodes' DCGM exporters: their GPUs are then the server's, read every
        `gpu_metrics_every_s`, and this host's NVML GPUs are not counted in the energy.
        `steady` is what counts as the steady state (default SteadyRule()). `gpus` names
        the server's GPUs on this host (`--gpus`, by index or UUID; else they are told from
        its processes); `nvml` stands in for pynvml."""
        self.steady = steady if steady is not None else SteadyRule()
        self.gpu = GpuReader(nvml)
        self.dcgm = DcgmReader(gpu_metrics) if gpu_metrics else None
        self._dcgm_closed = False
        self.rapl = RaplReader()
        # Several replicas: their /metrics added up, so the steady window is the deployment's.
        self._scraper = metrics_scraper(info.endpoints(), names=SERVER_SAMPLE_NAMES)
        pid = server_pid if server_pid is not None else info.launch.get("pid")
        self.server_pid = int(pid) if isinstance(pid, int) else None
        self.attributor = self._attributor(info, gpus)
        self.sampler = Sampler(
            self.gpu if self.gpu.available else None,
            CpuReader(self.server_pid),
            self.rapl if self.rapl.available else None,
            now_ns,
            rate_hz=rate_hz,
            server_pid=self.server_pid,
            metrics_scrape=self._scraper,
            sink=sink,
            gpu_metrics=self.dcgm,
            gpu_metrics_every_s=gpu_metrics_every_s,
            attribution=self.attributor,
        )
        # An idle baseline only means something where power is measured (GPU or RAPL).
        measured_power = self.gpu.available or self.rapl.available or self.dcgm is not None
        self.idle_s = idle_s if idle_s is not None else (3.0 if measured_power else 0.0)
        self._now_ns = now_ns
        self.idle_window: tuple[int, int] | None = None

    def _attributor(self, info: ServerInfo, gpus: Sequence[str] | None) -> GpuAttributor | None:
        """What tells which of this host's GPUs are the server's, where NVML reads any and no
        DCGM exporter names the server's GPUs (else None: nothing to tell)."""
        if self.dcgm is not None:
            if gpus is not None:
                raise ConfigError(
                    "--gpus names GPUs of this host, but with --gpu-metrics the server's GPUs "
                    "are the DCGM exporters' and this host's are not counted: give one or the other"
                )
            return None
        if not self.gpu.available:
            if gpus is not None:
                why = f"NVML is unavailable on this host: {self.gpu.reason}"
                raise ConfigError(f"--gpus {','.join(gpus)}: {why}")
            return None
        no_pid = None
        if self.server_pid is None:
            no_pid = (
                "the server was attached by URL with no --server-pid, so its processes cannot "
                "be matched to GPUs (give --server-pid PID on this host, or --gpus)"
            )
        try:
            return GpuAttributor(
                self.gpu,
                self.server_pid,
                named=gpus,
                cuda_env=server_cuda_env(info, self.server_pid),
                no_pid_reason=no_pid,
            )
        except ValueError as err:
            raise ConfigError(f"--gpus {','.join(gpus or ())}: {err}") from None

    def start(self) -> None:
        """Start sampling and hold the idle baseline before any load."""
        self.sampler.start()
        if self.idle_s > 0:
            start = self._now_ns()
            time.sleep(self.idle_s)
            self.idle_window = (start, self._now_ns())

    def stop(self) -> None:
        """Stop sampling (safe to call twice)."""
        self.sampler.stop()
        self._scraper.close()
        self.gpu.close()
        if self.dcgm is not None and self.dcgm.scrapes and not self._dcgm_closed:
            # One last reading after the load: the window's end lies before it, not up to a
            # scrape period after the last one (their energy would go uncounted).
            self.sampler.sample_gpu_metrics_once()
            self.dcgm.close()
            self._dcgm_closed = True

    def status(self) -> dict[str, Any]:
        """What was sampled, what was not and why, and the sampler's own cost."""
        overhead = self.sampler.overhead()
        wall = overhead.get("wall_s") or 0.0
        problems = list(self.sampler.problems)
        dcgm = None
        if self.dcgm is not None:
            dcgm = {**self.dcgm.status(), "every_s": self.sampler.gpu_metrics_every_s}
            problems += [p for p in self.dcgm.problems if p not in problems]
        return {
            "rate_hz": 1.0 / self.sampler.period_s,
            "gpu": self.gpu.status(),
            "rapl": self.rapl.status(),
            "server_pid": self.server_pid,
            "problems": problems,
            "sampler_overhead": overhead,
            "sampler_cpu_pct_of_one_core": 100 * overhead["cpu_s"] / wall if wall else None,
            "idle_baseline_s": self.idle_s,
            "dcgm": dcgm,
            "gpu_attribution": None if self.attributor is None else self.attributor.to_dict(),
        }

    def energy(
        self,
        samples: pd.DataFrame | None,
        requests: pd.DataFrame,
        tools: pd.DataFrame | None,
        sessions: int | None,
        client_records: Callable[[], pa.Table] | None = None,
    ) -> dict[str, Any] | None:
        """The energy block over the measured window (first send → last completion), from the
        run's tables as written, with its steady window (`client_records` gives the request
        columns the steady tokens fall back to where the server's counters are missing)."""
        measured = requests[~requests["warmup"].fillna(False).astype(bool)]
        measured = measured[measured["sent_ns"].notna()]
        done = measured["done_ns"].dropna()
        if measured.empty or done.empty:
            return None
        window = (int(measured["sent_ns"].min()), int(done.max()))
        ok = measured[measured["ok"].fillna(False).astype(bool)]
        output = int(ok["output_tokens"].fillna(0).sum())
        rows: Sequence[Mapping[str, Any]] = []
        if samples is not None and not samples.empty:
            # Energy reads only the power sources' rows: the others never become Python rows.
            samples = samples[samples["source"].isin(ENERGY_SOURCES)]
            clean = samples.astype(object).where(samples.notna(), None)
            rows = [{str(k): v for k, v in row.items()} for row in clean.to_dict("records")]
        tool_windows: list[tuple[int, int]] = []
        if tools is not None and not tools.empty:
            tool_windows = [
                (int(a), int(b))
                for a, b in zip(tools["start_ns"], tools["end_ns"], strict=True)
                if not (pd.isna(a) or pd.isna(b))
            ]
        gpus: GpuRows = "dcgm" if self.dcgm is not None else "gpu"
        # Without DCGM exporters the server's GPUs are this host's it was told to hold; the
        # other GPUs' rows count in none of its figures and are summed apart.
        attribution = self.attributor.result() if self.attributor is not None else None
        others: Sequence[Mapping[str, Any]] = []
        if attribution is not None and attribution.known:
            rows, others = split_gpu_rows(rows, attribution.devices)
        block = summarize_energy(
            rows,
            window,
            idle_window=self.idle_window,
            output_tokens=output,
            requests=len(ok),
            sessions=sessions,
            tool_windows=tool_windows,
            gpus=gpus,
        )
        max_gap_s = MAX_GAP_PERIODS * self.sampler.metrics_every_s
        block["steady"] = summarize_steady(
            rows, window, self.steady, client_records, max_gap_s, gpus=gpus
        )
        if self.dcgm is not None:
            block["gpu_source_note"] = self._dcgm_note(window, block)
        elif attribution is not None:
            block["gpu_source_note"] = self._attribution_note(attribution)
            if attribution.known:
                block["gpu_devices"] = list(attribution.devices)
                other = [
                    g.index for g in self.gpu.identities() if g.index not in attribution.devices
                ]
                if other:
                    block["other_gpus"] = {
                        "devices": other,
                        **other_gpus_energy(others, window, self.idle_window),
                    }
        return block

    def _attribution_note(self, attribution: Attribution) -> str:
        """Which of this host's GPUs the energy counts, in words: the server's and how they
        were told, or every GPU and why the server's could not be."""
        seen = len(self.gpu.identities())
        if not attribution.known:
            return (
                f"all {seen} GPUs NVML sees on this host: the server's could not be told "
                f"({attribution.reason})"
            )
        listed = ", ".join(str(d) for d in attribution.devices) or "none"
        note = f"GPUs {listed} of the {seen} on this host, the server's (by {attribution.method})"
        if attribution.devices and len(attribution.devices) < seen:
            note += "; the others are shown apart"
        return note + (f"; {attribution.reason}" if attribution.reason else "")

    def _dcgm_problem(self, problem: str) -> None:
        """A problem found in the exporters' readings after the run, said once."""
        assert self.dcgm is not None
        if problem not in self.dcgm.problems:
            self.dcgm.problems.append(problem)

    def _dcgm_note(self, window: tuple[int, int], block: dict[str, Any]) -> str:
        """Which GPUs the energy counts where DCGM exporters were named; what it could not
        measure (a counter that did not move over the window or the idle baseline: the
        exporter refreshes less often) and a refresh coarse against the window are kept with
        the exporters' problems, the coarse refresh also here."""
        assert self.dcgm is not None
        gpus = self.dcgm.gpus()
        window_s = (window[1] - window[0]) / 1e9
        measured = set(block["gpu_energy_per_device_j"])
        for gpu in gpus:
            if gpu.uuid not in measured:
                self._dcgm_problem(
                    f"{gpu_name(gpu)}: its energy counter did not move over the {window_s:.3g} s "
                    "measured window (its exporter refreshes less often, or stopped): its energy "
                    "is not measured and the total leaves it out"
                )
        if self.idle_window is not None and block["idle_power_w"] is None and gpus:
            idle_s = (self.idle_window[1] - self.idle_window[0]) / 1e9
            self._dcgm_problem(
                "idle power not measured: the DCGM exporters' energy counters did not all move "
                f"during the {idle_s:.3g} s idle baseline (they refresh less often): give "
                "--idle-baseline longer than the exporter's --collect-interval, or run it with "
                "-c 1000"
            )
        hosts = sorted({g.host or "?" for g in gpus})
        note = (
            f"GPUs of the DCGM exporters ({', '.join(self.dcgm.urls)}): {len(gpus)} on "
            f"{', '.join(hosts) or 'no node'}; this host's NVML GPUs are not counted"
        )
        refresh = self.dcgm.refresh_s
        if refresh is not None and refresh > window_s / 10:
            warning = (
                f"the DCGM exporters refresh their readings every {refresh:.3g} s against a "
                f"{window_s:.3g} s measured window: energy at its edges is off by up to that "
                "long at full power (run dcgm-exporter with -c 1000 for 1 s readings)"
            )
            self._dcgm_problem(warning)
            note += f"; {warning}"
        return note
