#!/usr/bin/env python3
"""Check GPU attribution on a GPU node: sample with a process's PID as the server's.

Given a PID (e.g. a PyTorch process using one GPU), or with --load-gpu K a PyTorch child this
script starts on GPU K, samples NVML for --seconds with that process as the server, then
prints the GPUs attribution chose (and how), and per GPU the energy counter's delta against
integrated instantaneous power (and integrated averaged power). Exits 2 where there is no
NVML (or, for --load-gpu, no CUDA-enabled PyTorch), 1 where the server's GPUs could not be
told (or --load-gpu's GPU was not the one chosen), else 0.

    .venv/bin/python scripts/gpu_attribution_check.py --load-gpu 0 --seconds 20
    .venv/bin/python scripts/gpu_attribution_check.py --pid 12345 --seconds 20
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.records import RunClock
from harness.telemetry.attribution import GpuAttributor
from harness.telemetry.cpu import CpuReader
from harness.telemetry.energy import (
    counter_points,
    delta_j,
    other_gpus_energy,
    power_points,
    split_gpu_rows,
    summarize_energy,
)
from harness.telemetry.gpu import POWER_INSTANT, GpuReader
from harness.telemetry.sampler import Sampler

LOAD = """
import sys, time, torch
device = torch.device(f"cuda:{int(sys.argv[1])}")
a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
print("loaded", flush=True)
end = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    for _ in range(20):
        a @ a
    torch.cuda.synchronize(device)
"""
"""The PyTorch child of --load-gpu: bf16 matmuls on one GPU for the given seconds."""


def fail(message: str) -> int:
    """Say clearly why the check can't run here, and exit 2."""
    print(f"gpu_attribution_check: cannot run: {message}", file=sys.stderr)
    return 2


def start_load(gpu: int, seconds: float) -> subprocess.Popen[str] | str:
    """A PyTorch child loading GPU `gpu` (CUDA's index in PCI order, so NVML's), once it has
    put its tensor there; or why it could not start."""
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (needed for --load-gpu; or give --pid)"
    env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    child = subprocess.Popen(
        [sys.executable, "-c", LOAD, str(gpu), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None and child.stderr is not None
    if child.stdout.readline().strip() != "loaded":
        child.wait()
        tail = child.stderr.read().strip().splitlines()[-3:]
        return f"the PyTorch child did not load GPU {gpu}: {' / '.join(tail) or 'no output'}"
    return child


def device_energy(
    rows: list[dict[str, Any]], device: int, window: tuple[int, int]
) -> dict[str, Any]:
    """One GPU over the window: counter delta, integrated instantaneous power, integrated
    averaged power, and the counter's disagreement with each (%)."""
    series = [r for r in rows if r["source"] == "gpu" and r["device"] == device]
    counter, resets = counter_points(series)
    by_counter = delta_j(counter, window)
    instant = [r for r in series if r.get("power_source") == POWER_INSTANT]
    by_instant = delta_j(power_points(instant), window)
    averaged = [{"t_ns": r["t_ns"], "power_w": r.get("power_avg_w")} for r in series]
    by_average = delta_j(power_points(averaged), window)

    def off(value: float | None) -> float | None:
        if value is None or not by_counter:
            return None
        return 100.0 * (value - by_counter) / by_counter

    return {
        "device": device,
        "counter_j": by_counter,
        "counter_resets": resets,
        "instant_integrated_j": by_instant,
        "average_integrated_j": by_average,
        "instant_vs_counter_pct": off(by_instant),
        "average_vs_counter_pct": off(by_average),
        "instant_samples": len(instant),
        "samples": len(series),
    }


def sample(
    reader: GpuReader, pid: int, seconds: float, rate_hz: float, now_ns: Any = None
) -> tuple[list[dict[str, Any]], GpuAttributor, dict[str, Any]]:
    """Sample every GPU for `seconds` with `pid` as the server's; rows, the attributor and
    the sampler's cost."""
    clock = RunClock()
    attributor = GpuAttributor(reader, pid, recheck_s=1.0)
    sampler = Sampler(
        reader,
        CpuReader(pid),
        None,
        now_ns or clock.now_ns,
        rate_hz=rate_hz,
        server_pid=pid,
        attribution=attributor,
    )
    sampler.start()
    time.sleep(seconds)
    sampler.stop()
    return (
        sampler.rows(),
        attributor,
        {"overhead": sampler.overhead(), "problems": sampler.problems},
    )


def report(rows: list[dict[str, Any]], attributor: GpuAttributor) -> dict[str, Any]:
    """What the check prints: the attribution, and per GPU the energy cross-check; the
    server's and the other GPUs' energy as a run's summary would give them."""
    found = attributor.result()
    times = [int(r["t_ns"]) for r in rows if r["source"] == "gpu"]
    window = (min(times), max(times)) if times else (0, 0)
    devices = sorted({int(r["device"]) for r in rows if r["source"] == "gpu"})
    out: dict[str, Any] = {
        "attribution": attributor.to_dict(),
        "window_ns": list(window),
        "gpus": [{**device_energy(rows, d, window), "server": d in found.devices} for d in devices],
    }
    if found.known:
        ours, others = split_gpu_rows(rows, found.devices)
        out["server_energy"] = summarize_energy(ours, window)
        out["other_gpus_energy"] = other_gpus_energy(others, window) if others else None
    return out


def main(argv: list[str] | None = None, nvml: Any | None = None, now_ns: Any = None) -> int:
    """Sample with the PID as the server's; print the GPUs chosen and the energy checks.
    `nvml` and `now_ns` stand in for pynvml and the run clock in tests."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[1])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--pid", type=int, help="the process to treat as the server")
    who.add_argument("--load-gpu", type=int, metavar="K", help="start a PyTorch load on GPU K")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to sample")
    parser.add_argument("--rate-hz", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    reader = GpuReader(nvml)
    if not reader.available:
        return fail(f"no usable NVIDIA GPU (NVML): {reader.reason}")
    child: subprocess.Popen[str] | None = None
    try:
        if args.load_gpu is not None:
            started = start_load(args.load_gpu, args.seconds + 5.0)
            if isinstance(started, str):
                return fail(started)
            child, pid = started, started.pid
        else:
            pid = args.pid
        rows, attributor, cost = sample(reader, pid, args.seconds, args.rate_hz, now_ns)
    finally:
        reader.close()
        if child is not None:
            child.kill()
            child.wait()
    result = {**report(rows, attributor), **cost, "gpu_status": reader.status()}
    found = attributor.result()
    chosen = ", ".join(str(d) for d in found.devices) or "none"
    print(
        f"server pid {pid}: GPUs {chosen} by {found.method}"
        + (f" ({found.reason})" if found.reason else "")
    )
    for gpu in result["gpus"]:
        whose = "server's" if gpu["server"] else "other"
        print(
            f"gpu{gpu['device']} ({whose}): counter {gpu['counter_j']} J; integrated "
            f"instantaneous power {gpu['instant_integrated_j']} J "
            f"({_pct(gpu['instant_vs_counter_pct'])}); integrated averaged power "
            f"{gpu['average_integrated_j']} J ({_pct(gpu['average_vs_counter_pct'])}); "
            f"{gpu['instant_samples']}/{gpu['samples']} samples instantaneous"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if not found.known:
        return 1
    if args.load_gpu is not None and found.devices != (args.load_gpu,):
        print(f"expected GPU {args.load_gpu} alone", file=sys.stderr)
        return 1
    return 0


def _pct(value: float | None) -> str:
    return "n/a vs counter" if value is None else f"{value:+.2f} % vs counter"


if __name__ == "__main__":
    sys.exit(main())
