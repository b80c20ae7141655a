"""Unit tests for harness.analysis against small hand-computed examples."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from summary_builders import summary

from harness.analysis import (
    LATENCY_STATS,
    itl_ms_from_chunks,
    min_samples,
    per_session_summary,
    percentile_stats,
    summarize_requests,
    timing_flags,
)
from harness.records import REQUEST_COLUMNS, RequestRecord, record_to_row
from harness.results import RunReader, RunWriter, requests_frame
from harness.summary import Stats, Summary
from harness.workload.slo import Slo

MS = 1_000_000  # ns per ms, spelled out so the expected values below read as ms


def _req(
    rid: str,
    *,
    session: str = "s1",
    scheduled_ms: float,
    sent_ms: float | None,
    chunks_ms: list[float],
    done_ms: float | None,
    prompt: int | None,
    output: int | None,
    status: int | None = 200,
    error: str | None = None,
    warmup: bool = False,
) -> RequestRecord:
    """A record with stamps given in ms; first/last token come from the chunk stamps."""
    chunk_ns = [round(c * MS) for c in chunks_ms]
    return RequestRecord(
        request_id=rid,
        session_id=session,
        step_index=0,
        api="chat",
        prompt_tokens_expected=prompt or 0,
        output_tokens_expected=output or 0,
        scheduled_ns=round(scheduled_ms * MS),
        sent_ns=None if sent_ms is None else round(sent_ms * MS),
        first_token_ns=chunk_ns[0] if chunk_ns else None,
        last_token_ns=chunk_ns[-1] if chunk_ns else None,
        done_ns=None if done_ms is None else round(done_ms * MS),
        chunk_ns=chunk_ns,
        chunk_tokens=[1] * len(chunk_ns),
        prompt_tokens=prompt,
        output_tokens=output,
        http_status=status,
        error=error,
        warmup=warmup,
    )


def three_requests() -> list[RequestRecord]:
    """Three completed requests (known figures), one failure and one warmup outlier.

    r1: TTFT 10, E2EL 40, TPOT 30/3 = 10, ITL 10,10,10, lag 1, E2EL-from-scheduled 41
    r2: TTFT 20, E2EL 30, TPOT 10/2 = 5,  ITL 5,5,       lag 2, E2EL-from-scheduled 32
    r3: TTFT 30, E2EL 30, one token (no TPOT, no ITL),  lag 3, E2EL-from-scheduled 33
    """
    return [
        _req(
            "r1",
            scheduled_ms=0,
            sent_ms=1,
            chunks_ms=[11, 21, 31, 41],
            done_ms=42,
            prompt=10,
            output=4,
        ),
        _req(
            "r2",
            session="s2",
            scheduled_ms=0,
            sent_ms=2,
            chunks_ms=[22, 27, 32],
            done_ms=33,
            prompt=15,
            output=3,
        ),
        _req(
            "r3",
            scheduled_ms=10,
            sent_ms=13,
            chunks_ms=[43],
            done_ms=51,
            prompt=20,
            output=1,
        ),
        _req(
            "f1",
            session="s2",
            scheduled_ms=4,
            sent_ms=5,
            chunks_ms=[50, 90],
            done_ms=100,
            prompt=None,
            output=None,
            status=None,
            error="timeout",
        ),
        _req(
            "w1",
            session="warm",
            scheduled_ms=-5000,
            sent_ms=-5000,
            chunks_ms=[-1000, 9000],
            done_ms=9000,
            prompt=999,
            output=2,
            warmup=True,
        ),
    ]


def frame(records: list[RequestRecord]) -> pd.DataFrame:
    """Records as the plain DataFrame that replay would build in memory."""
    return pd.DataFrame([record_to_row(r) for r in records], columns=list(REQUEST_COLUMNS))


def test_percentile_stats_known_values() -> None:
    stats = percentile_stats([1.0, 2.0, 3.0, 4.0])
    assert stats["count"] == 4
    assert stats["mean"] == 2.5
    assert stats["p50"] == 2.5
    assert stats["p90"] == pytest.approx(3.7)
    assert stats["p99"] == pytest.approx(3.97)
    assert stats["std"] == pytest.approx(math.sqrt(1.25))


def test_percentile_stats_empty_is_none_not_zero() -> None:
    stats = percentile_stats([])
    assert stats == {
        "count": 0,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "std": None,
        "min": None,
        "max": None,
    }
    assert percentile_stats([], [95.0])["percentiles"] == {"p95": None}
    assert percentile_stats([], [50.0, 95.0])["percentiles"] == {"p95": None}


def test_percentile_stats_rejects_nan() -> None:
    with pytest.raises(ValueError):
        percentile_stats([1.0, float("nan")])


def test_summary_latencies_match_hand_computation() -> None:
    s = summarize_requests(frame(three_requests()))
    assert s["ttft_ms"]["mean"] == pytest.approx(20.0)
    assert s["ttft_ms"]["p50"] == pytest.approx(20.0)
    assert s["ttft_ms"]["p90"] == pytest.approx(28.0)
    assert s["ttft_ms"]["p99"] == pytest.approx(29.8)
    assert s["ttft_ms"]["std"] == pytest.approx(math.sqrt(200 / 3))
    assert s["ttft_ms"]["count"] == 3
    assert s["tpot_ms"]["mean"] == pytest.approx(7.5)
    assert s["tpot_ms"]["p50"] == pytest.approx(7.5)
    assert s["tpot_ms"]["count"] == 2  # r3 has one output token: no TPOT
    assert s["itl_ms"]["mean"] == pytest.approx(8.0)  # pooled 10,10,10,5,5
    assert s["itl_ms"]["p50"] == pytest.approx(10.0)
    assert s["itl_ms"]["count"] == 5
    assert s["e2el_ms"]["mean"] == pytest.approx(100 / 3)
    assert s["e2el_ms"]["p50"] == pytest.approx(30.0)
    assert s["e2el_from_scheduled_ms"]["mean"] == pytest.approx(106 / 3)
    assert s["e2el_from_scheduled_ms"]["p50"] == pytest.approx(33.0)
    # send lag covers every measured request that was sent, the failed one included.
    assert s["send_lag_ms"]["mean"] == pytest.approx(7 / 4)
    assert s["send_lag_ms"]["count"] == 4


def test_summary_counts_throughput_and_duration() -> None:
    s = summarize_requests(frame(three_requests()))
    assert s["requests_total"] == 4
    assert s["requests_warmup_excluded"] == 1
    assert s["requests_completed"] == 3
    assert s["requests_failed"] == 1
    assert s["sessions"] == 2  # the warmup session is not counted
    # first send 1 ms, last completed done 51 ms (the failure's done at 100 ms does not count)
    assert s["duration_s"] == pytest.approx(0.050)
    assert s["input_tokens"] == 45
    assert s["output_tokens"] == 8
    assert s["request_throughput_rps"] == pytest.approx(60.0)
    assert s["output_throughput_tok_s"] == pytest.approx(160.0)
    assert s["total_throughput_tok_s"] == pytest.approx(1060.0)
    assert s["errors"] == {"timeout": 1}
    # at 13 ms r1, r2, f1 and r3 are all in flight
    assert s["max_concurrency_observed"] == 4
    assert "goodput_rps" not in s


def test_warmup_rows_are_excluded() -> None:
    records = three_requests()
    with_warmup = summarize_requests(frame(records))
    without = summarize_requests(frame([r for r in records if not r.warmup]))
    assert with_warmup["ttft_ms"] == without["ttft_ms"]
    assert with_warmup["duration_s"] == without["duration_s"]
    assert with_warmup["input_tokens"] == without["input_tokens"]


def test_failed_requests_do_not_enter_latency_stats() -> None:
    records = three_requests()
    ok_only = summarize_requests(frame([r for r in records if r.ok]))
    full = summarize_requests(frame(records))
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "e2el_from_scheduled_ms"):
        assert full[key] == ok_only[key], key


@pytest.mark.parametrize(
    ("slo", "good"),
    [
        (Slo(ttft_ms=25), 2),  # r1 10, r2 20 pass; r3 30 fails
        (Slo(tpot_ms=6), 2),  # r2 5 passes; r3 has one token: TPOT 0, passes (as vLLM bench)
        (Slo(ttft_ms=25, tpot_ms=6), 1),  # only r2
        (Slo(e2el_ms=30), 2),  # the limit is inclusive: r2 and r3 at exactly 30 pass
        (Slo(ttft_ms=1), 0),
    ],
)
def test_goodput_with_slos(slo: Slo, good: int) -> None:
    s = summarize_requests(frame(three_requests()), slo)
    assert s["requests_meeting_slo"] == good
    assert s["goodput_rps"] == pytest.approx(good / 0.050)
    assert s["slo_attainment"] == pytest.approx(good / 4)  # failures count as missing the SLO
    assert s["slo"] == slo.model_dump(exclude_none=True)


def test_slo_validation() -> None:
    with pytest.raises(ValidationError):
        Slo(ttft_ms=-1)
    with pytest.raises(ValidationError):
        Slo.model_validate({"ttft": 100})


def test_no_completed_requests_gives_none_not_zero() -> None:
    records = [r for r in three_requests() if not r.ok]
    s = summarize_requests(frame(records))
    assert s["requests_completed"] == 0
    assert s["requests_failed"] == 1
    assert s["duration_s"] is None
    assert s["request_throughput_rps"] is None
    assert s["output_throughput_tok_s"] is None
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        assert s[key]["mean"] is None
        assert s[key]["p99"] is None
        assert s[key]["count"] == 0
    s_slo = summarize_requests(frame(records), Slo(ttft_ms=100))
    assert s_slo["goodput_rps"] is None
    assert s_slo["slo_attainment"] == 0.0


def test_empty_table() -> None:
    s = summarize_requests(frame([]))
    assert s["requests_total"] == 0
    assert s["duration_s"] is None
    assert s["ttft_ms"]["mean"] is None
    assert s["max_concurrency_observed"] is None
    assert s["errors"] == {}


def test_missing_usage_is_none_not_zero() -> None:
    r = _req(
        "r", scheduled_ms=0, sent_ms=0, chunks_ms=[5, 10], done_ms=10, prompt=None, output=None
    )
    s = summarize_requests(frame([r]))
    assert s["requests_missing_usage"] == 1
    assert s["output_tokens"] is None
    assert s["output_throughput_tok_s"] is None
    assert s["tpot_ms"]["mean"] is None  # no token count, no TPOT
    assert s["ttft_ms"]["mean"] == pytest.approx(5.0)


def test_errors_keep_top_ten_by_count() -> None:
    records = []
    for k in range(12):
        for j in range(k + 1):
            records.append(
                _req(
                    f"e{k}-{j}",
                    scheduled_ms=0,
                    sent_ms=0,
                    chunks_ms=[],
                    done_ms=1,
                    prompt=None,
                    output=None,
                    status=500,
                    error=f"err{k}",
                )
            )
    s = summarize_requests(frame(records))
    assert len(s["errors"]) == 10
    assert next(iter(s["errors"])) == "err11"
    assert s["errors"]["err11"] == 12
    assert "err0" not in s["errors"] and "err1" not in s["errors"]


def test_http_status_without_error_string_is_labelled() -> None:
    r = _req("r", scheduled_ms=0, sent_ms=0, chunks_ms=[], done_ms=1, prompt=None, output=None)
    r.http_status = 503
    s = summarize_requests(frame([r]))
    assert s["errors"] == {"http status 503": 1}


def test_same_summary_from_parquet_and_journal(tmp_path: Path) -> None:
    records = three_requests()
    expected = summarize_requests(frame(records), Slo(ttft_ms=25))
    writer = RunWriter(tmp_path / "crashed")
    writer.write_manifest({"run_name": "crashed"})
    writer.append(records)
    recovered = RunReader(tmp_path / "crashed")
    assert recovered.recovered
    assert summarize_requests(recovered.requests(), Slo(ttft_ms=25)) == expected
    writer.finalize(summary(**expected))
    finished = RunReader(tmp_path / "crashed")
    assert not finished.recovered
    assert summarize_requests(finished.requests(), Slo(ttft_ms=25)) == expected


def test_per_session_summary() -> None:
    sessions = per_session_summary(frame(three_requests()))
    assert list(sessions["session_id"]) == ["s1", "s2"]  # warmup session dropped
    s1 = sessions.iloc[0]
    assert s1["requests"] == 2
    assert s1["requests_failed"] == 0
    assert s1["input_tokens"] == 30
    assert s1["output_tokens"] == 5
    assert s1["session_latency_s"] == pytest.approx(0.050)  # sent 1 ms → done 51 ms
    s2 = sessions.iloc[1]
    assert s2["requests"] == 2
    assert s2["requests_failed"] == 1
    assert s2["input_tokens"] == 15  # the failure's tokens are not counted
    assert s2["session_latency_s"] == pytest.approx(0.098)  # sent 2 ms → failure done 100 ms


def test_per_session_summary_empty() -> None:
    sessions = per_session_summary(frame([]))
    assert len(sessions) == 0
    assert "session_latency_s" in sessions.columns


@given(
    st.lists(
        st.one_of(st.none(), st.lists(st.integers(0, 10**15), max_size=6).map(sorted)),
        max_size=30,
    )
)
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
def test_itl_from_arrow_chunks_equals_the_pairwise_gaps(chunks: list[list[int] | None]) -> None:
    expected = [(b - a) / 1e6 for c in chunks if c for a, b in itertools.pairwise(c)]
    got = itl_ms_from_chunks(pa.array(chunks, type=pa.list_(pa.int64())))
    assert got.tolist() == pytest.approx(expected)


def test_summary_with_arrow_itl_matches_the_row_by_row_summary() -> None:
    records = [
        _req(
            f"r{i}",
            scheduled_ms=10 * i,
            sent_ms=10 * i + 1,
            chunks_ms=[10 * i + 3, 10 * i + 4.5, 10 * i + 8],
            done_ms=10 * i + 8,
            prompt=10,
            output=3,
            warmup=i == 0,
        )
        for i in range(5)
    ]
    df = requests_frame(records)
    df = df[~df["warmup"].astype(bool)]
    itl = itl_ms_from_chunks(pa.array(df["chunk_ns"].tolist(), type=pa.list_(pa.int64())))
    lean = df.drop(columns=["chunk_ns", "chunk_tokens"])
    assert summarize_requests(lean, itl_ms=itl) == summarize_requests(df)


def test_chosen_percentiles_min_and_max_are_reported() -> None:
    s = summarize_requests(frame(three_requests()), percentiles=[50.0, 75.0, 99.9])
    ttft = s["ttft_ms"]
    assert ttft["min"] == pytest.approx(10.0) and ttft["max"] == pytest.approx(30.0)
    assert set(ttft["percentiles"]) == {"p75", "p99.9"}  # p50 is the fixed key's, once
    assert ttft["percentiles"]["p75"] == pytest.approx(25.0)
    assert ttft["p90"] == pytest.approx(28.0)  # the fixed ones stay, whatever was chosen
    assert s["percentiles"] == [50.0, 75.0, 99.9]


def test_a_percentile_is_stored_once() -> None:
    """The fixed p50/p90/p99 are not repeated under `percentiles` (one value, one key)."""
    stats = percentile_stats([1.0, 2.0, 3.0], [50.0, 90.0, 95.0, 99.0])
    assert stats["percentiles"] == {"p95": pytest.approx(2.9)}
    assert stats["p99"] == pytest.approx(2.98)
    assert percentile_stats([1.0], [50.0, 99.0])["percentiles"] == {}


def test_latency_blocks_are_latency_stats_in_the_summary_schema_order() -> None:
    """summarize_requests reports one stats block per LATENCY_STATS name, and those are the
    summary schema's top-level Stats fields, in order."""
    s = summarize_requests(frame(three_requests()))
    blocks = [k for k, v in s.items() if isinstance(v, dict) and "count" in v]
    assert blocks == list(LATENCY_STATS)
    stats_fields = [n for n, f in Summary.model_fields.items() if f.annotation is Stats]
    assert stats_fields == list(LATENCY_STATS)


def test_the_fixed_percentiles_are_flagged_whatever_was_chosen() -> None:
    """The headline and the sweep ladder show p90 and p99 even under --percentiles 50: from
    3 values they are flagged all the same."""
    s = summarize_requests(frame(three_requests()), percentiles=[50.0])
    few = [f for f in s["timing_flags"] if f["kind"] == "few_samples"]
    assert few and few[0]["figures"] == ["ttft_ms", "e2el_ms"]
    assert few[0]["percentiles"] == ["p90", "p99"]
    assert timing_flags({"ttft_ms": {"count": 7, "p50": 1.0}}, [50.0])[0]["percentiles"] == [
        "p90",
        "p99",
    ]


@pytest.mark.parametrize(("p", "n"), [(50, 2), (90, 10), (95, 20), (99, 100), (99.9, 1000)])
def test_a_percentile_needs_one_value_above_it(p: float, n: int) -> None:
    assert min_samples(p) == n


def test_percentiles_from_few_values_are_flagged_with_the_rule() -> None:
    """Three requests: p90, p95 and p99 of each figure are their largest values, flagged;
    figures with as many values share one flag."""
    s = summarize_requests(frame(three_requests()))
    few = [f for f in s["timing_flags"] if f["kind"] == "few_samples"]
    assert [f["figures"] for f in few] == [["ttft_ms", "e2el_ms"], ["tpot_ms"], ["itl_ms"]]
    ttft = few[0]
    assert ttft["percentiles"] == ["p90", "p95", "p99"]
    assert ttft["reason"].startswith("ttft_ms, e2el_ms: p90, p95, p99 from 3 values; a pP")
    assert "100/(100-P)" in ttft["reason"] and "p99 needs 100" in ttft["reason"]
    assert few[1]["reason"].startswith("tpot_ms: p90, p95, p99 from 2 values")
    assert not any("send_lag_ms" in f["figures"] for f in few)  # only the request latencies


def test_enough_values_raise_no_flag() -> None:
    figures = {"ttft_ms": {"count": 100, "p50": 10.0}, "itl_ms": {"count": 0, "p50": None}}
    assert timing_flags(figures, [50.0, 90.0, 99.0]) == []
    assert timing_flags(figures, [99.5])[0]["percentiles"] == ["p99.5"]  # needs 200


def test_sub_0_1_ms_itl_and_tpot_medians_are_token_bursts() -> None:
    figures = {
        "itl_ms": {"count": 1000, "p50": 0.01},
        "tpot_ms": {"count": 1000, "p50": 0.014},
        "ttft_ms": {"count": 1000, "p50": 0.05},  # a fast TTFT is not a burst
    }
    flags = timing_flags(figures, [50.0])
    assert [(f["kind"], f["figures"]) for f in flags] == [
        ("token_bursts", ["itl_ms"]),
        ("token_bursts", ["tpot_ms"]),
    ]
    assert "itl_ms p50 is 0.010 ms, under 0.1 ms: tokens arrive in bursts" in flags[0]["reason"]
    assert timing_flags({"itl_ms": {"count": 1000, "p50": 0.1}}, [50.0]) == []
