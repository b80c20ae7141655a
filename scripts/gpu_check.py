#!/usr/bin/env python3
"""Check GPU energy measurement on a GPU node: load the GPU with a PyTorch matmul while sampling.

Prints, per GPU under load: the NVML energy counter's delta vs trapezoid-integrated power
(agreement %, Zeus reports ~1 %), peak power vs the enforced power limit, and whether the
counter only increased. Exits 2 where there is no GPU, NVML or CUDA-enabled PyTorch.

    .venv/bin/python scripts/gpu_check.py --seconds 30
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.records import RunClock
from harness.telemetry.cpu import CpuReader
from harness.telemetry.energy import counter_points, delta_j, power_points, summarize_energy
from harness.telemetry.gpu import GpuReader, gpu_inventory
from harness.telemetry.rapl import RaplReader
from harness.telemetry.sampler import Sampler


def fail(message: str) -> int:
    """Say clearly why the check can't run here, and exit 2."""
    print(f"gpu_check: cannot run: {message}", file=sys.stderr)
    return 2


def load_gpu(torch: Any, seconds: float, size: int) -> int:
    """Run bf16 matmuls on every visible GPU for `seconds`; returns how many were issued."""
    devices = [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    mats = [(torch.randn(size, size, device=d, dtype=torch.bfloat16),) * 2 for d in devices]
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        for a, b in mats:
            a @ b
        n += 1
        if n % 20 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    return n * len(devices)


MAX_DISAGREEMENT_PCT = 5.0
"""Counter vs integrated power beyond this fails the check (Zeus reports ~1 %)."""


def device_check(
    rows: list[dict[str, Any]], device: int, window: tuple[int, int]
) -> dict[str, Any]:
    """One GPU's figures over the load window: counter delta vs integrated power, peak power
    vs the power limit, whether the raw counter only increased, and whether it passed."""
    series = [r for r in rows if r["source"] == "gpu" and r["device"] == device]
    counter, resets = counter_points(series)
    by_counter = delta_j(counter, window)
    by_power = delta_j(power_points(series), window)
    raw = [r["energy_j"] for r in series if r["energy_j"] is not None]
    monotonic = all(b >= a for a, b in itertools.pairwise(raw)) if raw else None
    powers = [r["power_w"] for r in series if r["power_w"] is not None]
    limits = [r["power_limit_w"] for r in series if r["power_limit_w"] is not None]
    peak = max(powers) if powers else None
    limit = limits[-1] if limits else None
    agreement = (
        100.0 * abs(by_power - by_counter) / by_counter
        if by_counter and by_power is not None
        else None
    )
    return {
        "device": device,
        "counter_j": by_counter,
        "power_integrated_j": by_power,
        "disagreement_pct": agreement,
        "peak_power_w": peak,
        "power_limit_w": limit,
        "peak_over_limit_pct": 100.0 * peak / limit if peak and limit else None,
        "counter_only_increased": monotonic,
        "counter_resets": resets,
        "passed": monotonic is not False
        and (agreement is None or agreement <= MAX_DISAGREEMENT_PCT),
    }


def main(argv: list[str] | None = None) -> int:
    """Idle, load, idle while sampling at --rate-hz; print the energy cross-checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="matmul load duration")
    parser.add_argument("--idle-s", type=float, default=3.0, help="idle before and after")
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=8192, help="matrix side")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    gpu = GpuReader()
    if not gpu.available:
        return fail(f"no usable NVIDIA GPU: {gpu.reason}")
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return fail("PyTorch is not installed")
    if not torch.cuda.is_available():
        return fail("PyTorch sees no CUDA device (CPU-only build or no driver)")

    clock = RunClock()
    sampler = Sampler(gpu, CpuReader(), RaplReader(), clock.now_ns, rate_hz=args.rate_hz)
    sampler.start()
    time.sleep(args.idle_s)
    load_start = clock.now_ns()
    matmuls = load_gpu(torch, args.seconds, args.size)
    load_end = clock.now_ns()
    time.sleep(args.idle_s)
    sampler.stop()
    gpu.close()

    rows = sampler.rows()
    window = (load_start, load_end)
    report: dict[str, Any] = {
        "inventory": gpu_inventory(),
        "matmuls": matmuls,
        "overhead": sampler.overhead(),
        "problems": sampler.problems,
        "gpu_status": gpu.status(),
        "summary": summarize_energy(rows, window, idle_window=(0, load_start)),
        "gpus": [],
    }
    ok = True
    for device in sorted({int(r["device"]) for r in rows if r["source"] == "gpu"}):
        info = device_check(rows, device, window)
        report["gpus"].append(info)
        ok = ok and bool(info["passed"])
        agreement = info["disagreement_pct"]
        print(
            f"gpu{device}: counter {info['counter_j']} J vs integrated power "
            f"{info['power_integrated_j']} J (disagreement "
            f"{agreement if agreement is None else round(agreement, 2)} %); peak "
            f"{info['peak_power_w']} W of limit {info['power_limit_w']} W; counter only "
            f"increased: {info['counter_only_increased']}"
        )
    print(json.dumps(report["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
