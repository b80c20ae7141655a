"""Mooncake JSON-lines loader: good records, and malformed ones named by file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, TraceFormatError
from harness.workload.formats.mooncake import iter_mooncake
from harness.workload.model import Session, Step

GOOD = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}'


def test_reads_fixture(data_dir: Path) -> None:
    sessions = list(iter_mooncake(data_dir / "mooncake_small.jsonl"))
    assert sessions == [
        Session("mc-1", 0.0, (Step(1024, 10, hash_ids=(0, 1)),), source_line=1),
        Session("mc-3", 1500.0, (Step(1025, 0, hash_ids=(0, 1, 2)),), source_line=3),
        Session("mc-4", 2750.0, (Step(0, 7, hash_ids=()),), source_line=4),
    ]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
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
            '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ['
            + str(2**63)
            + "]}",
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
            '{"timestamp": 0, "input_length": 1'
            + "0" * 40
            + ', "output_length": 1, "hash_ids": []}',
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
    ],
)
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
