#!/usr/bin/env python3
"""Cross-check the harness against vLLM's own client on one server.

Runs the same random workload (fixed input and output lengths, same request count and
concurrency cap) through `vllm bench serve` and through `harness run`, alternating, for
several repetitions, and prints output token counts, output throughput and median TPOT
of each, their ratios, and the run-to-run spread of each client. A repetition in which
either client saw a request fail is run once more; the JSON's `reps_rerun` says which and why.

    .venv/bin/python scripts/crosscheck_vllm_bench.py --server http://127.0.0.1:8000 \
        --tokenizer .vllm/model --reps 3 --json crosscheck.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_vllm_bench(args: argparse.Namespace, out_dir: Path, seed: int) -> dict[str, Any]:
    """One `vllm bench serve` run; returns its figures."""
    cmd = [
        args.vllm,
        "bench",
        "serve",
        "--backend",
        "vllm",
        "--base-url",
        args.server,
        "--endpoint",
        "/v1/completions",
        "--model",
        args.model,
        "--tokenizer",
        args.tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(args.input_len),
        "--random-output-len",
        str(args.output_len),
        "--random-range-ratio",
        "0",
        "--num-prompts",
        str(args.num_prompts),
        "--max-concurrency",
        str(args.max_concurrency),
        "--request-rate",
        "inf",
        "--ignore-eos",
        "--seed",
        str(seed),
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,90,99",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        str(out_dir),
        "--result-filename",
        "bench.json",
        "--disable-tqdm",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout_s)
    if proc.returncode != 0:
        sys.exit(f"vllm bench serve failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads((out_dir / "bench.json").read_text())
    lens = [int(n) for n in data.get("output_lens", [])]
    return {
        "completed": int(data["completed"]),
        "output_tokens": int(data["total_output_tokens"]),
        "output_lens": lens,
        "output_throughput_tok_s": float(data["output_throughput"]),
        "median_tpot_ms": float(data["median_tpot_ms"]),
        "median_ttft_ms": float(data["median_ttft_ms"]),
        "duration_s": float(data["duration"]),
        "errors": sorted({str(e) for e in data.get("errors", []) if e})[:5],
    }


def run_harness(args: argparse.Namespace, out_dir: Path, seed: int) -> dict[str, Any]:
    """One `harness run` of the same shape; returns its figures."""
    workload = out_dir / "random.yaml"
    workload.write_text(
        json.dumps(
            {
                "name": "crosscheck-random",
                "source": {
                    "synthetic": "random",
                    "seed": seed,
                    "params": {
                        "requests": args.num_prompts,
                        "input_tokens": args.input_len,
                        "output_tokens": args.output_len,
                        "range_ratio": 0.0,
                    },
                },
                "arrival": {"pattern": "trace", "time_scale": 0},
                "limits": {"max_concurrency": args.max_concurrency},
            }
        )
    )
    run_dir = out_dir / "run"
    cmd = [
        args.harness,
        "run",
        str(workload),
        "--server",
        args.server,
        "--tokenizer",
        args.tokenizer,
        "--out",
        str(run_dir),
        "--seed",
        str(seed),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    # Exit 1 with a summary: the run went through and some requests failed (counted below).
    ran = proc.returncode == 0 or (proc.returncode == 1 and (run_dir / "summary.json").is_file())
    if not ran:
        sys.exit(f"harness run failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr}")
    summary = json.loads((run_dir / "summary.json").read_text())
    import pandas as pd

    df = pd.read_parquet(run_dir / "requests.parquet")
    return {
        "completed": int(summary["requests_completed"]),
        "output_tokens": int(summary["output_tokens"]),
        "output_lens": sorted(int(n) for n in df["output_tokens"].dropna()),
        "output_throughput_tok_s": float(summary["output_throughput_tok_s"]),
        "median_tpot_ms": float(summary["tpot_ms"]["p50"]),
        "median_ttft_ms": float(summary["ttft_ms"]["p50"]),
        "duration_s": float(summary["duration_s"]),
        "errors": list(summary.get("errors") or {})[:5],  # the most frequent first
    }


def spread(values: list[float]) -> float:
    """Relative spread (max − min) / mean of repeated runs."""
    return (max(values) - min(values)) / statistics.fmean(values) if values else float("nan")


def main() -> None:
    """Parse options, run both clients `--reps` times alternately, print and save figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--server", required=True)
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--tokenizer", default=str(ROOT / ".vllm" / "model"))
    p.add_argument("--vllm", default=str(ROOT / ".vllm" / "venv" / "bin" / "vllm"))
    p.add_argument("--harness", default=str(ROOT / ".venv" / "bin" / "harness"))
    p.add_argument("--num-prompts", type=int, default=200)
    p.add_argument("--input-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=128)
    p.add_argument("--max-concurrency", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--timeout-s", type=float, default=600)
    p.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = p.parse_args()

    rows: dict[str, list[dict[str, Any]]] = {"vllm_bench": [], "harness": []}
    reruns: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crosscheck-") as tmp:
        for rep in range(args.reps):
            for attempt in range(2):
                pair = {}
                for name, fn in (("vllm_bench", run_vllm_bench), ("harness", run_harness)):
                    out = Path(tmp) / f"{name}-{rep}-{attempt}"
                    out.mkdir()
                    fig = pair[name] = fn(args, out, seed=rep)
                    print(
                        f"rep {rep} {name:10s} completed {fig['completed']:4d} "
                        f"output_tokens {fig['output_tokens']:6d} "
                        f"throughput {fig['output_throughput_tok_s']:8.1f} tok/s "
                        f"median TPOT {fig['median_tpot_ms']:7.2f} ms "
                        f"median TTFT {fig['median_ttft_ms']:8.1f} ms",
                        flush=True,
                    )
                failed = {n: f for n, f in pair.items() if f["completed"] < args.num_prompts}
                if not failed or attempt == 1:
                    break
                # A request the server failed spoils the comparison of this repetition: it is
                # run once more, and the rerun and its errors are in the figures.
                reruns.append(
                    {
                        "rep": rep,
                        **{
                            n: {"completed": f["completed"], "errors": f["errors"]}
                            for n, f in failed.items()
                        },
                    }
                )
                print(f"rep {rep}: requests failed ({sorted(failed)}), run once more", flush=True)
            for name, fig in pair.items():
                rows[name].append(fig)
    result: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "json"}}
    result["reps_rerun"] = reruns
    for name, figs in rows.items():
        thr = [f["output_throughput_tok_s"] for f in figs]
        tpot = [f["median_tpot_ms"] for f in figs]
        result[name] = {
            "runs": [
                {k: v for k, v in f.items() if k not in ("output_lens", "errors")} for f in figs
            ],
            "output_lens_identical_across_runs": all(
                sorted(f["output_lens"]) == sorted(figs[0]["output_lens"]) for f in figs
            ),
            "throughput_mean": statistics.fmean(thr),
            "throughput_median": statistics.median(thr),
            "throughput_best": max(thr),
            "median_tpot_median": statistics.median(tpot),
            "median_tpot_best": min(tpot),
            "throughput_spread": spread(thr),
            "median_tpot_mean": statistics.fmean(tpot),
            "median_tpot_spread": spread(tpot),
        }
    vb, hn = result["vllm_bench"], result["harness"]
    pairs = list(zip(rows["vllm_bench"], rows["harness"], strict=True))
    result["output_lens_identical"] = all(
        sorted(a["output_lens"]) == sorted(b["output_lens"]) for a, b in pairs
    )
    # Where they differ, which lengths each client saw that the other did not (rep by rep).
    result["output_lens_differences"] = [
        {
            "rep": rep,
            "vllm_bench_only": dict(Counter(a["output_lens"]) - Counter(b["output_lens"])),
            "harness_only": dict(Counter(b["output_lens"]) - Counter(a["output_lens"])),
        }
        for rep, (a, b) in enumerate(pairs)
        if sorted(a["output_lens"]) != sorted(b["output_lens"])
    ]
    # Medians over repetitions: a server-side stall in one run moves a mean, not a median.
    result["throughput_ratio"] = hn["throughput_median"] / vb["throughput_median"]
    result["throughput_best_ratio"] = hn["throughput_best"] / vb["throughput_best"]
    result["median_tpot_ratio"] = hn["median_tpot_median"] / vb["median_tpot_median"]
    # Best runs: a stall only ever slows a run, so each client's least disturbed one.
    result["median_tpot_best_ratio"] = hn["median_tpot_best"] / vb["median_tpot_best"]
    print(
        f"output lengths identical: {result['output_lens_identical']}\n"
        f"throughput  harness/vllm = {result['throughput_ratio']:.3f} (medians), "
        f"{result['throughput_best_ratio']:.3f} (best runs) "
        f"(spread vllm {vb['throughput_spread']:.1%}, harness {hn['throughput_spread']:.1%})\n"
        f"median TPOT harness/vllm = {result['median_tpot_ratio']:.3f} (medians), "
        f"{result['median_tpot_best_ratio']:.3f} (best runs) "
        f"(spread vllm {vb['median_tpot_spread']:.1%}, harness {hn['median_tpot_spread']:.1%})"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
