"""The harness agrees with `vllm bench serve` on the same server (integration).

Both clients replay the same random workload; output token counts must be identical, and
output throughput and median TPOT must agree within tolerances derived from repeated runs
(see the tolerance constants and the issue note for the measurements behind them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "crosscheck_vllm_bench.py"

# Relative tolerances on the harness/vllm-bench ratio of the means over the repetitions.
THROUGHPUT_TOLERANCE = 0.25
MEDIAN_TPOT_TOLERANCE = 0.35


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
            "2",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["output_lens_identical"] is True
    for name in ("vllm_bench", "harness"):
        for run in result[name]["runs"]:
            assert run["output_tokens"] == 200 * 128
    assert abs(result["throughput_ratio"] - 1) <= THROUGHPUT_TOLERANCE, result
    assert abs(result["median_tpot_ratio"] - 1) <= MEDIAN_TPOT_TOLERANCE, result
