"""Alibaba Bailian usage traces: exact sums of the test sample (and `inspect --json` of it),
conversations chained by parent_chat_id with each turn due at its timestamp, the context
rules (kept, a hash-shared branch, a compaction), streaming by idle gap, contradicting
turns named by session and turn, and malformed input named by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import TraceFormatError
from harness.workload.detect import detect_format
from harness.workload.formats import iter_trace
from harness.workload.formats.bailian import SESSION_GAP_S, iter_bailian
from harness.workload.formats.options import TraceOptions
from harness.workload.stats import workload_stats

SAMPLE = Path(__file__).parent / "data" / "bailian_small.jsonl"


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _write(tmp_path: Path, rows: list[dict[str, Any]] | list[str]) -> Path:
    path = tmp_path / "bailian.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(chat: int, parent: int, t: float, tokens: int, out: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "chat_id": chat,
        "parent_chat_id": parent,
        "timestamp": t,
        "input_length": tokens,
        "output_length": out,
        "type": "text",
        "turn": 1,
        "hash_ids": [],
    }
    row.update(extra)
    return row


def test_sample_sums_are_exact() -> None:
    rows = _rows()
    sessions = list(iter_bailian(SAMPLE))
    assert [s.session_id for s in sessions] == ["bl-1", "bl-2", "bl-4"]
    assert [s.input_lengths() for s in sessions] == [[40, 75, 70], [33, 40], [20]]
    stats = workload_stats(sessions)
    assert (stats.sessions, stats.requests) == (3, len(rows)) == (3, 6)
    assert stats.input_tokens == sum(r["input_length"] for r in rows) == 278
    assert stats.output_tokens == sum(r["output_length"] for r in rows) == 77
    assert all(step.hash_block_tokens == 16 for s in sessions for step in s.steps)
    assert detect_format(SAMPLE) == "bailian"
    assert list(iter_trace(SAMPLE, "bailian")) == sessions


def test_inspect_json_of_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "inspect", str(SAMPLE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["sessions"], data["requests"]) == (3, 6)
    assert (data["input_tokens"], data["output_tokens"]) == (278, 77)
    assert data["span_s"] == pytest.approx(20.25 - 0.5)


def test_turns_are_due_at_their_timestamps() -> None:
    one, two, four = iter_bailian(SAMPLE)
    assert one.start_ms == 500 and two.start_ms == 1_000
    assert [s.offset_ms for s in one.steps] == [0.0, 9_500.0, 14_500.0]
    assert two.steps[1].offset_ms == pytest.approx(19_250)
    assert two.metadata["type"] == "image"
    assert four.metadata["parent_chat_id"] == "99"  # its parent is outside the file


def test_context_kept_branch_and_compaction(tmp_path: Path) -> None:
    one, two, _ = iter_bailian(SAMPLE)
    assert (one.steps[1].kept_prefix_tokens, one.steps[1].new_input_tokens) == (None, 15)
    # Chat 5 answers chat 1 again: 70 tokens after chat 3's context of 105 keeps 3 blocks.
    assert (one.steps[2].kept_prefix_tokens, one.steps[2].new_input_tokens) == (48, 22)
    assert two.steps[1].hash_ids == (10, 11)  # fewer ids than blocks: the rest is fresh
    rows = [_row(1, -1, 0, 1_000, 100), _row(2, 1, 5, 300, 10)]
    (session,) = iter_bailian(_write(tmp_path, rows))
    assert session.steps[1].kept_prefix_tokens == 0
    assert session.input_lengths() == [1_000, 300]


def test_idle_conversation_is_emitted_and_a_late_turn_starts_anew(tmp_path: Path) -> None:
    late = SESSION_GAP_S + 10
    rows = [_row(1, -1, 0, 10, 5), _row(2, -1, 1, 10, 5), _row(3, 1, late, 20, 5)]
    sessions = list(iter_bailian(_write(tmp_path, rows)))
    assert [s.session_id for s in sessions] == ["bl-1", "bl-2", "bl-3"]
    assert sessions[2].input_lengths() == [20]


def test_turn_shorter_than_its_parent_is_a_contradiction(tmp_path: Path) -> None:
    rows = [_row(1, -1, 0, 100, 50), _row(2, 1, 5, 120, 5, turn=2)]
    path = _write(tmp_path, rows)
    with pytest.raises(TraceFormatError, match="session 'bl-1' turn 1 \\(chat 2\\)") as err:
        list(iter_bailian(path))
    assert (err.value.line, err.value.field) == (2, "input_length")
    (session,) = iter_bailian(path, TraceOptions(repair_tokens=True))
    assert session.input_lengths() == [100, 120]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda r: r.pop("chat_id"), "chat_id", "missing"),
        (lambda r: r.update(chat_id="3"), "chat_id", "an integer"),
        (lambda r: r.update(parent_chat_id=-2), "parent_chat_id", "from -1"),
        (lambda r: r.update(parent_chat_id=3), "parent_chat_id", "own id"),
        (lambda r: r.update(timestamp=None), "timestamp", "non-negative"),
        (lambda r: r.update(timestamp=0.1), "timestamp", "sorted by time"),
        (lambda r: r.update(input_length=-1), "input_length", "non-negative integer"),
        (lambda r: r.update(output_length="30"), "output_length", "non-negative integer"),
        (lambda r: r.pop("turn"), "turn", "missing"),
        (lambda r: r.update(type=1), "type", "a string"),
        (lambda r: r.update(hash_ids=None), "hash_ids", "a list"),
        (lambda r: r.update(hash_ids=[1, "2"]), "hash_ids.1", "non-negative integer"),
        (lambda r: r.update(hash_ids=list(range(6))), "hash_ids", "ceil(75/16) = 5"),
        (lambda r: r.update(chat_id=2), "chat_id", "already read on line 2"),
    ],
)
def test_malformed_field_names_file_line_and_field(
    tmp_path: Path, mutate: Any, field: str, message: str
) -> None:
    rows = _rows()
    mutate(rows[2])
    path = _write(tmp_path, rows)
    with pytest.raises(TraceFormatError) as err:
        list(iter_bailian(path))
    assert (err.value.path, err.value.line, err.value.field) == (path, 3, field)
    assert message in str(err.value)


def test_malformed_lines_name_the_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in _rows()]
    for bad, message in (("{not json", "invalid JSON"), ("[1, 2]", "JSON object")):
        path = _write(tmp_path, [lines[0], bad, *lines[1:]])
        with pytest.raises(TraceFormatError, match=message) as err:
            list(iter_bailian(path))
        assert err.value.line == 2
