"""BurstGPT loader: one request per row, conversation grouping by Session ID, failed rows kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import TraceFormatError
from harness.workload.formats.burstgpt import iter_burstgpt
from harness.workload.model import Step
from harness.workload.stats import workload_stats


def test_first_release_is_one_request_per_row(data_dir: Path) -> None:
    sessions = list(iter_burstgpt(data_dir / "burstgpt_v1_small.csv"))
    assert [s.session_id for s in sessions] == ["bg-2", "bg-3", "bg-4"]
    assert [s.start_ms for s in sessions] == [0.0, 40_000.0, 113_000.0]
    assert [s.steps for s in sessions] == [(Step(472, 18),), (Step(1087, 230),), (Step(417, 0),)]
    assert sessions[2].metadata == {"model": "GPT-4", "log_type": "API log"}


def test_third_release_groups_sessions(data_dir: Path) -> None:
    sessions = list(iter_burstgpt(data_dir / "burstgpt_v3_small.csv"))
    assert [(s.session_id, s.start_ms, s.source_line) for s in sessions] == [
        ("s1", 0.0, 2),
        ("bg-3", 1500.0, 3),
        ("s2", 10_000.0, 4),
        ("s2#1", 40_000.0, 7),
    ]
    s1, api, s2, s2b = sessions
    assert s1.steps == (
        Step(100, 50, offset_ms=0.0),
        Step(30, 0, offset_ms=20_000.0),  # failed row (0 output tokens) kept
        Step(20, 10, offset_ms=30_000.0),
    )
    assert s1.input_lengths() == [100, 180, 200]  # each row's Request tokens, exactly
    assert api.steps == (Step(36, 29),)
    assert s2.steps == (Step(200, 20, offset_ms=0.0),)
    # 40 < 200 + 20: the prompt shrank, so the row starts a new part
    assert s2b.steps == (Step(40, 5, offset_ms=0.0),)
    stats = workload_stats(sessions)
    assert (stats.requests, stats.input_tokens, stats.output_tokens) == (6, 756, 114)


def test_idle_gap_closes_sessions_in_start_order(data_dir: Path) -> None:
    sessions = list(iter_burstgpt(data_dir / "burstgpt_v3_small.csv", session_gap_s=5.0))
    assert [s.session_id for s in sessions] == ["s1", "bg-3", "s2", "s1#1", "s1#2", "s2#1"]
    assert [s.input_lengths() for s in sessions] == [[100], [36], [200], [180], [200], [40]]
    starts = [s.start_ms for s in sessions]
    assert starts == sorted(starts)


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("999,ChatGPT,x,1,1,API log", "Request tokens", "expected a non-negative integer, got 'x'"),
        ("999,ChatGPT,1,1.5,1,API log", "Response tokens", "got '1.5'"),
        ("soon,ChatGPT,1,1,1,API log", "Timestamp", "expected a non-negative number"),
        ("1,ChatGPT,1,1,1,API log", "Timestamp", "earlier than line 4's timestamp"),
        # backwards against the row before (113), though later than the first row (5)
        ("100,ChatGPT,1,1,1,API log", "Timestamp", "earlier than line 4's timestamp"),
        # 1e308 s made the span infinite: `inspect --json` printed Infinity
        ("1e308,ChatGPT,1,1,1,API log", "Timestamp", "exceeds the limit of 315,360,000"),
        ("inf,ChatGPT,1,1,1,API log", "Timestamp", "expected a non-negative number, got 'inf'"),
        ("nan,ChatGPT,1,1,1,API log", "Timestamp", "expected a non-negative number, got 'nan'"),
        ("-1,ChatGPT,1,1,1,API log", "Timestamp", "expected a non-negative number, got '-1'"),
        ("1_000,ChatGPT,1,1,1,API log", "Timestamp", "expected a non-negative number"),
        ("999,ChatGPT,2000000000,1,1,API log", "Request tokens", "exceeds the limit"),
    ],
)
def test_malformed(data_dir: Path, tmp_path: Path, row: str, field: str, message: str) -> None:
    path = tmp_path / "burst.csv"
    path.write_text((data_dir / "burstgpt_v1_small.csv").read_text() + row + "\n")  # line 5
    with pytest.raises(TraceFormatError) as info:
        list(iter_burstgpt(path))
    assert str(info.value).startswith(f"{path}:5: field '{field}':")
    assert message in str(info.value)
