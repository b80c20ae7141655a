"""The harness agrees with `vllm bench serve` on the same server (integration).

Both clients replay the same random workload; output token counts must be identical, and the
harness must not measure a slower server than `vllm bench serve` does (output throughput and
median TPOT of each client's best run, within tolerances derived from repeated runs: see the
tolerance constants and the issue note for the measurements behind them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "crosscheck_vllm_bench.py"

# Tolerances from repeated runs on the 2-core CPU server (issue note): each client's own
# output throughput varied by up to 57% (vllm bench) and 83% (harness) between runs, because
# the server's front end stalls for seconds when its core is busy; the best of 3 runs of
# each agreed within 18–22%. Median TPOT varied by up to 37% per client (one stalled run in
# three). Both clients share the server's two cores, and `vllm bench serve` (torch imported,
# every response detokenized) can be starved for a whole window: one CI run measured it at
# 1.8–2.1k tok/s in all three runs against the harness's 2.2–4.1k, another's medians of TPOT
# disagreed by 29%. So the checks are one-sided on each client's best run, which a stall
# cannot improve: the harness may measure a faster server than the heavier peer does (the
# figures are printed), never a slower one beyond the tolerance.
THROUGHPUT_BEST_TOLERANCE = 0.5
MEDIAN_TPOT_TOLERANCE = 0.25


@pytest.mark.integration
def test_harness_matches_vllm_bench(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """Identical output tokens; throughput and median TPOT within tolerance."""
    out = tmp_path / "crosscheck.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--server",
            vllm_server.base_url,
            "--model",
            vllm_server.model,
            "--reps",
            "3",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,  # 3 pairs of runs, and one rerun at most
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    # A repetition in which the server failed a request is run once more; more than one is
    # no longer a stall of this host's server.
    assert len(result["reps_rerun"]) <= 1, result["reps_rerun"]
    runs = {name: result[name]["runs"] for name in ("vllm_bench", "harness")}
    for name, figs in runs.items():
        assert [run["completed"] for run in figs] == [200] * 3, (name, figs)
        assert [run["output_tokens"] for run in figs] == [200 * 128] * 3, (name, figs)
    assert result["output_lens_identical"] is True, result["output_lens_differences"]
    throughput = {n: [r["output_throughput_tok_s"] for r in figs] for n, figs in runs.items()}
    assert result["throughput_best_ratio"] >= 1 - THROUGHPUT_BEST_TOLERANCE, throughput
    tpot = {k: result[k] for k in ("median_tpot_ratio", "median_tpot_best_ratio")}
    tpot |= {f"{n}_runs_ms": [r["median_tpot_ms"] for r in figs] for n, figs in runs.items()}
    assert result["median_tpot_best_ratio"] <= 1 + MEDIAN_TPOT_TOLERANCE, tpot
