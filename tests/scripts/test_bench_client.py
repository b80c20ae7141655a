"""scripts/bench_client.py's figures from small hand-made inputs: the marginal CPU per token,
the join of receipt times to the null server's send stamps (harness and vllm bench
receipts), the run figures from a requests frame, the steady window and the scaling ratios.
The benchmark itself is not run here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_modules import load_script

bench = load_script("bench_client")


def test_marginal_cpu_removes_start_up_cost() -> None:
    """(3.0 − 2.0) s over (110k − 10k) tokens is 10 µs a token, whatever the fixed cost."""
    assert bench.marginal_us_per_token((2.0, 10_000), (3.0, 110_000)) == pytest.approx(10.0)
    assert bench.marginal_us_per_token((12.0, 10_000), (13.0, 110_000)) == pytest.approx(10.0)
    assert bench.marginal_us_per_token((2.0, 10_000), (3.0, 10_000)) is None


def test_join_stamps_by_request_and_chunk_order() -> None:
    receipts = {"r1": [110, 220, 330], "r2": np.array([5, 6]), "r3": [1]}
    stamps = {"r1": [100, 200, 300], "r2": [1, 2, 3], "other": [0]}
    joined = bench.join_stamps(receipts, stamps)
    assert joined.added_ns.tolist() == [10, 20, 30, 4, 4]
    assert joined.requests_joined == 2
    assert joined.requests_without_stamps == 1
    assert joined.chunk_count_mismatches == 1
    empty = bench.join_stamps({"x": [1]}, {})
    assert len(empty.added_ns) == 0 and empty.requests_without_stamps == 1
    assert bench.pct_ms(empty.added_ns, 99) is None


def _frame() -> pd.DataFrame:
    ms = 1_000_000
    return pd.DataFrame(
        {
            "request_id": ["r0000000", "r0000001", "r0000002"],
            "sent_ns": [0, 10 * ms, 20 * ms],
            "first_token_ns": [50 * ms, 70 * ms, None],
            "done_ns": [80 * ms, 100 * ms, 30 * ms],
            "chunk_ns": [[50 * ms, 60 * ms, 70 * ms], [70 * ms, 90 * ms], []],
            "output_tokens": [3, 2, None],
            "http_status": [200, 200, 500],
            "error": [None, None, "HTTP 500"],
            "warmup": [False, False, False],
        }
    )


def test_harness_receipts_are_absolute_and_skip_failures() -> None:
    anchor = 5_000_000_000
    receipts = bench.harness_receipts(_frame(), anchor)
    assert set(receipts) == {"r0000000", "r0000001"}
    assert receipts["r0000001"].tolist() == [anchor + 70_000_000, anchor + 90_000_000]
    stamps = {"r0000000": [anchor + 49_000_000, anchor + 59_500_000, anchor + 70_000_000]}
    added = bench.join_stamps(receipts, stamps).added_ns
    assert added.tolist() == [1_000_000, 500_000, 0]


def test_harness_figures_follow_vllm_bench_definitions() -> None:
    figures = bench.harness_figures(_frame())
    assert figures["completed"] == 2 and figures["failed"] == 1
    assert figures["output_tokens"] == 5
    assert figures["tok_s"] == pytest.approx(5 / 0.1)  # first send 0 → last done 100 ms
    assert figures["ttft_p50_ms"] == pytest.approx(55.0)  # TTFTs 50 and 60 ms
    assert figures["itl_p50_ms"] == pytest.approx(10.0)  # ITLs 10, 10, 20 ms


def test_vllm_receipts_from_start_ttft_and_itls() -> None:
    result = {
        "start_times": [100.0, 101.0, 102.0],
        "ttfts": [0.05, 0.0, 0.06],
        "itls": [[0.01, 0.02], [], [0.01]],
        "errors": ["", "failed", ""],
    }
    receipts = bench.vllm_receipts(result, "vb-")
    assert set(receipts) == {"vb-0", "vb-2"}
    assert receipts["vb-0"].tolist() == [100_050_000_000, 100_060_000_000, 100_080_000_000]
    assert receipts["vb-2"].tolist() == [102_060_000_000, 102_070_000_000]


def test_stamp_gaps_and_steady_window() -> None:
    gaps = bench.stamp_gaps_ns({"a": [0, 10, 30], "b": [5]})
    assert gaps.tolist() == [10, 20]
    s = 1_000_000_000
    receipts = {"a": np.array([0, s, 2 * s, 3 * s]), "b": np.array([int(1.5 * s)])}
    # Window [first send + e2e, last send) = [1 s, 3 s): three chunks in two seconds.
    assert bench.steady_tok_s(receipts, 0, 3 * s, s) == pytest.approx(1.5)
    assert bench.steady_tok_s(receipts, 0, s, s) is None


def test_scaling_ratios_against_n_times_one() -> None:
    rows = bench.scaling_rows({2: 90.0, 1: 50.0, 3: None})
    assert [r["workers"] for r in rows] == [1, 2, 3]
    assert rows[0]["ratio_to_n_x_one"] == pytest.approx(1.0)
    assert rows[1]["ratio_to_n_x_one"] == pytest.approx(0.9)
    assert rows[2]["ratio_to_n_x_one"] is None
    assert bench.scaling_rows({2: 90.0})[0]["ratio_to_n_x_one"] is None


def test_bad_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--parts", "cpu,nope"])
    assert exc.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_log_error_skips_printed_tables(tmp_path: Path) -> None:
    log = tmp_path / "harness.log"
    log.write_text("starting\n┏━━━┓\n│ a │ 1 │\nerror: server at x refused\n└───┘\n")
    assert bench.log_error(log) == "starting | error: server at x refused"
    assert bench.log_error(tmp_path / "missing.log") == "(no log)"


def test_other_cores_is_the_hosts_busy_time_less_client_and_server() -> None:
    proc = bench.Proc(rc=0, cpu_s=3.0, wall_s=4.0)
    assert bench.other_cores(5.0, proc, 1.0) == pytest.approx(0.25)
    assert bench.other_cores(3.5, proc, 1.0) == 0.0  # sampling slack never goes negative
    assert bench.other_cores(5.0, bench.Proc(0, 1.0, 0.0), 1.0) is None
