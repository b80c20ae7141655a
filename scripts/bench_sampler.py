#!/usr/bin/env python3
"""Measure the telemetry sampler's own cost: its threads' CPU time as % of one core.

Runs the real Sampler at --rate-hz for --seconds with the real CPU (psutil) and RAPL readers,
and NVML where it initialises, then prints CPU seconds / wall seconds (target ≤ 1 %). With
--server URL it also scrapes that server's /metrics at 1 Hz as a run does, and with
--server-pid it reads the server's process tree every sample.

    .venv/bin/python scripts/bench_sampler.py --seconds 20
    .venv/bin/python scripts/bench_sampler.py --seconds 30 --server http://127.0.0.1:8000 \
        --server-pid "$(pgrep -f 'vllm serve' | head -1)"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.records import RunClock
from harness.telemetry.cpu import CpuReader
from harness.telemetry.gpu import GpuReader
from harness.telemetry.rapl import RaplReader
from harness.telemetry.sampler import SERVER_SAMPLE_NAMES, Sampler
from harness.telemetry.server_metrics import metrics_scraper

TARGET_PCT = 1.0


def main(argv: list[str] | None = None) -> int:
    """Run the sampler for a while and report its CPU cost; exit 1 above target with --strict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--server-pid", type=int, default=None, help="also read this tree")
    parser.add_argument("--server", default=None, help="also scrape URL/metrics at 1 Hz")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 above {TARGET_PCT} %%")
    args = parser.parse_args(argv)

    gpu = GpuReader()
    rapl = RaplReader()
    scraper = (
        metrics_scraper([(args.server, {})], names=SERVER_SAMPLE_NAMES)
        if args.server is not None
        else None
    )
    sampler = Sampler(
        gpu,
        CpuReader(),
        rapl,
        RunClock().now_ns,
        rate_hz=args.rate_hz,
        server_pid=args.server_pid,
        metrics_scrape=scraper,
    )
    sampler.start()
    time.sleep(args.seconds)
    sampler.stop()
    if scraper is not None:
        scraper.close()
    server_rows = sum(1 for row in sampler.rows() if row["source"] == "server")
    gpus = gpu.device_count
    gpu.close()
    cost = sampler.overhead()
    pct = 100.0 * cost["cpu_s"] / cost["wall_s"] if cost["wall_s"] else float("nan")
    result = {
        "rate_hz": args.rate_hz,
        "samples": int(cost["samples"]),
        "expected_samples": int(args.seconds * args.rate_hz),
        "cpu_s": round(cost["cpu_s"], 4),
        "wall_s": round(cost["wall_s"], 3),
        "pct_of_one_core": round(pct, 3),
        "per_sample_ms": round(1000 * cost["cpu_s"] / max(1.0, cost["samples"]), 3),
        "gpu": f"{gpus} GPU(s) via NVML" if gpus else f"unavailable: {gpu.reason}",
        "rapl": "available" if rapl.available else f"unavailable: {rapl.reason}",
        "server_tree": args.server_pid is not None,
        "metrics_scrapes": server_rows if args.server is not None else None,
        "cpus": os.cpu_count(),
        "problems": sampler.problems,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>17}: {value}")
        verdict = "within" if pct <= TARGET_PCT else "ABOVE"
        print(f"sampler CPU {pct:.3f} % of one core: {verdict} the {TARGET_PCT} % target")
    return 1 if args.strict and pct > TARGET_PCT else 0


if __name__ == "__main__":
    sys.exit(main())
