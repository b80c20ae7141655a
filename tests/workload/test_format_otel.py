"""OpenTelemetry GenAI spans: exact sums of the test sample (and `inspect --json` of it), the
session semantics (tools after the chat before them, parallel when their spans overlap, a
sub-agent naming its parent, a compaction, a nested duplicate chat span, gaps as think
time), one pretty-printed document, and malformed input named by file, line and field.

tests/workload/data/otel_small.jsonl is written by hand from the documented OTLP/JSON shape
and the GenAI semantic conventions; it is not a recording of any agent."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.errors import TraceFormatError
from harness.workload.detect import detect_format
from harness.workload.formats import RECORDED_FORMATS, iter_trace
from harness.workload.formats.options import TraceOptions
from harness.workload.formats.otel import iter_otel
from harness.workload.stats import workload_stats

SAMPLE = Path(__file__).parent / "data" / "otel_small.jsonl"
AGENT = "a" * 32 + "/a000000000000001"
HELPER = "a" * 32 + "/a000000000000008"
TRACE_B = "b" * 32


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _write(tmp_path: Path, records: list[dict[str, Any]], name: str = "otel.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _spans(record: dict[str, Any], scope: int = 0) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = record["resourceSpans"][0]["scopeSpans"][scope]["spans"]
    return spans


def _attr(span: dict[str, Any], key: str) -> dict[str, Any]:
    item: dict[str, Any] = next(a for a in span["attributes"] if a["key"] == key)
    return item


def test_sample_sums_are_exact() -> None:
    sessions = list(iter_otel(SAMPLE))
    assert [s.session_id for s in sessions] == [AGENT, HELPER, TRACE_B]
    assert [s.input_lengths() for s in sessions] == [[1000, 1300, 600], [400, 460], [200, 250]]
    stats = workload_stats(sessions)
    assert (stats.sessions, stats.requests) == (3, 7)
    assert (stats.input_tokens, stats.output_tokens) == (4_210, 330)
    assert detect_format(SAMPLE) == "otel"
    assert "otel" in RECORDED_FORMATS
    assert list(iter_trace(SAMPLE, "otel")) == sessions


def test_inspect_json_of_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "inspect", str(SAMPLE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["sessions"], data["requests"]) == (3, 7)
    assert (data["input_tokens"], data["output_tokens"]) == (4_210, 330)
    totals = data["recorded_split"]["totals"]
    assert totals["llm_s"] == pytest.approx(2.0 + 1.5 + 2.0 + 1.0 + 1.0 + 1.0 + 1.0)
    # Chat end to last tool end, less the waits of the step that started the helper
    # (lookup_weather's 0.4 s and ask_helper's 3.5 s): the parent's wait on its sub-agent.
    assert totals["tool_s"] == pytest.approx(1.1 + 4.0 + 0.3 - 3.9)
    assert totals["subagent_wait_s"] == pytest.approx(3.9)
    assert totals["human_s"] == pytest.approx(0.4 + 1.0 + 0.4 + 1.2)  # gaps before chats
    assert data["recorded_split"]["unmapped_tool_calls"] == {"ask_helper": 1, "lookup_weather": 1}


def test_tools_follow_the_chat_before_them_parallel_where_they_overlap() -> None:
    agent, _, trace_b = iter_otel(SAMPLE)
    first, second, third = agent.steps
    assert [(t.name, t.kind, t.duration_ms, t.parallel_group) for t in first.tools] == [
        ("Bash", "code_exec", pytest.approx(1000), 0),
        ("Read", "parse", pytest.approx(500), 0),
    ]
    # No gen_ai.tool.name: the name after `execute_tool ` in the span name; sequential spans.
    assert [(t.name, t.kind, t.parallel_group) for t in second.tools] == [
        ("lookup_weather", "unmapped", None),
        ("ask_helper", "unmapped", None),
    ]
    assert (first.recorded_llm_ms, first.recorded_tools_ms) == (pytest.approx(2000), 1100)
    assert second.think_ms == pytest.approx(400)  # 3.5 s chat after the 3.1 s tool end
    assert third.tools == () and third.recorded_tools_ms is None
    assert trace_b.steps[0].tools[0].kind == "file_search"  # Grep
    assert agent.metadata["agent_name"] == "Coder"


def test_context_compaction_and_a_nested_duplicate_chat() -> None:
    agent, _, trace_b = iter_otel(SAMPLE)
    assert agent.steps[1].kept_prefix_tokens is None and agent.steps[1].new_input_tokens == 200
    # 600 tokens after a 1,350-token context: a compaction; the chat span nested in it
    # (a second instrumentation of the same call) is not a step.
    assert (agent.steps[2].kept_prefix_tokens, agent.steps[2].new_input_tokens) == (0, 600)
    assert agent.requests == 3
    # Trace B: the older prompt_tokens / completion_tokens names, a chat on the file's
    # second line.
    assert [s.new_input_tokens for s in trace_b.steps] == [200, 30]


def test_subagent_is_its_own_session_naming_its_parent() -> None:
    _, helper, _ = iter_otel(SAMPLE)
    assert helper.parent_id == AGENT
    assert helper.parent_offset_ms == helper.start_ms == pytest.approx(5_600)
    assert helper.parent_step == 1  # started after the parent's second chat
    assert helper.steps[1].think_ms == pytest.approx(400)


def test_one_pretty_printed_document(tmp_path: Path) -> None:
    first, second = _records()
    merged = copy.deepcopy(first)
    merged["resourceSpans"].extend(second["resourceSpans"])
    path = tmp_path / "export.json"
    path.write_text(json.dumps(merged, indent=2))
    assert detect_format(path) == "otel"
    assert [s.input_lengths() for s in iter_otel(path)] == [
        [1000, 1300, 600],
        [400, 460],
        [200, 250],
    ]
    del merged["resourceSpans"][0]["scopeSpans"][0]["spans"][1]["endTimeUnixNano"]
    path.write_text(json.dumps(merged, indent=2))
    with pytest.raises(TraceFormatError) as err:
        list(iter_otel(path))
    assert f"{path}:1:" in str(err.value)
    assert "resourceSpans.0.scopeSpans.0.spans.1.endTimeUnixNano" in str(err.value)


def test_shorter_input_is_an_error_unless_repaired(tmp_path: Path) -> None:
    records = _records()
    chat = _spans(records[0])[4]  # the second chat: 1,300 tokens after 1,000 + 100
    _attr(chat, "gen_ai.usage.input_tokens")["value"] = {"intValue": "900"}
    chat["attributes"].append(
        {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": 850}}
    )
    path = _write(tmp_path, records)
    with pytest.raises(TraceFormatError) as err:
        list(iter_otel(path))
    text = str(err.value)
    assert f"session '{AGENT}' chat 1" in text and f"{path}:1:" in text
    assert "spans.4.attributes[gen_ai.usage.input_tokens]" in text
    repaired = next(iter_otel(path, TraceOptions(repair_tokens=True)))
    assert (repaired.steps[1].kept_prefix_tokens, repaired.steps[1].new_input_tokens) == (850, 50)


def test_tool_map_overrides_and_early_tools_are_counted(tmp_path: Path) -> None:
    records = _records()
    tool = _spans(records[0])[2]  # Bash, moved before the first chat
    start = int(_spans(records[0])[1]["startTimeUnixNano"])
    tool["startTimeUnixNano"] = str(start - 2_000_000_000)
    tool["endTimeUnixNano"] = str(start - 1_000_000_000)
    path = _write(tmp_path, records)
    options = TraceOptions(tool_map={"lookup_weather": "api_call"})
    agent = next(iter_otel(path, options))
    assert agent.metadata["tools_before_first_chat"] == "1"
    assert [t.name for t in agent.steps[0].tools] == ["Read"]
    assert agent.steps[1].tools[0].kind == "api_call"


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda s: s.pop("traceId"), "spans.1.traceId", "non-empty string"),
        (
            lambda s: s.update(startTimeUnixNano="soon"),
            "spans.1.startTimeUnixNano",
            "Unix nanoseconds",
        ),
        (
            lambda s: s.update(endTimeUnixNano="1"),
            "spans.1.endTimeUnixNano",
            "earlier than startTimeUnixNano",
        ),
        (
            lambda s: s["attributes"].pop(3),  # gen_ai.usage.input_tokens
            "spans.1.attributes[gen_ai.usage.input_tokens]",
            "missing on a chat span",
        ),
        (
            lambda s: s["attributes"][3].update(value={"intValue": "many"}),
            "spans.1.attributes[gen_ai.usage.input_tokens].intValue",
            "expected an integer",
        ),
        (
            lambda s: s["attributes"][3].update(value={"intValue": "-5"}),
            "spans.1.attributes[gen_ai.usage.input_tokens]",
            "non-negative integer",
        ),
        (lambda s: s.update(attributes={}), "spans.1.attributes", "expected a list"),
        (lambda s: s.update(spanId="a000000000000001"), "spans.1.spanId", "already read"),
    ],
)
def test_malformed_spans_name_file_line_and_field(
    tmp_path: Path, edit: Any, field: str, message: str
) -> None:
    records = _records()
    edit(_spans(records[0])[1])  # the first chat span
    path = _write(tmp_path, records)
    with pytest.raises(TraceFormatError) as err:
        list(iter_otel(path))
    text = str(err.value)
    assert str(path) in text and f"{path}:1:" in text
    assert f"resourceSpans.0.scopeSpans.0.{field}" in text and message in text


def test_malformed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_records()[0]) + "\n{not json\n")
    with pytest.raises(TraceFormatError, match=r"bad.jsonl:2:"):
        list(iter_otel(bad))
    empty = _write(tmp_path, [{"resourceSpans": []}], "empty.jsonl")
    with pytest.raises(TraceFormatError, match="holds no span"):
        list(iter_otel(empty))
    no_key = _write(tmp_path, [{"spans": []}], "nokey.jsonl")
    with pytest.raises(TraceFormatError, match="resourceSpans"):
        list(iter_otel(no_key))
    records = _records()
    for record in records:
        for scope in record["resourceSpans"][0]["scopeSpans"]:
            for span in scope["spans"]:
                span["attributes"] = []
    no_chat = _write(tmp_path, records, "nochat.jsonl")
    with pytest.raises(TraceFormatError, match="no span is a chat span"):
        list(iter_otel(no_chat))
