"""Azure trace loader: both timestamp forms parsed exactly, and malformed rows named precisely."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import TraceFormatError
from harness.workload.formats import _batches, azure
from harness.workload.formats.azure import iter_azure, parse_timestamp_ns
from harness.workload.model import Step
from harness.workload.stats import ColumnarSessions, workload_stats

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
ROW = "2023-11-16 18:15:46.6805900,374,44\n"
LATER = "2023-11-16 18:15:50.0,1,2\n"


def test_2023_form_is_exact_to_the_100ns(data_dir: Path) -> None:
    sessions = list(iter_azure(data_dir / "azure2023_small.csv"))
    assert [s.session_id for s in sessions] == ["az-2", "az-3", "az-5"]
    assert [s.source_line for s in sessions] == [2, 3, 5]
    assert [s.start_ms for s in sessions] == [0.0, 4314.579, 4541.8775]
    assert [s.steps for s in sessions] == [(Step(374, 44),), (Step(396, 109),), (Step(879, 55),)]


def test_2024_form_with_offsets(data_dir: Path) -> None:
    sessions = list(iter_azure(data_dir / "azure2024_small.csv"))
    # 02:00:00.5-02:00 is 04:00:00.5 UTC, 4 h after 00:00:00.009930 less 9.93 ms
    assert [s.start_ms for s in sessions] == [0.0, 990.07, 14_400_490.07]
    assert sessions[0].steps == (Step(2048, 28),)


def test_parse_timestamp_ns() -> None:
    base = parse_timestamp_ns("1970-01-01 00:00:00")
    assert base == 0
    assert parse_timestamp_ns("1970-01-01 00:00:01.0000001") == 1_000_000_100
    assert parse_timestamp_ns("1970-01-01T01:00:00+01:00") == 0
    assert parse_timestamp_ns("1970-01-01 00:00:00Z") == 0
    assert parse_timestamp_ns("2023-11-16 18:15:46.6805900") == 1_700_158_546_680_590_000
    for bad in ("2023-11-16", "2023-13-01 00:00:00", "2023-11-16 24:00:00", "yesterday"):
        with pytest.raises(ValueError):
            parse_timestamp_ns(bad)


def test_bad_count_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + ROW * 15 + "2023-11-16 18:15:47.0,12,abc\n")
    with pytest.raises(TraceFormatError) as info:
        list(iter_azure(path))
    assert str(info.value) == (
        f"{path}:17: field 'GeneratedTokens': expected a non-negative integer, got 'abc'"
    )


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (HEADER + ROW + "2023-11-16 18:15:4,1,2\n", 3, "TIMESTAMP", "not a timestamp"),
        (HEADER + ROW + "2023-11-16 18:15:40.0,1,2\n", 3, "TIMESTAMP", "earlier than line 2's"),
        # backwards against the row before, not only the first row
        (HEADER + ROW + LATER + "2023-11-16 18:15:48.0,1,2\n", 4, "TIMESTAMP", "line 3's"),
        (HEADER + "2024-05-10 00:00:00+99:99,1,1\n", 2, "TIMESTAMP", "UTC offset +99:99"),
        (HEADER + "2024-05-10 00:00:00-24:00,1,1\n", 2, "TIMESTAMP", "UTC offset -24:00"),
        (HEADER + ROW + "2033-11-17 18:15:47.0,1,2\n", 3, "TIMESTAMP", "3,650 days after"),
        (HEADER + ROW + "2023-11-16 18:15:47.0,1000000001,2\n", 3, "ContextTokens", "limit"),
        (
            HEADER + ROW + "2023-11-16 18:15:47.0,1," + "9" * 5000 + "\n",
            3,
            "GeneratedTokens",
            "limit",
        ),
        (HEADER + ROW + "2023-11-16 18:15:47.0,1e3,2\n", 3, "ContextTokens", "got '1e3'"),
        (HEADER + ROW + "2023-11-16 18:15:47.0,-5,2\n", 3, "ContextTokens", "got '-5'"),
        (HEADER + ROW + "2023-11-16 18:15:47.0,5\n", 3, None, "expected 3 fields, got 2"),
        ("TIMESTAMP,ContextTokens\n" + ROW, 1, "GeneratedTokens", "missing column"),
        ("", 1, None, "no CSV header"),
    ],
)
def test_malformed(tmp_path: Path, text: str, line: int, field: str | None, message: str) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(TraceFormatError) as info:
        list(iter_azure(path))
    assert (info.value.line, info.value.field) == (line, field)
    assert str(info.value).startswith(f"{path}:{line}:")
    assert message in str(info.value)


def test_a_huge_header_is_cut_short_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(100_000)) + "\n1,2\n")
    with pytest.raises(TraceFormatError) as info:
        list(iter_azure(path))
    message = str(info.value)
    assert len(message) < 400 and "(99,988 more)" in message


# --- read in batches ----------------------------------------------------------------------


def _rows(count: int) -> list[str]:
    """`count` sorted rows, one a millisecond apart."""
    return [
        f"2023-11-16 18:{i // 60_000:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}0000,"
        f"{i % 977},{i % 31}\n"
        for i in range(count)
    ]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 64 KiB (about 1,800 rows), so a file of 70,000 rows spans dozens."""
    monkeypatch.setattr(_batches, "BATCH_BYTES", 1 << 16)


@pytest.mark.parametrize(
    ("bad", "field", "message"),
    [
        ("2023-11-16 19:00:00.0,12,abc\n", "GeneratedTokens", "got 'abc'"),
        ("2023-11-16 19:00:00.0,-5,1\n", "ContextTokens", "got '-5'"),
        ("2023-11-16 18:00:00.0,1,1\n", "TIMESTAMP", "earlier than line 70000's"),
        ("2023-02-30 19:00:00.0,1,1\n", "TIMESTAMP", "day is out of range"),
        ("2023-11-16 19:00:00.0,1\n", None, "expected 3 fields, got 2"),
    ],
)
def test_a_bad_row_in_a_later_batch_names_its_line(
    tmp_path: Path, small_batches: None, bad: str, field: str | None, message: str
) -> None:
    rows = _rows(70_000)
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(rows[:69_999]) + bad + rows[69_999])
    with pytest.raises(TraceFormatError) as info:
        workload_stats(iter_azure(path))
    assert (info.value.line, info.value.field) == (70_001, field)
    assert message in str(info.value)
    with pytest.raises(TraceFormatError) as again:
        list(iter_azure(path))
    assert str(again.value) == str(info.value)


def test_lines_stay_right_past_blank_lines_quotes_and_odd_cells(
    tmp_path: Path, small_batches: None
) -> None:
    rows = _rows(20_000)
    rows[3_000] = "\n"  # a blank line
    rows[6_000] = ",,\n"  # a row of blank cells
    rows[9_000] = " 2023-11-16 18:00:09.0 , 12.0 ,7\n"  # padded cells, a count written 12.0
    rows[12_000] = '"2023-11-16 18:00:12.000","5","6"\r\n'  # quoted, CRLF: read row by row
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(rows))
    sessions = list(iter_azure(path))
    by_line = {s.source_line: s for s in sessions}
    assert len(sessions) == 19_998 and 3_002 not in by_line and 6_002 not in by_line
    assert by_line[9_002].steps == (Step(12, 7),)
    assert by_line[9_002].start_ms == 9_000.0
    assert by_line[12_002].steps == (Step(5, 6),)
    assert by_line[20_001].start_ms == 19_999.0
    assert by_line[20_001].session_id == "az-20001"


def test_stats_come_from_the_columns_and_agree_with_the_sessions(
    tmp_path: Path, small_batches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(_rows(10_000)))
    from_sessions = workload_stats(list(iter_azure(path)))
    assert isinstance(iter_azure(path), ColumnarSessions)

    def no_sessions(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Session built for the sums")

    monkeypatch.setattr(azure, "Session", no_sessions)
    assert workload_stats(iter_azure(path)) == from_sessions
    assert from_sessions.requests == 10_000
    assert from_sessions.input_tokens == sum(i % 977 for i in range(10_000))
    assert from_sessions.span_s == pytest.approx(9.999)


def test_mixed_timestamp_forms_in_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(
        HEADER
        + "2024-05-10 00:00:00+00:00,1,1\n"
        + "2024-05-10 00:00:00.5+00:00,1,1\n"
        + "2024-05-10T00:00:01Z,1,1\n"
        + "2024-05-10 02:00:01.25+0200,1,1\n"
        + "2024-05-10 00:00:02.123456789,1,1\n"
    )
    assert [s.start_ms for s in iter_azure(path)] == [0.0, 500.0, 1000.0, 1250.0, 2123.456789]


_DAYS = st.tuples(
    st.integers(1970, 2200), st.integers(1, 12), st.integers(1, 31), st.integers(0, 24)
)


@given(
    st.lists(
        st.tuples(_DAYS, st.integers(0, 60), st.integers(0, 60), st.integers(0, 10**9 - 1)),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 9),
    st.sampled_from([" ", "T"]),
)
def test_timestamps_of_one_width_read_as_the_parser_reads_each(
    cells: list[tuple[tuple[int, int, int, int], int, int, int]], digits: int, sep: str
) -> None:
    """A batch of one width (Arrow's cast, the fast path) or with an impossible date or time
    in it (the general path): each cell's value, or its refusal, is parse_timestamp_ns's."""
    texts = []
    for (year, month, day, hour), minute, second, fraction in cells:
        text = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
        texts.append(text + (f".{fraction:09d}"[: digits + 1] if digits else ""))
    sec, nsec, bad = azure._timestamps(pa.array(texts))
    for i, text in enumerate(texts):
        try:
            want: int | None = parse_timestamp_ns(text)
        except ValueError:
            want = None
        assert (None if bad[i] else int(sec[i]) * 10**9 + int(nsec[i])) == want, text


def test_a_plain_batch_takes_arrows_cast() -> None:
    cells = pa.array(["2023-11-16 18:15:46.6805900", "2024-02-29 00:00:00.0000001"])
    lengths = _batches.cell_offsets(cells)[1:] - _batches.cell_offsets(cells)[:-1]
    fast = azure._arrow_timestamps(cells, azure._char_matrix(cells, lengths), lengths)
    assert fast is not None
    start = dt.datetime(2023, 11, 16, 18, 15, 46, tzinfo=dt.UTC).timestamp()
    assert int(fast[0][0]) == int(start) and int(fast[1][0]) == 680590000


# --- the sums from typed columns ------------------------------------------------------------

_TIMES = st.sampled_from(
    [
        "{d} {t}.{f:07d}",  # the 2023 form
        "{d}T{t}",
        "{d} {t}",
        "{d} {hm}",  # no seconds: pyarrow reads it, the parser refuses it
        "{d}",
        " {d} {t}",  # padded
        "{d} {t}Z",
        "{d} {t}.5+00:00",
        "2023-02-29 {t}",
        "{d} {t}.",
        "yesterday",
    ]
)
_COUNTS = st.sampled_from(
    ["{n}", " {n}", "{n}.0", "0x1f", "0X1F", "-0", "-{n}", "+{n}", "", "1000000001", "00{n}"]
)


@st.composite
def _azure_rows(draw: st.DrawFn) -> list[str]:
    """Plain rows in order, one a minute (on the whole minute or past it), and up to three
    odd ones among them (a cell of another form, a blank or quoted row, one out of order),
    so that some chunks are read typed and others not."""
    count = draw(st.integers(1, 150))
    odd = draw(st.lists(st.integers(0, count - 1), max_size=3))
    rows = []
    for i in range(count):
        whole = draw(st.booleans())
        hm = f"{10 + i // 60:02d}:{i % 60:02d}"
        clock = {"d": "2023-11-16", "hm": hm, "t": hm + (":00" if whole else ":30")}
        fraction = 0 if whole else i * 7919 % 10**7
        row = "{d} {t}.{f:07d}".format(f=fraction, **clock) + f",{i % 97},{i % 13}"
        kind = (
            draw(st.sampled_from(["time", "count", "blank", "quoted", "late"])) if i in odd else ""
        )
        if kind == "time":
            row = draw(_TIMES).format(f=fraction, **clock) + f",{i},1"
        elif kind == "count":
            row = "{d} {t}".format(**clock) + "," + draw(_COUNTS).format(n=i) + ",2"
        elif kind == "blank":
            row = draw(st.sampled_from(["", ",,", " , , "]))
        elif kind == "quoted":
            row = '"{d} {t}",1,1'.format(**clock)
        elif kind == "late":
            row = "2023-11-16 09:00:00,1,1"
        rows.append(row + draw(st.sampled_from(["\n"] * 6 + ["\r\n"])))
    return rows


def _outcome(read: Callable[[], object]) -> object:
    """What reading gives: its value, or the text of its TraceFormatError."""
    try:
        return read()
    except TraceFormatError as err:
        return f"error: {err}"


@settings(max_examples=150, deadline=None)
@given(_azure_rows(), st.sampled_from([1 << 9, 1 << 11, 1 << 20]))
def test_typed_sums_are_the_sessions_sums(rows: list[str], chunk_bytes: int) -> None:
    """Chunks pyarrow types, chunks it gives up on and rows the rules refuse: the sums from
    typed columns (or their error, naming line and field) are those of the Sessions."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_batches, "BATCH_BYTES", chunk_bytes)
        path = Path(folder) / "trace.csv"
        path.write_text(HEADER + "".join(rows), newline="")
        typed = _outcome(lambda: workload_stats(iter_azure(path)))
        from_sessions = _outcome(lambda: workload_stats(list(iter_azure(path))))
        assert typed == from_sessions


_FORMS = [
    *("TIME " + form for form in _TIMES.elements),  # type: ignore[attr-defined]
    *("COUNT " + form for form in _COUNTS.elements),  # type: ignore[attr-defined]
    "BLANK ",
    "BLANK ,,",
    "BLANK  , , ",
]


@pytest.mark.parametrize("form", _FORMS)
@pytest.mark.parametrize("at", [0, 700])
def test_each_odd_cell_in_a_typed_chunk_reads_as_the_rows_read_it(
    tmp_path: Path, small_batches: None, form: str, at: int
) -> None:
    """One odd cell among 2,000 plain rows, in the first chunk or a later one."""
    kind, pattern = form.split(" ", 1)
    rows = [  # 30 s apart, each on a whole minute or half past it
        f"2023-11-16 {i // 120:02d}:{i // 2 % 60:02d}:{i % 2 * 30:02d}.{i:07d},{i},1\n"
        for i in range(2_000)
    ]
    hm = f"{at // 120:02d}:{at // 2 % 60:02d}"  # `at` is even: on the minute
    clock = {"d": "2023-11-16", "hm": hm, "t": hm + ":00", "f": 0}
    if kind == "TIME":
        rows[at] = pattern.format(**clock) + ",5,1\n"
    elif kind == "COUNT":
        rows[at] = "2023-11-16 {t},".format(**clock) + pattern.format(n=at) + ",1\n"
    else:
        rows[at] = pattern + "\n"
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(rows))
    typed = _outcome(lambda: workload_stats(iter_azure(path)))
    assert typed == _outcome(lambda: workload_stats(list(iter_azure(path))))


def test_typed_reading_names_the_line_after_blank_lines_at_a_chunk_end(
    tmp_path: Path, small_batches: None
) -> None:
    """A row earlier than the one before it, first in a chunk after blank lines that ended
    the chunk before: the error names the last row's line, as the row reader does."""
    rows = _rows(3_000)
    first_chunk = (HEADER + "".join(rows)).encode()[len(HEADER) :][: 1 << 16]
    cut = first_chunk.rfind(b"\n") + 1
    head = first_chunk[:cut].decode()
    lines_in_head = head.count("\n")
    text = HEADER + head + "\n\n" + "2023-11-16 17:00:00.0,1,1\n" + "".join(rows[lines_in_head:])
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(TraceFormatError) as info:
        workload_stats(iter_azure(path))
    with pytest.raises(TraceFormatError) as rows_error:
        list(iter_azure(path))
    assert str(info.value) == str(rows_error.value)
    assert f"earlier than line {lines_in_head + 1}'s" in str(info.value)


def test_the_sums_import_no_pandas(data_dir: Path) -> None:
    """pyarrow's to_numpy and pa.array import pandas, 0.4 s of a 1 s inspect: the typed
    reading does without them."""
    code = (
        "import sys; from pathlib import Path; "
        "from harness.workload.formats.azure import iter_azure; "
        "from harness.workload.stats import workload_stats; "
        f"workload_stats(iter_azure(Path({str(data_dir / 'azure2023_small.csv')!r}))); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
