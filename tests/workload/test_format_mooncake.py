"""Mooncake JSON-lines loader: good records, and malformed ones named by file, line and field."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError, TraceFormatError
from harness.workload.formats import _batches, mooncake
from harness.workload.formats.mooncake import iter_mooncake
from harness.workload.model import Session, Step
from harness.workload.stats import workload_stats

GOOD = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}'


def test_reads_fixture(data_dir: Path) -> None:
    sessions = list(iter_mooncake(data_dir / "mooncake_small.jsonl"))
    assert sessions == [
        Session("mc-1", 0.0, (Step(1024, 10, hash_ids=(0, 1)),), source_line=1),
        Session("mc-3", 1500.0, (Step(1025, 0, hash_ids=(0, 1, 2)),), source_line=3),
        Session("mc-4", 2750.0, (Step(0, 7, hash_ids=()),), source_line=4),
    ]


MALFORMED = [
    (
        '{"timestamp": 0, "input_length": "abc", "output_length": 1, "hash_ids": []}',
        "input_length",
        "expected a non-negative integer, got 'abc'",
    ),
    (
        '{"timestamp": 0, "input_length": 5, "output_length": -1, "hash_ids": [1]}',
        "output_length",
        "expected a non-negative integer, got -1",
    ),
    ('{"timestamp": 0, "input_length": 5, "hash_ids": [1]}', "output_length", "missing"),
    (
        '{"timestamp": -3, "input_length": 5, "output_length": 1, "hash_ids": [1]}',
        "timestamp",
        "expected a non-negative number, got -3",
    ),
    (
        '{"timestamp": 0, "input_length": 1024, "output_length": 1, "hash_ids": [1, 2, 3]}',
        "hash_ids",
        "has 3 block ids but input_length 1024 needs ceil(1024/512) = 2",
    ),
    (
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["a"]}',
        "hash_ids.0",
        "expected a non-negative integer, got 'a'",
    ),
    (
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": 7}',
        "hash_ids",
        "expected a list of integers, got 7",
    ),
    # passed inspect and preflight, then PromptBuilder raised mid-run
    (
        '{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [5, -1]}',
        "hash_ids.1",
        "expected a non-negative integer, got -1",
    ),
    (
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [true]}',
        "hash_ids.0",
        "got True",
    ),
    (
        '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [' + str(2**63) + "]}",
        "hash_ids.0",
        "exceeds the limit",
    ),
    (
        '{"timestamp": "0", "input_length": 5, "output_length": 1, "hash_ids": [1]}',
        "timestamp",
        "expected a non-negative number, got '0'",
    ),
    (
        '{"timestamp": NaN, "input_length": 5, "output_length": 1, "hash_ids": [1]}',
        "timestamp",
        "expected a finite number, got nan",
    ),
    (
        '{"timestamp": 1e400, "input_length": 5, "output_length": 1, "hash_ids": [1]}',
        "timestamp",
        "expected a finite number, got inf",
    ),
    (
        '{"timestamp": 1e308, "input_length": 5, "output_length": 1, "hash_ids": [1]}',
        "timestamp",
        "exceeds the limit",
    ),
    (
        '{"timestamp": 0, "input_length": 5.5, "output_length": 1, "hash_ids": [1]}',
        "input_length",
        "expected a non-negative integer, got 5.5",
    ),
    (
        '{"timestamp": 0, "input_length": false, "output_length": 1, "hash_ids": []}',
        "input_length",
        "got False",
    ),
    (
        '{"timestamp": 0, "input_length": 1' + "0" * 40 + ', "output_length": 1, "hash_ids": []}',
        "input_length",
        "an integer of 41 digits exceeds the limit of 1,000,000,000",
    ),
    (
        '{"timestamp": 0, "input_length": ' + "9" * 5000 + ', "output_length": 1}',
        None,
        "an integer of more than 4,300 digits",
    ),
    ("[" * 100_000, None, "nested too deeply"),
    ('{"timestamp": 0, "x": "\\ud800"}', "x", "lone surrogate"),
    ('{"timestamp": 0, "input_length": 5,', None, "invalid JSON"),
    ("[1, 2]", None, "expected a JSON object, got a list"),
]


@pytest.mark.parametrize(("line", "field", "message"), MALFORMED)
def test_malformed_line_names_file_line_field(
    tmp_path: Path, line: str, field: str | None, message: str
) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n{GOOD}\n")
    sessions = iter_mooncake(path)
    assert next(sessions).session_id == "mc-1"  # streaming: the good line comes first
    with pytest.raises(TraceFormatError) as info:
        next(sessions)
    err = info.value
    assert (err.path, err.line, err.field) == (path, 3, field)
    where = f"{path}:3: field '{field}':" if field else f"{path}:3:"
    assert str(err).startswith(where)
    assert message in str(err)


def test_timestamps_must_not_go_backwards(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    later = GOOD.replace('"timestamp": 0', '"timestamp": 900')
    path.write_text(f"{GOOD}\n{later}\n{GOOD}\n")
    with pytest.raises(TraceFormatError) as info:
        list(iter_mooncake(path))
    assert (info.value.line, info.value.field) == (3, "timestamp")
    assert "0 is earlier than line 2's 900" in str(info.value)


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        iter_mooncake(tmp_path / "nope.jsonl")


def test_a_count_written_as_a_whole_float_is_read(tmp_path: Path) -> None:
    """Some exporters write counts as `512.0`: the number is whole, so it is the count."""
    path = tmp_path / "trace.jsonl"
    path.write_text(
        '{"timestamp": 0, "input_length": 512.0, "output_length": 8.0, "hash_ids": [3]}\n'
    )
    (session,) = list(iter_mooncake(path))
    assert session.steps[0].new_input_tokens == 512 and session.steps[0].output_tokens == 8


# --- the sums from typed columns ------------------------------------------------------------


def _record(i: int, **changes: object) -> str:
    """A plain record `i` (its time `i` ms, as many blocks as its input needs)."""
    record: dict[str, object] = {
        "timestamp": i,
        "input_length": 100 * i,
        "output_length": i % 7,
        "hash_ids": list(range(-(-100 * i // 512))),
    }
    record.update(changes)
    return json.dumps(record)


def _outcome(read: Callable[[], object]) -> object:
    """What reading gives: its value, or the text of its TraceFormatError."""
    try:
        return read()
    except TraceFormatError as err:
        return f"error: {err}"


def _agree(path: Path) -> object:
    """The sums from typed columns, checked against those of the Sessions."""
    typed = _outcome(lambda: workload_stats(iter_mooncake(path)))
    assert typed == _outcome(lambda: workload_stats(list(iter_mooncake(path))))
    return typed


@pytest.mark.parametrize(("line", "field", "message"), MALFORMED)
def test_a_malformed_line_in_a_later_chunk_is_named_by_the_sums_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, line: str, field: str | None, message: str
) -> None:
    monkeypatch.setattr(_batches, "BATCH_BYTES", 1 << 14)
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(_record(i) + "\n" for i in range(500)) + line + "\n")
    outcome = _agree(path)
    assert isinstance(outcome, str) and outcome.startswith(f"error: {path}:501:")
    assert message in outcome


_HEAD = '{"timestamp": 7, "input_length": 5, "output_length": 1, "hash_ids": [1]'
_ODD = [
    '{"timestamp": 7, "input_length": 512.0, "output_length": 8.0, "hash_ids": [3]}',
    _HEAD + ', "x": NaN}',
    _HEAD + ', "x": "é"}',
    _HEAD + ', "x": [[[1]]]}',
    '{"timestamp": 7, "input_length": 5, "input_length": 9, "output_length": 1, "hash_ids": [1]}',
    '{"timestamp": -0.0, "input_length": 5, "output_length": 1, "hash_ids": [1]}',
    '{"timestamp": 7, "input_length": 5, "output_length": 1, "hash_ids": [1]}{"timestamp": 8}',
    _HEAD + ', "x": null}',
    _HEAD + "}" + _HEAD + "}",  # two records on a line
    _HEAD + ', "x": "\udcff"}',  # not UTF-8 once written with surrogateescape
    _HEAD + ', "x": 1e999}',
    '{"timestamp": 7, "input_length": 5, "output_length": 1, "hash_ids": [1, null]}',
    _HEAD + ', "x": "\\ud83d\\ude00"}',
    _HEAD + ', "x": "' + "y" * 3000 + '"}',
    _HEAD + ', "x": ' + "[" * 1200 + "]" * 1200 + "}",
    "",
    "   ",
    "null",  # a bare null crashed pyarrow's JSON reader
    "\ufeff" + '{"timestamp": 7, "input_length": 5, "output_length": 1, "hash_ids": [1]}',
    '{"timestamp": 7, "input_length": 5, "output_length": 1, "hash_ids": [1]}\r',
]


@pytest.mark.parametrize("odd", _ODD)
@pytest.mark.parametrize("at", [0, 300])
def test_each_odd_line_in_a_typed_chunk_reads_as_the_lines_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, odd: str, at: int
) -> None:
    """One odd line among plain ones, in the first chunk or a later one: valid JSON that
    pyarrow refuses, or reads where Python's decoder refuses it, or not one record a line."""
    monkeypatch.setattr(_batches, "BATCH_BYTES", 1 << 14)
    lines = [_record(i) for i in range(600)]
    lines[at] = odd.replace('"timestamp": 7', f'"timestamp": {at}')
    path = tmp_path / "trace.jsonl"
    text = "".join(line + "\n" for line in lines)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _agree(path)


@st.composite
def _mooncake_lines(draw: st.DrawFn) -> list[str]:
    """Plain records with up to three odd lines among them."""
    count = draw(st.integers(1, 300))
    lines = [_record(i) for i in range(count)]
    for at in draw(st.lists(st.integers(0, count - 1), max_size=3)):
        odd = draw(st.sampled_from([*_ODD, *(m[0] for m in MALFORMED[:12])]))
        lines[at] = odd.replace('"timestamp": 7', f'"timestamp": {at}')
    ends = draw(st.sampled_from(["\n", "\r\n"]))
    return [line + ends for line in lines]


@settings(max_examples=60, deadline=None)
@given(_mooncake_lines(), st.sampled_from([1 << 10, 1 << 13, 1 << 20]))
def test_typed_sums_are_the_sessions_sums(lines: list[str], chunk_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(_batches, "BATCH_BYTES", chunk_bytes)
        path = Path(folder) / "trace.jsonl"
        path.write_bytes("".join(lines).encode("utf-8", "surrogateescape"))
        _agree(path)


def test_the_sums_come_from_typed_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(_record(i) + "\n" for i in range(1000)))
    from_sessions = workload_stats(list(iter_mooncake(path)))

    def no_sessions(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Session built for the sums")

    monkeypatch.setattr(mooncake, "Session", no_sessions)
    assert workload_stats(iter_mooncake(path)) == from_sessions
    assert from_sessions.input_tokens == sum(100 * i for i in range(1000))
