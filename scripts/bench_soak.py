#!/usr/bin/env python3
"""Memory of a long run: the harness's RSS over a closed-loop soak, and its slope.

Runs `harness run` in closed loop for `--minutes` against a server (by default the null
server, scripts/null_server.py, started here: the figures are then the harness's own memory,
not an inference server's), samples the harness process's RSS every `--every-s` seconds and
prints, over the load (from the first journalled request, less the first `--settle-min`
minutes, to the end of the run's duration): the RSS at its start and end, its least-squares
slope (MiB per hour) and bytes per request; then the peak while the run writes its tables
and summary. A flat RSS is a slope near zero.

    .venv/bin/python scripts/bench_soak.py --minutes 30 --json soak.json
    .venv/bin/python scripts/bench_soak.py --minutes 10 --server http://127.0.0.1:18000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_health(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no server answered at {url} within {timeout_s:g} s")


def _workload(path: Path, args: argparse.Namespace) -> None:
    """A closed-loop workload of fixed-length requests, more than the soak can send."""
    path.write_text(
        json.dumps(
            {
                "name": "soak",
                "source": {
                    "synthetic": "random",
                    "params": {
                        "requests": args.requests,
                        "input_tokens": args.input_tokens,
                        "output_tokens": args.output_tokens,
                    },
                },
                "arrival": {"pattern": "closed", "concurrency": args.concurrency},
                "limits": {"duration_s": args.minutes * 60},
            }
        )
    )


def _slope_mib_per_h(samples: list[tuple[float, int]], settle_s: float) -> float | None:
    """Least-squares RSS slope over the samples after `settle_s`, in MiB per hour."""
    kept = [(t, r) for t, r in samples if t >= settle_s]
    if len(kept) < 3:
        return None
    t = np.array([k[0] for k in kept]) / 3600.0
    rss = np.array([k[1] for k in kept]) / MIB
    slope, _ = np.polyfit(t, rss, 1)
    return float(slope)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every-s", type=float, default=10.0)
    parser.add_argument("--settle-min", type=float, default=2.0)
    parser.add_argument("--server", default=None, help="attach here instead of a null server")
    parser.add_argument("--tokenizer", default=str(ROOT / ".vllm" / "model"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=400_000)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--ttft-ms", type=float, default=20.0)
    parser.add_argument("--itl-ms", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    null: subprocess.Popen[bytes] | None = None
    url = args.server
    if url is None:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        null = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "scripts" / "null_server.py"),
                "--port",
                str(port),
                "--ttft-ms",
                str(args.ttft_ms),
                "--itl-ms",
                str(args.itl_ms),
            ]
        )
    try:
        _wait_health(url)
        with tempfile.TemporaryDirectory(prefix="harness-soak-") as tmp:
            workload = Path(tmp) / "soak.yaml"
            _workload(workload, args)
            out = Path(tmp) / "run"
            harness = Path(sys.executable).with_name("harness")
            cmd = [
                str(harness),
                "run",
                str(workload),
                "--server",
                url,
                "--tokenizer",
                args.tokenizer,
                "--out",
                str(out),
                "--sample-hz",
                "10",
            ]
            log = open(Path(tmp) / "harness.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            ps = psutil.Process(proc.pid)
            samples: list[tuple[float, int]] = []
            t0 = time.monotonic()
            load_start: float | None = None
            journal = out / "requests.partial.jsonl"
            while proc.poll() is None:
                try:
                    samples.append((time.monotonic() - t0, ps.memory_info().rss))
                except psutil.NoSuchProcess:
                    break
                if load_start is None and journal.exists() and journal.stat().st_size > 0:
                    load_start = time.monotonic() - t0
                time.sleep(args.every_s)
            code = proc.wait()
            # The largest RSS the harness ever had (the kernel's high-water mark of a waited
            # child), which sampling every few seconds can miss at the run's end.
            peak_rss_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
            log.close()
            if code != 0:
                print((Path(tmp) / "harness.log").read_text()[-3000:], file=sys.stderr)
                print(f"harness run exited {code}", file=sys.stderr)
            summary = json.loads((out / "summary.json").read_text())
    finally:
        if null is not None:
            null.terminate()
            null.wait(10)
    # The load runs from the first journalled request for the run's duration; after it the
    # run writes its tables and summary.
    begin = (load_start or 0.0) + args.settle_min * 60
    end = (load_start or 0.0) + args.minutes * 60
    during = [(t, r) for t, r in samples if begin <= t <= end]
    slope = _slope_mib_per_h(during, begin)
    requests = int(summary.get("requests_completed") or 0)
    duration_s = float(summary.get("duration_s") or 0.0)
    after = [r for _, r in during]
    finishing = [r for t, r in samples if t > end]
    per_request = (
        slope * MIB * (duration_s / 3600) / requests
        if slope is not None and requests and duration_s
        else None
    )
    result: dict[str, Any] = {
        "server": "null server (harness memory only)" if args.server is None else url,
        "minutes": args.minutes,
        "requests_completed": requests,
        "requests_per_s": requests / duration_s if duration_s else None,
        "rss_load_start_mib": after[0] / MIB if after else None,
        "rss_load_end_mib": after[-1] / MIB if after else None,
        "rss_load_max_mib": max(after) / MIB if after else None,
        "rss_slope_mib_per_h": slope,
        "bytes_per_request_from_slope": per_request,
        "rss_peak_writing_results_mib": max(finishing) / MIB if finishing else None,
        "rss_peak_whole_run_mib": peak_rss_bytes / MIB,
        "samples": len(samples),
        "settle_min": args.settle_min,
    }
    for key, value in result.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else value
        print(f"{key:32} {shown}")
    if args.json is not None:
        args.json.write_text(json.dumps({**result, "rss_series": samples}, indent=2) + "\n")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
