#!/usr/bin/env python3
"""Self-check benchmark of the harness's client against the project's null server.

After MLPerf's null system under test; `vllm bench serve` is measured beside the harness in
the same run where it is installed.

The null server (scripts/null_server.py) streams at a set TTFT and ITL with no model behind
it and stamps each chunk with its send time on the host's monotonic clock; it runs pinned to
core 0 (the first `--server-cores`), the clients on the other cores. Every figure is the
client's own, measured against a null server, never an inference server's:

1. CPU µs per streamed token, marginal between two run sizes (user+sys of the client's
   whole process tree), which removes start-up cost; tok/s at the larger size.
2. The highest sustained output tok/s of one worker (null server at TTFT 0, ITL 0).
3. Client-added latency p50/p99 at several token rates: each chunk's receipt time minus the
   server's send stamp for it; and each client's own TTFT and ITL p99 against the set ones.
4. Throughput with 1, 2, … workers (`harness run --workers N`) against N × one worker's.
5. The send lag (how late requests leave against the trace's times) of the shared Azure
   trace's first requests at time scale 1, with one worker and with two.

    .venv/bin/python scripts/bench_client.py --json bench-client.json
    .venv/bin/python scripts/bench_client.py --quick
    # a 16-core host: two server cores and processes, so eight workers do not outrun it
    .venv/bin/python scripts/bench_client.py --server-cores 2 --server-procs 2 --max-workers 8

Other processes on the host share its cores: each run says how much CPU they used meanwhile.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
NULL_SERVER = ROOT / "scripts" / "null_server.py"
BARE_READER = ROOT / "scripts" / "bare_reader.py"
FLOOR = "floor"
"""scripts/bare_reader.py: a uvloop reader that stamps each read and parses nothing."""
HARNESS = ROOT / ".venv" / "bin" / "harness"
VLLM = ROOT / ".vllm" / "venv" / "bin" / "vllm"
TOKENIZER = ROOT / ".vllm" / "model"
LABEL = "null server"
MODEL = "null-model"
VLLM_ID_PREFIX = "vb-"

PROMPT_TOKENS = 128
OUTPUT_TOKENS = 256
CPU_STREAMS = 64
CPU_SERVER = (5.0, 1.0)
"""TTFT and ITL (ms) for the CPU part: each stream paced at 1,000 tok/s, so 64 streams ask
for up to 64k tok/s, token by token, as a busy GPU server sends them."""
LATENCY_SERVER = (50.0, 10.0)
PEAK_SERVER = (0.0, 0.0)
TRACE = ROOT / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"
TRACE_SERVER = (20.0, 1.0)
TRACE_WORKERS = 2
TARGET_SEND_LAG_SLACK_MS = 1.0

TARGET_CPU_RATIO = 1 / 3
TARGET_ADDED_P99_MS = 1.0
TARGET_ADDED_UP_TO_TOK_S = 20_000
TARGET_SCALING = 0.8
SERVER_BUSY_WARN = 0.9
OTHER_LOAD_WARN = 0.2
LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass(frozen=True)
class Sizes:
    """How big each part's runs are."""

    cpu_requests: tuple[int, int]
    peak_concurrency: tuple[int, ...]
    peak_requests: int
    rates_tok_s: tuple[int, ...]
    rate_seconds: float
    scaling_requests_per_worker: int
    scaling_streams_per_worker: int
    trace_requests: int


DEFAULT_SIZES = Sizes((200, 1000), (64, 128, 256), 1000, (5000, 10000, 20000), 8.0, 800, 128, 300)
QUICK_SIZES = Sizes((40, 160), (64, 128), 300, (5000, 20000), 4.0, 200, 128, 40)


# --- pure helpers -------------------------------------------------------------------------


def marginal_us_per_token(small: tuple[float, int], big: tuple[float, int]) -> float | None:
    """CPU µs per token between two runs, each (cpu_s, tokens): (cpu_big − cpu_small) /
    (tokens_big − tokens_small); None unless the larger run streamed more tokens."""
    (cpu_small, tokens_small), (cpu_big, tokens_big) = small, big
    if tokens_big <= tokens_small:
        return None
    return (cpu_big - cpu_small) / (tokens_big - tokens_small) * 1e6


@dataclass
class Join:
    """Receipt times joined to the server's send stamps, chunk by chunk."""

    added_ns: np.ndarray
    """Receipt minus send stamp of every joined chunk."""
    requests_joined: int
    requests_without_stamps: int
    chunk_count_mismatches: int
    """Requests whose receipts and stamps differ in number (joined over the shorter)."""


def join_stamps(
    receipts: Mapping[str, Sequence[int] | np.ndarray],
    stamps: Mapping[str, Sequence[int]],
) -> Join:
    """Join per-request chunk receipt times (absolute perf_counter ns) to the server's stamps
    for the same request id, in chunk order."""
    parts: list[np.ndarray] = []
    joined = without = mismatched = 0
    for request_id, received in receipts.items():
        sent = stamps.get(request_id)
        if sent is None:
            without += 1
            continue
        joined += 1
        n = min(len(received), len(sent))
        if len(received) != len(sent):
            mismatched += 1
        if n:
            parts.append(
                np.asarray(received[:n], dtype=np.int64) - np.asarray(sent[:n], dtype=np.int64)
            )
    added = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return Join(added, joined, without, mismatched)


def pct_ms(values_ns: np.ndarray, q: float) -> float | None:
    """The q-th percentile of nanosecond values, in ms; None for no values."""
    if len(values_ns) == 0:
        return None
    return float(np.percentile(values_ns, q)) / 1e6


def ok_requests(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of requests.parquet that completed and count (no warm-up)."""
    keep = df["error"].isna() & (df["http_status"] == 200)
    if "warmup" in df:
        keep &= ~df["warmup"].fillna(False).astype(bool)
    return df[keep]


def harness_receipts(df: pd.DataFrame, anchor_perf_ns: int) -> dict[str, np.ndarray]:
    """Each completed request's chunk receipt times as absolute perf_counter ns (the run's
    `chunk_ns` plus the manifest's anchor)."""
    ok = ok_requests(df)
    return {
        str(rid): np.asarray(chunks, dtype=np.int64) + anchor_perf_ns
        for rid, chunks in zip(ok["request_id"], ok["chunk_ns"], strict=True)
    }


def vllm_receipts(result: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
    """Chunk receipt times (absolute perf_counter ns) from `vllm bench serve --save-detailed`:
    request i (id prefix+i) got chunk 0 at start + ttft and each later one an ITL after."""
    out: dict[str, np.ndarray] = {}
    starts, ttfts, itls = result["start_times"], result["ttfts"], result["itls"]
    errors = result.get("errors") or [""] * len(starts)
    for i, (start, ttft, gaps) in enumerate(zip(starts, ttfts, itls, strict=True)):
        if errors[i] or not ttft:
            continue
        seconds = start + ttft + np.concatenate(([0.0], np.cumsum(gaps)))
        out[f"{prefix}{i}"] = np.round(seconds * 1e9).astype(np.int64)
    return out


def stamp_gaps_ns(stamps: Mapping[str, Sequence[int]]) -> np.ndarray:
    """The server's own inter-chunk gaps, pooled over requests."""
    parts = [np.diff(np.asarray(s, dtype=np.int64)) for s in stamps.values() if len(s) > 1]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def steady_tok_s(
    receipts: Mapping[str, np.ndarray], first_send_ns: int, last_send_ns: int, e2e_ns: int
) -> float | None:
    """Tokens received per second while arrivals kept the load level: from the first send
    plus one request's length to the last send; None when that window is under 0.5 s."""
    begin, end = first_send_ns + e2e_ns, last_send_ns
    if end - begin < 500_000_000:
        return None
    count = sum(int(np.count_nonzero((r >= begin) & (r < end))) for r in receipts.values())
    return count / ((end - begin) / 1e9)


def scaling_rows(tok_s_by_workers: Mapping[int, float | None]) -> list[dict[str, Any]]:
    """Per worker count: tok/s and its ratio to N × one worker's."""
    one = tok_s_by_workers.get(1)
    rows = []
    for n, tok_s in sorted(tok_s_by_workers.items()):
        ratio = tok_s / (n * one) if tok_s is not None and one else None
        rows.append({"workers": n, "tok_s": tok_s, "ratio_to_n_x_one": ratio})
    return rows


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "NOT met")


def fmt(value: float | None, spec: str = ",.1f") -> str:
    return "n/a" if value is None else format(value, spec)


# --- processes ----------------------------------------------------------------------------


def _pin(cores: set[int]) -> Callable[[], None]:
    def pin() -> None:
        os.sched_setaffinity(0, cores)

    return pin


@dataclass
class Proc:
    """A finished client process: exit status, CPU of its whole tree, wall time."""

    rc: int
    cpu_s: float
    wall_s: float


def run_pinned(
    cmd: Sequence[str],
    cores: set[int],
    log: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Run `cmd` pinned to `cores`; its CPU is user+sys of it and every descendant it waited
    for (RUSAGE_CHILDREN before and after: this script runs one client at a time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("wb") as out:
        try:
            rc = subprocess.run(
                list(cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_pin(cores),
                timeout=timeout_s,
                env=None if env is None else dict(env),
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Proc(rc, cpu, wall)


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


TABLE_CHARS = re.compile("[\u2500-\u257f]")


def log_error(path: Path, lines: int = 6) -> str:
    """The last lines of a client's log that are not a printed table (what went wrong)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    kept = [ln.strip() for ln in text if ln.strip() and not TABLE_CHARS.search(ln)]
    return " | ".join(kept[-lines:])[-600:]


class NullServer:
    """scripts/null_server.py in a subprocess pinned to the server cores, on a free port."""

    def __init__(
        self,
        cores: set[int],
        tmp: Path,
        ttft_ms: float,
        itl_ms: float,
        stamps: bool = False,
        procs: int = 1,
    ) -> None:
        self.ttft_ms, self.itl_ms, self.procs = ttft_ms, itl_ms, procs
        self.cores_used = max(1, min(procs, len(cores)))
        """Cores the server can keep busy at once (its processes, at most its cores)."""
        self.log = tmp / f"null-server-{time.monotonic_ns()}.log"
        cmd = [
            sys.executable,
            str(NULL_SERVER),
            "--port",
            "0",
            "--ttft-ms",
            f"{ttft_ms:g}",
            "--itl-ms",
            f"{itl_ms:g}",
            "--model-root",
            str(TOKENIZER),
            "--procs",
            str(procs),
        ] + (["--stamps"] if stamps else [])
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stderr=log, preexec_fn=_pin(cores))
        self.url = self._wait_url()
        self._ps = psutil.Process(self.proc.pid)

    def _wait_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = LISTENING.search(_tail(self.log, 10_000))
            if found:
                url = found.group(1)
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2):
                        return url
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"null server exited: {_tail(self.log)}")
            time.sleep(0.05)
        raise RuntimeError(f"null server did not answer within 30 s: {_tail(self.log)}")

    def cpu_s(self) -> float:
        """User+sys so far of the server and its processes."""
        total = 0.0
        for p in [self._ps, *self._ps.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def _call(self, method: str) -> Any:
        req = urllib.request.Request(f"{self.url}/null/stamps", method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def stamps(self) -> dict[str, list[int]]:
        data: dict[str, list[int]] = self._call("GET")
        return data

    def clear_stamps(self) -> None:
        self._call("DELETE")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def null_server(
    cores: set[int], tmp: Path, ttft_ms: float, itl_ms: float, stamps: bool = False, procs: int = 1
) -> Iterator[NullServer]:
    server = NullServer(cores, tmp, ttft_ms, itl_ms, stamps, procs)
    try:
        yield server
    finally:
        server.stop()


# --- clients ------------------------------------------------------------------------------


@dataclass
class ClientRun:
    """One client run's figures (None: unavailable, with `error` saying why)."""

    client: str
    label: str
    error: str | None = None
    cpu_s: float | None = None
    wall_s: float | None = None
    completed: int | None = None
    failed: int | None = None
    output_tokens: int | None = None
    tok_s: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    itl_p50_ms: float | None = None
    itl_p99_ms: float | None = None
    server_busy: float | None = None
    other_cores: float | None = None
    """CPU that processes other than this client and the null server used meanwhile, in cores
    on average over the run: above a few tenths the machine's other load is in the figures."""
    """Server CPU over the load's wall time, per server core it can use; near 1.0 the server,
    not the client, set the pace."""
    first_send_ns: int | None = None
    last_send_ns: int | None = None
    client_health: dict[str, Any] | None = None
    """The harness summary's own `client` block (event-loop lag, worker CPU), where it has one."""
    client_bound: bool | None = None
    send_lag_p50_ms: float | None = None
    send_lag_p99_ms: float | None = None
    """How late requests left against their due times (the harness summary's send_lag_ms)."""
    receipts: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("receipts")
        return out


def harness_figures(df: pd.DataFrame) -> dict[str, Any]:
    """A harness run's figures from its requests.parquet, defined as `vllm bench serve` does:
    TTFT send → first token chunk, ITL between token chunks, tok/s first send → last done."""
    ok = ok_requests(df)
    out: dict[str, Any] = {"completed": len(ok), "failed": len(df) - len(ok)}
    if ok.empty:
        return out
    ttft = (ok["first_token_ns"] - ok["sent_ns"]).to_numpy(dtype=np.int64)
    gaps = [np.diff(np.asarray(c, dtype=np.int64)) for c in ok["chunk_ns"] if len(c) > 1]
    itl = np.concatenate(gaps) if gaps else np.empty(0, dtype=np.int64)
    tokens = int(ok["output_tokens"].sum())
    span_ns = int(ok["done_ns"].max() - ok["sent_ns"].min())
    out.update(
        output_tokens=tokens,
        tok_s=tokens / (span_ns / 1e9) if span_ns > 0 else None,
        ttft_p50_ms=pct_ms(ttft, 50),
        ttft_p99_ms=pct_ms(ttft, 99),
        itl_p50_ms=pct_ms(itl, 50),
        itl_p99_ms=pct_ms(itl, 99),
    )
    return out


class Bench:
    """Runs the clients pinned to the client cores against a null server."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        usable = sorted(os.sched_getaffinity(0))
        k = max(1, min(args.server_cores, len(usable) - 1)) if len(usable) > 1 else 1
        self.server_cores = set(usable[:k])
        self.client_cores = set(usable[k:]) or set(usable)
        self.shared_core = not set(usable[k:])
        self.harness = Path(args.harness)
        self.vllm = Path(args.vllm) if args.vllm and Path(args.vllm).exists() else None
        if args.no_vllm:
            self.vllm = None
        help_text = subprocess.run(
            [str(self.harness), "run", "--help"], capture_output=True, text=True, check=False
        ).stdout
        self.harness_flags = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
        self.workers_supported = "--workers" in self.harness_flags
        self._seq = 0

    def _dir(self, name: str) -> Path:
        self._seq += 1
        path = self.tmp / f"{self._seq:03d}-{name}"
        path.mkdir()
        return path

    def harness_run(
        self,
        server: NullServer,
        label: str,
        requests: int,
        arrival: dict[str, Any],
        workers: int | None = None,
        trace: tuple[Path, int] | None = None,
    ) -> ClientRun:
        """`harness run` of a synthetic random workload (128-token prompts, 256 outputs), or
        of the first requests of a trace at its recorded times (`trace`: file, count)."""
        run = ClientRun("harness", label)
        folder = self._dir("harness")
        workload = folder / "workload.yaml"
        if trace is not None:
            workload = trace[0]
        else:
            workload.write_text(
                json.dumps(
                    {
                        "name": "bench-client",
                        "description": f"{LABEL}: client self-check",
                        "source": {
                            "synthetic": "random",
                            "params": {
                                "requests": requests,
                                "input_tokens": PROMPT_TOKENS,
                                "output_tokens": OUTPUT_TOKENS,
                                "range_ratio": 0.0,
                            },
                        },
                        "arrival": arrival,
                    }
                )
            )
        out = folder / "run"
        cmd = [str(self.harness), "run", str(workload), "--server", server.url]
        cmd += ["--tokenizer", str(self.args.tokenizer), "--out", str(out), "--overwrite"]
        if "--idle-baseline" in self.harness_flags:
            cmd += ["--idle-baseline", "0"]
        if "--no-report" in self.harness_flags:
            cmd += ["--no-report"]  # the report is drawn after the run: not the client's cost
        if workers is not None and self.workers_supported:
            cmd += ["--workers", str(workers)]
        if trace is not None:
            cmd += ["--max-requests", str(trace[1]), "--time-scale", "1"]
        server_before, busy_before = server.cpu_s(), machine_busy_s()
        proc = run_pinned(cmd, self.client_cores, folder / "harness.log", self.args.timeout_s)
        server_cpu = server.cpu_s() - server_before
        run.cpu_s, run.wall_s = proc.cpu_s, proc.wall_s
        run.other_cores = other_cores(machine_busy_s() - busy_before, proc, server_cpu)
        if proc.rc != 0:
            run.error = f"harness run exited {proc.rc}: {log_error(folder / 'harness.log')}"
            return run
        try:
            df = pd.read_parquet(out / "requests.parquet")
            manifest = json.loads((out / "manifest.json").read_text())
            summary = json.loads((out / "summary.json").read_text())
        except (OSError, ValueError) as err:
            run.error = f"harness results unreadable: {err}"
            return run
        for key, value in harness_figures(df).items():
            setattr(run, key, value)
        ok = ok_requests(df)
        if not ok.empty:
            run.first_send_ns = int(ok["sent_ns"].min())
            run.last_send_ns = int(ok["sent_ns"].max())
        send_lag = summary.get("send_lag_ms")
        if isinstance(send_lag, dict):
            run.send_lag_p50_ms = send_lag.get("p50")
            run.send_lag_p99_ms = send_lag.get("p99")
        health = summary.get("client")
        if isinstance(health, dict):
            run.client_health = health
            run.client_bound = health.get("client_bound")
        anchor = (manifest.get("anchor") or {}).get("perf_counter_ns")
        if isinstance(anchor, int):
            run.receipts = harness_receipts(df, anchor)
            if run.first_send_ns is not None and run.last_send_ns is not None:
                run.first_send_ns += anchor
                run.last_send_ns += anchor
        run.server_busy = _busy(server_cpu / server.cores_used, run)
        return run

    def floor_run(self, server: NullServer, label: str, requests: int) -> ClientRun:
        """The bare reader (the floor of a Python client) with the CPU part's shape."""
        run = ClientRun(FLOOR, label)
        folder = self._dir("floor")
        cmd = [sys.executable, str(BARE_READER), server.url, str(requests), str(CPU_STREAMS)]
        cmd += [str(OUTPUT_TOKENS), str(PROMPT_TOKENS)]
        server_before, busy_before = server.cpu_s(), machine_busy_s()
        proc = run_pinned(cmd, self.client_cores, folder / "floor.log", self.args.timeout_s)
        server_cpu = server.cpu_s() - server_before
        run.cpu_s, run.wall_s = proc.cpu_s, proc.wall_s
        run.other_cores = other_cores(machine_busy_s() - busy_before, proc, server_cpu)
        try:
            totals = json.loads((folder / "floor.log").read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError) as err:
            run.error = f"bare reader exited {proc.rc}: {err}"
            return run
        if proc.rc != 0:
            run.error = f"bare reader exited {proc.rc}: {totals}"
            return run
        run.completed, run.failed = totals["requests"], totals["failed"]
        run.output_tokens = totals["tokens"]
        run.tok_s = run.output_tokens / run.wall_s if run.wall_s else None
        run.server_busy = _busy(server_cpu / server.cores_used, run)
        return run

    def vllm_run(
        self,
        server: NullServer,
        label: str,
        requests: int,
        max_concurrency: int | None = None,
        rate_per_s: float | None = None,
    ) -> ClientRun:
        """`vllm bench serve` of the same shape (random dataset, fixed lengths, ignore EOS)."""
        run = ClientRun("vllm bench", label)
        if self.vllm is None:
            run.error = "vllm bench serve is not installed"
            return run
        folder = self._dir("vllm")
        cmd = [str(self.vllm), "bench", "serve", "--backend", "vllm", "--base-url", server.url]
        cmd += ["--endpoint", "/v1/completions", "--model", MODEL]
        cmd += ["--tokenizer", str(self.args.tokenizer), "--dataset-name", "random"]
        cmd += ["--random-input-len", str(PROMPT_TOKENS), "--random-output-len", str(OUTPUT_TOKENS)]
        cmd += ["--random-range-ratio", "0", "--num-prompts", str(requests), "--ignore-eos"]
        cmd += ["--request-id-prefix", VLLM_ID_PREFIX, "--seed", "0", "--disable-tqdm"]
        cmd += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99"]
        cmd += ["--save-result", "--save-detailed", "--result-dir", str(folder)]
        cmd += ["--result-filename", "bench.json"]
        cmd += ["--request-rate", "inf" if rate_per_s is None else f"{rate_per_s:g}"]
        if rate_per_s is not None:
            cmd += ["--burstiness", "1.0"]
        if max_concurrency is not None:
            cmd += ["--max-concurrency", str(max_concurrency)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env["VLLM_NO_USAGE_STATS"] = "1"
        server_before, busy_before = server.cpu_s(), machine_busy_s()
        proc = run_pinned(cmd, self.client_cores, folder / "vllm.log", self.args.timeout_s, env)
        server_cpu = server.cpu_s() - server_before
        run.cpu_s, run.wall_s = proc.cpu_s, proc.wall_s
        run.other_cores = other_cores(machine_busy_s() - busy_before, proc, server_cpu)
        if proc.rc != 0:
            run.error = f"vllm bench serve exited {proc.rc}: {log_error(folder / 'vllm.log')}"
            return run
        try:
            data = json.loads((folder / "bench.json").read_text())
        except (OSError, ValueError) as err:
            run.error = f"vllm bench result unreadable: {err}"
            return run
        run.completed, run.failed = int(data["completed"]), int(data.get("failed") or 0)
        run.output_tokens = int(data["total_output_tokens"])
        run.tok_s = float(data["output_throughput"])
        for name in ("ttft", "itl"):
            for q in ("p50", "p99"):
                value = data.get(f"{q}_{name}_ms")
                setattr(run, f"{name}_{q}_ms", None if value is None else float(value))
        try:
            run.receipts = vllm_receipts(data, VLLM_ID_PREFIX)
            starts = [s for s in data["start_times"] if s]
            run.first_send_ns, run.last_send_ns = round(min(starts) * 1e9), round(max(starts) * 1e9)
        except (KeyError, TypeError, ValueError):
            run.receipts = None
        run.server_busy = _busy(server_cpu / server.cores_used, run)
        return run


def machine_busy_s() -> float:
    """CPU seconds every core of the host has spent busy so far (all but idle and iowait)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def other_cores(busy_s: float, proc: Proc, server_cpu_s: float) -> float | None:
    """Cores' worth of CPU others used during a run: the host's busy time less the client's
    and the server's, over the run's wall time."""
    if proc.wall_s <= 0:
        return None
    return max(busy_s - proc.cpu_s - server_cpu_s, 0.0) / proc.wall_s


def _busy(server_cpu_s: float, run: ClientRun) -> float | None:
    """Server CPU seconds (per core it can use) over the load's span (tokens / tok/s)."""
    if not run.tok_s or not run.output_tokens:
        return None
    return server_cpu_s / (run.output_tokens / run.tok_s)


# --- the four parts -----------------------------------------------------------------------


def _clients(bench: Bench) -> list[str]:
    return ["harness", "vllm bench"] if bench.vllm is not None else ["harness"]


def _cpu_clients(bench: Bench) -> list[str]:
    return [*_clients(bench), FLOOR]


def _median_cpu(runs: Sequence[ClientRun]) -> tuple[float, int]:
    """Median CPU seconds and median output tokens of repeated runs of one size."""
    cpu = [r.cpu_s for r in runs if r.cpu_s is not None]
    tokens = [r.output_tokens for r in runs if r.output_tokens is not None]
    return (
        float(np.median(cpu)) if cpu else 0.0,
        int(np.median(tokens)) if tokens else 0,
    )


def part_cpu(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """CPU µs per streamed token, marginal between two run sizes, per client."""
    small, big = sizes.cpu_requests
    ttft, itl = CPU_SERVER
    out: dict[str, Any] = {
        "server": {"ttft_ms": ttft, "itl_ms": itl},
        "streams": CPU_STREAMS,
        "reps": bench.args.reps,
    }
    with null_server(bench.server_cores, bench.tmp, ttft, itl) as server:
        for client in _cpu_clients(bench):
            by_size: dict[int, list[ClientRun]] = {small: [], big: []}
            for _ in range(bench.args.reps):
                for n in (small, big):
                    label = f"{n} requests, {CPU_STREAMS} streams"
                    if client == "harness":
                        arrival = {"pattern": "closed", "concurrency": CPU_STREAMS}
                        run = bench.harness_run(server, label, n, arrival, workers=1)
                    elif client == FLOOR:
                        run = bench.floor_run(server, label, n)
                    else:
                        run = bench.vllm_run(server, label, n, max_concurrency=CPU_STREAMS)
                    by_size[n].append(run)
                    _progress(run)
            runs = by_size[small] + by_size[big]
            marginal = None
            reason = next((r.error for r in runs if r.error), None)
            if reason is None:
                marginal = marginal_us_per_token(
                    _median_cpu(by_size[small]), _median_cpu(by_size[big])
                )
            big_rates = [r.tok_s for r in by_size[big] if r.tok_s is not None]
            out[client] = {
                "runs": [r.public() for r in runs],
                "cpu_s_small_big": [_median_cpu(by_size[small])[0], _median_cpu(by_size[big])[0]],
                "tokens_small_big": [_median_cpu(by_size[small])[1], _median_cpu(by_size[big])[1]],
                "marginal_cpu_us_per_token": marginal,
                "tok_s_at_larger_size": float(np.median(big_rates)) if big_rates else None,
                "unavailable": reason,
            }
    harness = out["harness"]["marginal_cpu_us_per_token"]
    vllm = out.get("vllm bench", {}).get("marginal_cpu_us_per_token")
    out["target_us_per_token"] = vllm * TARGET_CPU_RATIO if vllm is not None else None
    out["target_met"] = (
        harness <= out["target_us_per_token"]
        if harness is not None and out["target_us_per_token"] is not None
        else None
    )
    return out


def part_peak(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """Highest output tok/s of one worker at rising concurrency (server TTFT 0, ITL 0)."""
    ttft, itl = PEAK_SERVER
    out: dict[str, Any] = {"server": {"ttft_ms": ttft, "itl_ms": itl}}
    with null_server(bench.server_cores, bench.tmp, ttft, itl) as server:
        for client in _clients(bench):
            runs = []
            for c in sizes.peak_concurrency:
                label = f"{sizes.peak_requests} requests, {c} streams"
                if client == "harness":
                    arrival = {"pattern": "closed", "concurrency": c}
                    run = bench.harness_run(server, label, sizes.peak_requests, arrival, workers=1)
                else:
                    run = bench.vllm_run(server, label, sizes.peak_requests, max_concurrency=c)
                runs.append(run)
                _progress(run)
            rates = [r.tok_s for r in runs if r.tok_s is not None]
            out[client] = {
                "runs": [r.public() for r in runs],
                "best_tok_s": max(rates) if rates else None,
                "unavailable": None if rates else next((r.error for r in runs if r.error), None),
            }
    return out


def part_latency(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """Client-added latency (receipt − server send stamp) at several Poisson token rates."""
    ttft, itl = LATENCY_SERVER
    e2e_ns = round((ttft + itl * (OUTPUT_TOKENS - 1)) * 1e6)
    out: dict[str, Any] = {"server": {"ttft_ms": ttft, "itl_ms": itl}, "rates": []}
    with null_server(bench.server_cores, bench.tmp, ttft, itl, stamps=True) as server:
        for rate in sizes.rates_tok_s:
            per_s = rate / OUTPUT_TOKENS
            requests = max(math.ceil(per_s * sizes.rate_seconds), 10)
            label = f"{rate:,} tok/s offered ({per_s:.1f} req/s Poisson, {requests} requests)"
            row: dict[str, Any] = {"offered_tok_s": rate, "requests": requests}
            for client in _clients(bench):
                server.clear_stamps()
                if client == "harness":
                    arrival = {"pattern": "poisson", "rate_per_s": per_s}
                    run = bench.harness_run(server, label, requests, arrival, workers=1)
                else:
                    run = bench.vllm_run(server, label, requests, rate_per_s=per_s)
                _progress(run)
                stamps = server.stamps()
                figures: dict[str, Any] = {"run": run.public()}
                gaps = stamp_gaps_ns(stamps)
                figures["server_itl_p50_ms"] = pct_ms(gaps, 50)
                figures["server_itl_p99_ms"] = pct_ms(gaps, 99)
                if run.receipts is None:
                    figures["unavailable"] = run.error or "no per-chunk receipt times"
                else:
                    joined = join_stamps(run.receipts, stamps)
                    figures.update(
                        added_p50_ms=pct_ms(joined.added_ns, 50),
                        added_p99_ms=pct_ms(joined.added_ns, 99),
                        added_max_ms=pct_ms(joined.added_ns, 100),
                        added_min_ms=pct_ms(joined.added_ns, 0),
                        chunks_joined=len(joined.added_ns),
                        requests_joined=joined.requests_joined,
                        requests_without_stamps=joined.requests_without_stamps,
                        chunk_count_mismatches=joined.chunk_count_mismatches,
                    )
                    if not len(joined.added_ns):
                        figures["unavailable"] = (
                            "no chunk joined to a server stamp (does the client send "
                            "X-Harness-Request-Id or X-Request-Id?)"
                        )
                    if run.first_send_ns is not None and run.last_send_ns is not None:
                        figures["steady_tok_s"] = steady_tok_s(
                            run.receipts, run.first_send_ns, run.last_send_ns, e2e_ns
                        )
                p99 = figures.get("added_p99_ms")
                figures["target_met"] = (
                    p99 <= TARGET_ADDED_P99_MS
                    if p99 is not None and client == "harness" and rate <= TARGET_ADDED_UP_TO_TOK_S
                    else None
                )
                row[client] = figures
            out["rates"].append(row)
    return out


def part_scaling(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """Throughput with 1…N harness workers against N × one worker's."""
    if not bench.workers_supported:
        return {"unavailable": "`harness run` has no --workers option in this checkout"}
    top = bench.args.max_workers or len(bench.client_cores)
    top = max(1, min(top, len(bench.client_cores)))
    ttft, itl = PEAK_SERVER
    out: dict[str, Any] = {
        "server": {"ttft_ms": ttft, "itl_ms": itl, "procs": bench.args.server_procs},
        "runs": [],
    }
    tok_s: dict[int, float | None] = {}
    with null_server(
        bench.server_cores, bench.tmp, ttft, itl, procs=bench.args.server_procs
    ) as server:
        for n in range(1, top + 1):
            streams = sizes.scaling_streams_per_worker * n
            requests = sizes.scaling_requests_per_worker * n
            label = f"{n} worker(s), {requests} requests, {streams} streams"
            arrival = {"pattern": "closed", "concurrency": streams}
            run = bench.harness_run(server, label, requests, arrival, workers=n)
            _progress(run)
            out["runs"].append(run.public())
            tok_s[n] = run.tok_s
    out["rows"] = scaling_rows(tok_s)
    for row in out["rows"]:
        ratio = row["ratio_to_n_x_one"]
        row["target_met"] = None if ratio is None else ratio >= TARGET_SCALING
    return out


def part_trace(bench: Bench, sizes: Sizes) -> dict[str, Any]:
    """A trace at its recorded times with one worker and with two: the send lag's p99."""
    if not bench.workers_supported:
        return {"unavailable": "`harness run` has no --workers option in this checkout"}
    ttft, itl = TRACE_SERVER
    out: dict[str, Any] = {
        "server": {"ttft_ms": ttft, "itl_ms": itl},
        "trace": TRACE.name,
        "requests": sizes.trace_requests,
        "runs": [],
    }
    lag: dict[int, float | None] = {}
    with null_server(bench.server_cores, bench.tmp, ttft, itl) as server:
        for n in (1, TRACE_WORKERS):
            label = f"{n} worker(s), first {sizes.trace_requests} requests at time scale 1"
            trace = (TRACE, sizes.trace_requests)
            run = bench.harness_run(server, label, 0, {}, workers=n, trace=trace)
            _progress(run)
            out["runs"].append(run.public())
            lag[n] = run.send_lag_p99_ms
    one, many = lag[1], lag[TRACE_WORKERS]
    out["target_ms"] = None if one is None else one + TARGET_SEND_LAG_SLACK_MS
    out["target_met"] = None if one is None or many is None else many <= out["target_ms"]
    return out


def _progress(run: ClientRun) -> None:
    state = f"error: {run.error[:300]}" if run.error else f"{fmt(run.tok_s, ',.0f')} tok/s"
    if run.other_cores is not None:
        state += f"; other processes {run.other_cores:.2f} cores"
    if run.client_bound:
        state += " (the harness says: client bound)"
    print(f"  .. {run.client:10s} {run.label}: {state}", flush=True)


# --- report -------------------------------------------------------------------------------


def machine(bench: Bench) -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "server_cores": sorted(bench.server_cores),
        "client_cores": sorted(bench.client_cores),
        "server_and_client_share_a_core": bench.shared_core,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _busy_note(runs: Sequence[Mapping[str, Any]]) -> str:
    notes = []
    busy = [r["server_busy"] for r in runs if r.get("server_busy") is not None]
    if busy and max(busy) >= SERVER_BUSY_WARN:
        notes.append(
            f"  note: the null server was {max(busy):.0%} busy in a run: that run's pace may be "
            "the server's, not the client's (more --server-cores / --server-procs)"
        )
    other = [r["other_cores"] for r in runs if r.get("other_cores") is not None]
    if other and max(other) >= OTHER_LOAD_WARN:
        notes.append(
            f"  note: other processes on this host used up to {max(other):.2f} cores during "
            "these runs: their load is in the figures"
        )
    bound = [r["label"] for r in runs if r.get("client_bound")]
    if bound:
        notes.append(f"  note: the harness reported itself client bound in: {'; '.join(bound)}")
    return "\n".join(notes)


def report(result: Mapping[str, Any]) -> str:
    lines: list[str] = []
    m = result["machine"]
    lines.append(f"Client self-check against the {LABEL} (figures are the clients', not a model's)")
    lines.append(
        f"machine: {m['cpu_model']}, {m['cores_online']} cores online, {m['cores_usable']} usable; "
        f"{LABEL} on core(s) {m['server_cores']}, clients on {m['client_cores']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}"
    )
    if m["server_and_client_share_a_core"]:
        lines.append("warning: one usable core: server and client share it")
    lines.append(f"workload: {PROMPT_TOKENS}-token prompts, {OUTPUT_TOKENS} output tokens")
    if result.get("quick"):
        lines.append(
            "--quick: small runs, a smoke of the script; a client's start-up noise can swamp "
            "its marginal CPU at these sizes"
        )
    cpu = result.get("cpu")
    if cpu:
        s = cpu["server"]
        lines.append(
            f"\n1. CPU per streamed token, marginal ({LABEL} TTFT {s['ttft_ms']:g} ms, "
            f"ITL {s['itl_ms']:g} ms, {cpu['streams']} streams; median of {cpu['reps']} rep(s))"
        )
        rows = []
        all_runs = []
        for client in ("harness", "vllm bench", FLOOR):
            if client not in cpu:
                continue
            c = cpu[client]
            all_runs += c["runs"]
            (cpu_a, cpu_b), (tok_a, tok_b) = c["cpu_s_small_big"], c["tokens_small_big"]
            rows.append(
                [
                    client,
                    f"{tok_a:,}/{tok_b:,}",
                    f"{cpu_a:.2f}/{cpu_b:.2f}",
                    fmt(c["marginal_cpu_us_per_token"], ".2f"),
                    fmt(c["tok_s_at_larger_size"], ",.0f"),
                    c["unavailable"][:60] if c["unavailable"] else "",
                ]
            )
        lines.append(
            _table(
                ["client", "tokens small/big", "CPU s small/big", "µs/token", "tok/s big", ""],
                rows,
            )
        )
        lines.append(
            f"  target: harness ≤ 1/3 of vllm bench's = {fmt(cpu['target_us_per_token'], '.2f')} "
            f"µs/token: {verdict(cpu['target_met'])}"
        )
        if FLOOR in cpu:
            lines.append(
                f"  {FLOOR}: scripts/bare_reader.py, a uvloop reader that stamps each read and "
                "parses nothing: what the kernel, the loop and the interpreter cost any Python "
                "client per token"
            )
        if note := _busy_note(all_runs):
            lines.append(note)
    peak = result.get("peak")
    if peak:
        lines.append(f"\n2. Highest sustained tok/s of one worker ({LABEL} TTFT 0, ITL 0)")
        rows = []
        all_runs = []
        for client in ("harness", "vllm bench"):
            if client not in peak:
                continue
            all_runs += peak[client]["runs"]
            for r in peak[client]["runs"]:
                rows.append(
                    [
                        client,
                        r["label"],
                        fmt(r["tok_s"], ",.0f"),
                        fmt(r["server_busy"], ".0%"),
                        (r["error"] or "")[:60],
                    ]
                )
            rows.append([client, "best", fmt(peak[client]["best_tok_s"], ",.0f"), "", ""])
        lines.append(_table(["client", "run", "tok/s", "server busy", ""], rows))
        if note := _busy_note(all_runs):
            lines.append(note)
    lat = result.get("latency")
    if lat:
        s = lat["server"]
        lines.append(
            f"\n3. Client-added latency: receipt − {LABEL}'s send stamp per chunk "
            f"({LABEL} TTFT {s['ttft_ms']:g} ms, ITL {s['itl_ms']:g} ms, Poisson arrivals)"
        )
        rows = []
        for row in lat["rates"]:
            for client in ("harness", "vllm bench"):
                if client not in row:
                    continue
                f = row[client]
                r = f["run"]
                rows.append(
                    [
                        f"{row['offered_tok_s']:,}",
                        client,
                        fmt(f.get("steady_tok_s") or r["tok_s"], ",.0f"),
                        fmt(f.get("added_p50_ms"), ".3f"),
                        fmt(f.get("added_p99_ms"), ".3f"),
                        fmt(r["ttft_p99_ms"], ".1f"),
                        fmt(r["itl_p99_ms"], ".2f"),
                        fmt(f.get("server_itl_p99_ms"), ".2f"),
                        verdict(f.get("target_met")) if client == "harness" else "",
                        (f.get("unavailable") or "")[:50],
                    ]
                )
        lines.append(
            _table(
                [
                    "offered tok/s",
                    "client",
                    "got tok/s",
                    "added p50 ms",
                    "added p99 ms",
                    "TTFT p99",
                    "ITL p99",
                    "server ITL p99",
                    "≤ 1 ms",
                    "",
                ],
                rows,
            )
        )
        lines.append(
            f"  set: TTFT {s['ttft_ms']:g} ms, ITL {s['itl_ms']:g} ms; target: harness added "
            f"p99 ≤ {TARGET_ADDED_P99_MS:g} ms up to {TARGET_ADDED_UP_TO_TOK_S:,} tok/s per worker "
            "(got tok/s: while arrivals kept the load level, else over the whole run)"
        )
        runs = [
            row[c]["run"] for row in lat["rates"] for c in ("harness", "vllm bench") if c in row
        ]
        if note := _busy_note(runs):
            lines.append(note)
    scaling = result.get("scaling")
    if scaling:
        lines.append(f"\n4. Throughput with N harness workers ({LABEL} TTFT 0, ITL 0)")
        if scaling.get("unavailable"):
            lines.append(f"  unavailable: {scaling['unavailable']}; scaling part skipped")
        else:
            rows = [
                [
                    str(r["workers"]),
                    fmt(r["tok_s"], ",.0f"),
                    fmt(r["ratio_to_n_x_one"], ".2f"),
                    verdict(r["target_met"]),
                ]
                for r in scaling["rows"]
            ]
            lines.append(_table(["workers", "tok/s", "ratio to N × one", "≥ 0.8"], rows))
            if note := _busy_note(scaling["runs"]):
                lines.append(note)
            errors = [r["error"] for r in scaling["runs"] if r.get("error")]
            if errors:
                lines.append(f"  error: {errors[0][:300]}")
    trace = result.get("trace")
    if trace:
        lines.append(
            f"\n5. Send lag of a trace at its recorded times: the first {trace.get('requests')} "
            f"requests of {trace.get('trace')} ({LABEL} TTFT {TRACE_SERVER[0]:g} ms, "
            f"ITL {TRACE_SERVER[1]:g} ms)"
        )
        if trace.get("unavailable"):
            lines.append(f"  unavailable: {trace['unavailable']}; trace part skipped")
        else:
            rows = [
                [
                    r["label"],
                    fmt(r["send_lag_p50_ms"], ".2f"),
                    fmt(r["send_lag_p99_ms"], ".2f"),
                    (r["error"] or "")[:60],
                ]
                for r in trace["runs"]
            ]
            lines.append(_table(["run", "send lag p50 ms", "send lag p99 ms", ""], rows))
            lines.append(
                f"  target: {TRACE_WORKERS} workers' p99 ≤ one worker's + "
                f"{TARGET_SEND_LAG_SLACK_MS:g} ms = {fmt(trace['target_ms'], '.2f')} ms: "
                f"{verdict(trace['target_met'])}"
            )
            if note := _busy_note(trace["runs"]):
                lines.append(note)
    return "\n".join(lines)


PARTS: dict[str, Callable[[Bench, Sizes], dict[str, Any]]] = {
    "cpu": part_cpu,
    "peak": part_peak,
    "latency": part_latency,
    "scaling": part_scaling,
    "trace": part_trace,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma list of " + ", ".join(PARTS))
    p.add_argument("--max-workers", type=int, default=None, help="scaling: most workers tried")
    p.add_argument("--server-cores", type=int, default=1, help="cores kept for the null server")
    p.add_argument(
        "--server-procs", type=int, default=1, help="null server processes in the scaling part"
    )
    p.add_argument("--reps", type=int, default=1, help="CPU part: runs per size (medians)")
    p.add_argument("--no-vllm", action="store_true", help="skip vllm bench serve")
    p.add_argument("--harness", default=str(HARNESS))
    p.add_argument("--vllm", default=str(VLLM))
    p.add_argument("--tokenizer", default=str(TOKENIZER))
    p.add_argument("--timeout-s", type=float, default=600.0, help="per client run")
    p.add_argument("--keep", type=Path, default=None, help="keep every run directory here")
    p.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in parts if x not in PARTS]
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if args.max_workers is not None and args.max_workers < 1:
        p.error("--max-workers must be 1 or more")
    if args.reps < 1:
        p.error("--reps must be 1 or more")
    if args.server_cores < 1 or args.server_procs < 1:
        p.error("--server-cores and --server-procs must be 1 or more")
    sizes = QUICK_SIZES if args.quick else DEFAULT_SIZES
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp_name:
        tmp = args.keep or Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        bench = Bench(args, tmp)
        result: dict[str, Any] = {
            "label": f"{LABEL}: the clients' own figures",
            "machine": machine(bench),
            "quick": args.quick,
            "sizes": asdict(sizes),
            "vllm_bench": str(bench.vllm) if bench.vllm else None,
            "harness_workers_option": bench.workers_supported,
        }
        print(report({"machine": result["machine"]}), flush=True)
        if bench.vllm is None:
            print("vllm bench serve: not installed or skipped; harness figures only")
        started = time.monotonic()
        for name in parts:
            print(f"running part: {name}", flush=True)
            result[name] = PARTS[name](bench, sizes)
        result["elapsed_s"] = time.monotonic() - started
    print()
    print(report(result))
    print(f"\n(elapsed {result['elapsed_s']:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
