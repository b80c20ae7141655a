"""ShareGPT loader: turns become steps counted with a tokenizer; errors name line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, TraceFormatError
from harness.workload.formats.sharegpt import TokenCounter, iter_sharegpt
from harness.workload.model import Step


def test_reads_fixture(data_dir: Path, word_counter: TokenCounter) -> None:
    sessions = list(iter_sharegpt(data_dir / "sharegpt_small.json", word_counter))
    assert [(s.session_id, s.source_line, s.start_ms) for s in sessions] == [
        ("c1", 2, 0.0),
        ("c3", 12, 0.0),
        ("c1#1", 26, 0.0),
    ]
    assert sessions[0].steps == (Step(3, 2), Step(2, 4))
    # system + leading greeting + two user messages are the first prompt; the extra
    # assistant message joins the next step's input; the dangling question is dropped
    assert sessions[1].steps == (Step(7, 1), Step(3, 2))
    assert sessions[1].input_lengths() == [7, 11]
    assert sessions[2].steps == (Step(1, 1),)


def test_needs_a_tokenizer(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="--tokenizer"):
        iter_sharegpt(data_dir / "sharegpt_small.json", None)


def test_missing_id_and_empty_list(tmp_path: Path, word_counter: TokenCounter) -> None:
    path = tmp_path / "sg.json"
    path.write_text(
        '[{"conversations": [{"from": "user", "value": "a"}, '
        '{"from": "assistant", "value": "b c"}]}]'
    )
    [session] = iter_sharegpt(path, word_counter)
    assert (session.session_id, session.steps) == ("sg-0", (Step(1, 2),))
    path.write_text(" [ ] \n")
    assert list(iter_sharegpt(path, word_counter)) == []


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ('{"id": 1}', 1, None, "expected a JSON list of conversations"),
        ('[\n{"id": 1}\n]', 2, "conversations", "expected a list of messages"),
        (
            '[\n{"id": 1, "conversations": [\n{"from": "human", "value": "a"},\n'
            '{"from": "robot", "value": "b"}]}]',
            2,
            "conversations.1.from",
            "got 'robot'",
        ),
        (
            '[{"id": 1, "conversations": [{"from": "human", "value": 3}]}]',
            1,
            "conversations.0.value",
            "expected a string, got 3",
        ),
        (
            '[{"id": 1, "conversations": []},\n\n{"id": 2, "conversations": [}]',
            3,
            None,
            "invalid JSON",
        ),
        ('[{"id": 1, "conversations": []}\n{"id": 2}]', 2, None, "expected ',' or ']'"),
        ('[{"id": 1, "conversations": []}]\n[]', 2, None, "extra data after the list"),
        ("[1]", 1, None, "expected a conversation object"),
        # a lone surrogate reached the tokenizer, which raised TypeError
        (
            '[{"id": 1, "conversations": [{"from": "human", "value": "\\ud800"}]}]',
            1,
            "conversations.0.value",
            "lone surrogate",
        ),
        ("[\n" + "[" * 100_000, 2, None, "nested too deeply"),
        ('[\n{"id": ' + "7" * 5000 + "}]", 2, None, "more than 4,300 digits"),
        (
            '[{"id": true, "conversations": [{"from": "human", "value": "a"},'
            ' {"from": "gpt", "value": "b"}]}]',
            1,
            "id",
            "expected a string or integer, got True",
        ),
    ],
)
def test_malformed(
    tmp_path: Path,
    word_counter: TokenCounter,
    text: str,
    line: int,
    field: str | None,
    message: str,
) -> None:
    path = tmp_path / "sg.json"
    path.write_text(text)
    with pytest.raises(TraceFormatError) as info:
        list(iter_sharegpt(path, word_counter))
    assert (info.value.line, info.value.field) == (line, field)
    assert message in str(info.value)
