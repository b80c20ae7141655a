"""BurstGPT loader: one request per row, conversation grouping by Session ID, failed rows kept."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import TraceFormatError
from harness.workload.formats import _batches, burstgpt
from harness.workload.formats.burstgpt import DEFAULT_SESSION_GAP_S, iter_burstgpt
from harness.workload.model import Step
from harness.workload.stats import session_batches, workload_stats


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


# --- the sums in batches --------------------------------------------------------------------

V3_HEADER = (
    "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
)


def _outcome(read: Callable[[], object]) -> object:
    """What reading gives: its value, or the text of its TraceFormatError."""
    try:
        return read()
    except TraceFormatError as err:
        return f"error: {err}"


def _agree(path: Path, gap_s: float | None = DEFAULT_SESSION_GAP_S) -> object:
    """The sums from the batches, checked against those of the Sessions, and each request's
    prompt, output and start (to the float) against theirs."""
    typed = _outcome(lambda: workload_stats(iter_burstgpt(path, session_gap_s=gap_s)))
    assert typed == _outcome(lambda: workload_stats(list(iter_burstgpt(path, session_gap_s=gap_s))))
    if not isinstance(typed, str):
        batches = list(iter_burstgpt(path, session_gap_s=gap_s).request_batches())
        rows = list(session_batches(iter_burstgpt(path, session_gap_s=gap_s)))
        for field in ("input_tokens", "output_tokens", "start_ms"):
            got, want = (np.concatenate([getattr(b, field) for b in bs]) for bs in (batches, rows))
            assert sorted(got.tolist()) == sorted(want.tolist()), field
    return typed


_IDS = st.sampled_from(
    ["s1", "s2", "s3", "abc", "", "", " s1", "s1 ", "\ts2", "\x1cs3", "\u00a0abc", "é"]
)


_STEPS_S = [0.0, 0.1, 0.5, 1.25, 3.0, 5.0, 30.3, 2000.0, 3600.0, 4000.7]
"""Gaps between rows: some on the session gaps the test takes (5 s, 3,600 s)."""


@st.composite
def _burst_rows(draw: st.DrawFn) -> list[str]:
    """Rows of a few conversations and API calls, their prompts mostly growing, some times
    far apart, now and then an odd cell."""
    rows = []
    time_s = draw(st.sampled_from([0.0, 5.0, 19_440_110.0]))  # the third release starts late
    prompts: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 200))):
        time_s += draw(st.sampled_from(_STEPS_S))
        sid = draw(_IDS)
        grown = prompts.get(sid.strip(), 0) + draw(st.integers(-20, 300))
        request = max(grown, 0)
        response = draw(st.integers(0, 50))
        prompts[sid.strip()] = request + response
        stamp = f"{time_s:.3f}".rstrip("0").rstrip(".") if draw(st.booleans()) else f"{time_s}"
        cells = [stamp, sid, "3", "GPT-4", str(request), str(response), "0", "Conversation log"]
        if draw(st.integers(0, 40)) == 0:
            where, odd = draw(
                st.sampled_from(
                    [
                        (0, "1e3"),
                        (0, "-1"),
                        (0, "nan"),
                        (0, " 19440110"),
                        (4, "12.0"),
                        (4, "x"),
                        (5, " 7"),
                        (0, "1"),
                    ]
                )
            )
            cells[where] = odd
        rows.append(",".join(cells) + "\n")
    return rows


@settings(max_examples=80, deadline=None)
@given(
    _burst_rows(), st.sampled_from([1 << 9, 1 << 12, 1 << 20]), st.sampled_from([None, 5.0, 3600.0])
)
def test_batch_sums_are_the_sessions_sums(
    rows: list[str], chunk_bytes: int, gap_s: float | None
) -> None:
    """Sessions that continue, split or idle past the gap across batches, and odd cells:
    the sums from the batches (or their error, naming line and field) are the Sessions'."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_batches, "BATCH_BYTES", chunk_bytes)
        path = Path(folder) / "burst.csv"
        path.write_text(V3_HEADER + "".join(rows))
        _agree(path, gap_s)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("99999,ChatGPT,x,1,1,API log", "expected a non-negative integer, got 'x'"),
        ("1,ChatGPT,1,1,1,API log", "earlier than line 20001's timestamp"),
        ("1e308,ChatGPT,1,1,1,API log", "exceeds the limit of 315,360,000"),
    ],
)
def test_a_bad_row_in_a_later_batch_is_named_by_the_sums_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: str, message: str
) -> None:
    monkeypatch.setattr(_batches, "BATCH_BYTES", 1 << 14)
    path = tmp_path / "burst.csv"
    rows = "".join(f"{5 + i},ChatGPT,{i},1,1,API log\n" for i in range(20_000))
    path.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n" + rows + row + "\n"
    )
    outcome = _agree(path)
    assert isinstance(outcome, str) and outcome.startswith(f"error: {path}:20002:")
    assert message in outcome


def test_the_announced_sessionid_spelling_groups_too(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "burst.csv"
    path.write_text(
        (data_dir / "burstgpt_v3_small.csv").read_text().replace("Session ID", "SessionID", 1)
    )
    sessions = list(iter_burstgpt(path))
    assert [s.session_id for s in sessions] == ["s1", "bg-3", "s2", "s2#1"]
    assert _agree(path) == workload_stats(sessions)


def test_the_sums_build_no_session(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = data_dir / "burstgpt_v3_small.csv"
    from_sessions = workload_stats(list(iter_burstgpt(path)))

    def no_sessions(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Session built for the sums")

    monkeypatch.setattr(burstgpt, "Session", no_sessions)
    assert workload_stats(iter_burstgpt(path)) == from_sessions
    assert (from_sessions.sessions, from_sessions.requests) == (4, 6)
