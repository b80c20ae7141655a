"""Native sessions JSON-lines loader: full validation with dotted fields, and a round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import TraceFormatError
from harness.workload.formats.sessions import iter_sessions, session_to_json
from harness.workload.model import Session, Step, ToolCall


def test_reads_fixture(data_dir: Path) -> None:
    a1, a2 = iter_sessions(data_dir / "sessions_small.jsonl")
    assert a1 == Session(
        "a1",
        0.0,
        (
            Step(1500, 120, tools=(ToolCall("retrieval", 900.0),)),
            Step(400, 80, think_ms=250.5, offset_ms=3000.0),
        ),
        source_line=1,
    )
    assert a2.start_ms == 1200.5 and a2.source_line == 3
    assert a2.metadata == {"team": "red"}
    assert a2.steps[0].hash_ids == (7, 8)
    assert a2.steps[0].tools == (
        ToolCall("code_exec", 50.0, size=3.0, parallel_group=0),
        ToolCall("parse", 5.0, parallel_group=0),
    )


def test_round_trip(data_dir: Path, tmp_path: Path) -> None:
    sessions = list(iter_sessions(data_dir / "sessions_small.jsonl"))
    path = tmp_path / "copy.jsonl"
    path.write_text("".join(json.dumps(session_to_json(s)) + "\n" for s in sessions))
    copies = list(iter_sessions(path))
    assert [(c.session_id, c.start_ms, c.steps, c.metadata) for c in copies] == [
        (s.session_id, s.start_ms, s.steps, s.metadata) for s in sessions
    ]


def _line(**changes: object) -> str:
    record: dict[str, object] = {
        "session_id": "b",
        "start_ms": 0,
        "steps": [
            {"new_input_tokens": 10, "output_tokens": 2},
            {
                "new_input_tokens": 5,
                "output_tokens": 3,
                "tools": [{"kind": "parse", "duration_ms": 1}],
            },
        ],
    }
    record.update(changes)
    return json.dumps(record)


STEP = {"new_input_tokens": 1, "output_tokens": 1}


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        (
            _line(steps=[STEP, {"new_input_tokens": 1, "output_tokens": -4}]),
            "steps.1.output_tokens",
            "greater than or equal to 0",
        ),
        (
            _line(steps=[{"new_input_tokens": "12", "output_tokens": 1}]),
            "steps.0.new_input_tokens",
            "valid integer",
        ),
        (
            _line(steps=[{**STEP, "tools": [{"kind": "x", "duration_ms": 1, "colour": "red"}]}]),
            "steps.0.tools.0.colour",
            "unknown key",
        ),
        (_line(steps=[{**STEP, "tools": [{"duration_ms": 1}]}]), "steps.0.tools.0.kind", "missing"),
        (_line(steps=[]), "steps", "at least 1 item"),
        (_line(start_ms=-1), "start_ms", "greater than or equal to 0"),
        (_line(metadata={"a": 1}), "metadata.a", "valid string"),
        (_line(extra=1), "extra", "unknown key"),
        (_line(steps=[{**STEP, "hash_ids": [1, 2]}]), "steps.0.hash_ids", "needs ceil(1/512) = 1"),
        (_line(session_id="a"), "session_id", "duplicate session id 'a' (first on line 1)"),
        ('"just a string"', None, "expected a JSON object"),
        (_line(steps=[{**STEP, "hash_ids": [-1]}]), "steps.0.hash_ids.0", "greater than or equal"),
        (_line(steps=[{**STEP, "hash_ids": [2**63]}]), "steps.0.hash_ids.0", "less than or equal"),
        (_line(start_ms="5"), "start_ms", "valid number"),
        (_line(start_ms=True), "start_ms", "valid number"),
        (_line(start_ms=1e308), "start_ms", "less than or equal"),
        (_line(steps=[{**STEP, "think_ms": 1e20}]), "steps.0.think_ms", "less than or equal"),
        (
            _line(steps=[{"new_input_tokens": 10**40, "output_tokens": 1}]),
            "steps.0.new_input_tokens",
            "less than or equal to 1000000000, got an integer of 41 digits",
        ),
        (
            _line(steps=[{"new_input_tokens": 600_000_000, "output_tokens": 1}] * 2),
            "steps.1.new_input_tokens",
            "prompt of 1,200,000,001 tokens exceeds the limit",
        ),
        (
            _line(steps=[{**STEP, "tools": [{"kind": "x", "duration_ms": 1, "size": 1e300}]}]),
            "steps.0.tools.0.size",
            "less than or equal",
        ),
        (
            _line(
                steps=[
                    {**STEP, "tools": [{"kind": "x", "duration_ms": 1, "parallel_group": 2**40}]}
                ]
            ),
            "steps.0.tools.0.parallel_group",
            "less than or equal",
        ),
        (_line(session_id="\ud800"), "session_id", "lone surrogate"),
        (_line(metadata={"\udfff": "a"}), "metadata.\udfff", "lone surrogate"),
    ],
)
def test_malformed(tmp_path: Path, line: str, field: str | None, message: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(_line(session_id="a") + "\n\n" + line + "\n")
    with pytest.raises(TraceFormatError) as info:
        list(iter_sessions(path))
    assert (info.value.line, info.value.field) == (3, field)
    where = f"{path}:3: field {field!r}:" if field else f"{path}:3:"
    assert str(info.value).startswith(where)
    assert message in str(info.value)


def test_second_step_hash_ids_cover_the_grown_prompt(tmp_path: Path) -> None:
    # prompt of step 1 = 600 + 10 + 100 = 710 tokens: two blocks
    steps = [
        {"new_input_tokens": 600, "output_tokens": 10, "hash_ids": [1, 2]},
        {"new_input_tokens": 100, "output_tokens": 1, "hash_ids": [1, 2]},
    ]
    path = tmp_path / "s.jsonl"
    path.write_text(_line(steps=steps) + "\n")
    [session] = iter_sessions(path)
    assert session.input_lengths() == [600, 710]


def test_model_extension_keys_round_trip(tmp_path: Path) -> None:
    line = {
        "session_id": "sub",
        "start_ms": 5,
        "parent_id": "main",
        "parent_offset_ms": 5,
        "parent_step": 0,
        "steps": [
            {
                "new_input_tokens": 100,
                "output_tokens": 2,
                "hash_ids": [1, 2],
                "hash_block_tokens": 64,
                "recorded_llm_ms": 12.5,
                "tools": [{"kind": "code_exec", "duration_ms": 3, "name": "Bash"}],
            },
            {
                "new_input_tokens": 8,
                "output_tokens": 1,
                "kept_prefix_tokens": 50,
                "recorded_tools_ms": 4,
            },
        ],
    }
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (session,) = iter_sessions(path)
    assert session.parent_id == "main" and session.parent_step == 0
    assert session.steps[0].hash_block_tokens == 64 and session.steps[0].tools[0].name == "Bash"
    assert session.input_lengths() == [100, 58]
    assert session_to_json(session) == line


def test_hash_ids_count_follows_the_block_size(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(
        '{"session_id": "a", "start_ms": 0, "steps": [{"new_input_tokens": 100, '
        '"output_tokens": 1, "hash_ids": [1], "hash_block_tokens": 64}]}\n'
    )
    with pytest.raises(TraceFormatError, match=r"ceil\(100/64\) = 2"):
        list(iter_sessions(path))
