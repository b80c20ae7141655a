"""Weka's Claude Code traces: exact sums of the test sample (and `inspect --json` of it),
sub-agents as their own sessions naming their parent, the session semantics (context kept,
a hash-shared prefix, a compaction, think time, the tool phase as an unmapped wait), one
pretty-printed document, and malformed input named by file, line and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import TraceFormatError
from harness.workload.detect import detect_format
from harness.workload.formats import iter_trace
from harness.workload.formats.options import TraceOptions
from harness.workload.formats.weka import iter_weka
from harness.workload.stats import workload_stats

SAMPLE = Path(__file__).parent / "data" / "weka_small.jsonl"


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _write(tmp_path: Path, records: list[dict[str, Any]] | list[str]) -> Path:
    path = tmp_path / "weka.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sample_sums_are_exact() -> None:
    sessions = list(iter_weka(SAMPLE))
    assert [s.session_id for s in sessions] == ["conv-a", "conv-a/agent_001", "conv-b"]
    assert [s.requests for s in sessions] == [4, 2, 2]
    stats = workload_stats(sessions)
    assert (stats.sessions, stats.requests) == (3, 8)
    assert (stats.input_tokens, stats.output_tokens) == (1_600, 275)
    assert [s.input_lengths() for s in sessions] == [[130, 200, 260, 150], [70, 90], [500, 200]]
    assert all(step.hash_block_tokens == 64 for s in sessions for step in s.steps)
    assert sessions[0].steps[2].hash_ids == (1, 2, 5, 6, 7)
    assert detect_format(SAMPLE) == "weka"
    assert list(iter_trace(SAMPLE, "weka")) == sessions


def test_inspect_json_of_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "inspect", str(SAMPLE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["sessions"], data["requests"]) == (3, 8)
    assert (data["input_tokens"], data["output_tokens"]) == (1_600, 275)
    totals = data["recorded_split"]["totals"]
    assert totals["llm_s"] == pytest.approx(5.0 + 1.2 + 4.0)  # api_time
    # conv-a's 3 s gap after request 1 is its wait on the sub-agent: not tool time.
    assert totals["tool_s"] == pytest.approx(1.5 + 0.4 + 1.0)
    assert totals["subagent_wait_s"] == pytest.approx(3.0)
    assert totals["human_s"] == pytest.approx(11.0)
    assert data["recorded_split"]["unmapped_tool_calls"] == {"(no name)": 4}


def test_subagent_is_its_own_session_naming_its_parent() -> None:
    _, sub, _ = iter_weka(SAMPLE)
    assert sub.parent_id == "conv-a"
    assert sub.parent_offset_ms == sub.start_ms == pytest.approx(5_500)
    assert sub.parent_step == 1  # spawned after the parent's second request
    assert sub.metadata["subagent_type"] == "Explore"
    assert sub.steps[0].tools[0].duration_ms == pytest.approx(400)  # 6.5 - (5.6 + 0.5) s


def test_context_think_time_and_tool_phase() -> None:
    conv_a, _, conv_b = iter_weka(SAMPLE)
    steps = conv_a.steps
    assert steps[1].kept_prefix_tokens is None and steps[1].new_input_tokens == 200 - 150
    # Request 3: 150 tokens after a context of 260 + 40: keeps the 2 blocks its ids share.
    assert (steps[3].kept_prefix_tokens, steps[3].new_input_tokens) == (128, 22)
    assert steps[3].think_ms == pytest.approx(11_000)  # 20 - (8 + 1) s after end_turn
    assert [s.think_ms for s in steps[:3]] == [0.0, 0.0, 0.0]
    assert [(t.kind, t.name, t.duration_ms) for t in steps[0].tools] == [
        ("unmapped", None, pytest.approx(1_500))
    ]
    assert steps[0].recorded_tools_ms == pytest.approx(1_500)
    assert steps[2].tools == () and steps[3].tools == ()  # end_turn, and the last
    assert steps[0].recorded_llm_ms == pytest.approx(1_500)
    # conv-b request 1: 200 tokens after a context of 600: a compaction, a new prefix.
    assert conv_b.steps[1].kept_prefix_tokens == 0


def test_one_pretty_printed_document(tmp_path: Path) -> None:
    path = tmp_path / "conv-a.json"
    path.write_text(json.dumps(_records()[0], indent=2))
    assert [s.session_id for s in iter_weka(path)] == ["conv-a", "conv-a/agent_001"]
    bad = _records()[0]
    bad["requests"][0]["in"] = "130"
    path.write_text(json.dumps(bad, indent=2))
    with pytest.raises(TraceFormatError) as err:
        list(iter_weka(path))
    assert (err.value.line, err.value.field) == (1, "requests.0.in")


def test_shrink_after_tool_use_is_a_contradiction(tmp_path: Path) -> None:
    record = _records()[0]
    record["requests"][3]["stop"] = "tool_use"
    record["requests"][4]["t"] = 10.0
    path = _write(tmp_path, [record])
    with pytest.raises(TraceFormatError, match="session 'conv-a' request 3") as err:
        list(iter_weka(path))
    assert (err.value.line, err.value.field) == (1, "requests.4.in")
    conv_a, *_ = iter_weka(path, TraceOptions(repair_tokens=True))
    assert conv_a.steps[3].kept_prefix_tokens == 128


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda r: r.pop("id"), "id", "missing"),
        (lambda r: r.update(requests={}), "requests", "a list"),
        (lambda r: r.update(requests=[]), "requests", "no API request"),
        (lambda r: r["requests"][0].update(type="x"), "requests.0.type", "'subagent'"),
        (lambda r: r["requests"][1].pop("t"), "requests.1.t", "missing"),
        (lambda r: r["requests"][1].update(t=-1), "requests.1.t", "non-negative"),
        (lambda r: r["requests"][1].update(out=1.5), "requests.1.out", "non-negative integer"),
        (lambda r: r["requests"][1].update(api_time="2"), "requests.1.api_time", "number"),
        (lambda r: r["requests"][1].update(hash_ids=[1, 2]), "requests.1.hash_ids", "ceil"),
        (lambda r: r["requests"][1].update(hash_ids=[1, 2, -5, 6]), "requests.1.hash_ids.2", ""),
        (lambda r: r["requests"][1].update(stop=3), "requests.1.stop", "a string"),
        (lambda r: r["requests"][3].update(t=1.0), "requests.3.t", "earlier than"),
        (lambda r: r["requests"][2].pop("agent_id"), "requests.2.agent_id", "missing"),
        (
            lambda r: r["requests"][2]["requests"][1].update(type="subagent"),
            "requests.2.requests.1.type",
            "'n' or 's'",
        ),
        (
            lambda r: r["requests"][2]["requests"][0].update(**{"in": None}),
            "requests.2.requests.0.in",
            "non-negative integer",
        ),
        (lambda r: r.update(block_size=0), "block_size", "at least 1"),
    ],
)
def test_malformed_field_names_file_line_and_field(
    tmp_path: Path, mutate: Any, field: str, message: str
) -> None:
    first, second = _records()
    bad = copy.deepcopy(first)
    mutate(bad)
    path = _write(tmp_path, [second, bad])
    with pytest.raises(TraceFormatError) as err:
        list(iter_weka(path))
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)
    assert message in str(err.value)


def test_malformed_lines_name_the_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in _records()]
    for bad, message in (("{not json", "invalid JSON"), ("[1, 2]", "JSON object")):
        for at in (0, 1):
            path = _write(tmp_path, [*lines[:at], bad, *lines[at:]])
            with pytest.raises(TraceFormatError, match=message) as err:
                list(iter_weka(path))
            assert err.value.line == at + 1


def test_a_conversation_id_twice_is_an_error(tmp_path: Path) -> None:
    first, _ = _records()
    with pytest.raises(TraceFormatError, match="already read on line 1") as err:
        list(iter_weka(_write(tmp_path, [first, first])))
    assert (err.value.line, err.value.field) == (2, "id")
