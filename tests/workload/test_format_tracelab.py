"""TraceLab round traces: exact sums of the shipped sample, malformed lines and fields named
by file, line and field, contradicting rounds named by session and round, the session
semantics (context kept, a recorded prefix, a compaction, think time, parallel tools) and
the tool-name mapping."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import TraceFormatError
from harness.workload.detect import detect_format
from harness.workload.formats.options import TraceOptions
from harness.workload.formats.tracelab import iter_tracelab
from harness.workload.stats import workload_stats

SAMPLE = Path(__file__).resolve().parents[2] / "workloads" / "traces"
SAMPLE = SAMPLE / "tracelab_round_trace_sample.jsonl"


def _rounds() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _write(tmp_path: Path, rounds: list[dict[str, Any]] | list[str]) -> Path:
    path = tmp_path / "rounds.jsonl"
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rounds]
    path.write_text("\n".join(lines) + "\n")
    return path


def _round(session: str, index: int, total: int, out: int, **extra: Any) -> dict[str, Any]:
    """A minimal round: `total` input tokens (all new), `out` output, no tools, no events."""
    record: dict[str, Any] = {
        "session_id": session,
        "round_index": index,
        "input_tokens_total": total,
        "prefix_tokens": 0,
        "newly_append_tokens": total,
        "output_tokens": out,
        "timing_events": [],
        "tools": [],
    }
    record.update(extra)
    return record


def test_sample_sums_are_exact() -> None:
    rounds = _rounds()
    sessions = list(iter_tracelab(SAMPLE))
    assert [s.session_id.split(":")[0] for s in sessions] == ["claude", "codex"]
    assert [s.requests for s in sessions] == [10, 9]
    stats = workload_stats(sessions)
    assert stats.sessions == 2 and stats.requests == len(rounds) == 19
    assert stats.input_tokens == sum(r["input_tokens_total"] for r in rounds) == 514_012
    assert stats.output_tokens == sum(r["output_tokens"] for r in rounds) == 11_335
    for session in sessions:
        mine = [r for r in rounds if r["session_id"] == session.session_id]
        assert session.input_lengths() == [r["input_tokens_total"] for r in mine]
    assert detect_format(SAMPLE) == "tracelab"


def test_sample_tools_mapped_and_parallel() -> None:
    claude, codex = iter_tracelab(SAMPLE)
    first = claude.steps[0].tools
    assert [(t.name, t.kind) for t in first] == [("Bash", "code_exec"), ("WebSearch", "web_search")]
    # Bash ran until 31.696 s, WebSearch was emitted at 31.647 s: they overlapped.
    assert first[0].parallel_group == first[1].parallel_group is not None
    assert first[1].duration_ms == 19_287  # tool_internal_latency_ms before the wall latency
    assert first[0].duration_ms == 860  # no internal latency: the wall latency
    assert [t.kind for t in claude.steps[2].tools] == ["file_write"]  # Write
    assert claude.steps[1].tools[0].parallel_group is None  # one call alone
    assert len({t.parallel_group for t in codex.steps[0].tools}) == 1


def test_sample_think_time_and_recorded_times() -> None:
    claude, codex = iter_tracelab(SAMPLE)
    # Round 5 starts with a user message at 05:42:43.333; round 4 ended at 05:42:23.420.
    assert claude.steps[5].think_ms == pytest.approx(19_913)
    assert [s.think_ms for s in claude.steps if s.think_ms] == [pytest.approx(19_913)]
    # last input 05:40:20.151 (user message) to last output 05:40:31.647 (tool call)
    assert claude.steps[0].recorded_llm_ms == pytest.approx(11_496)
    # last output 05:40:31.647 to last result 05:40:50.938
    assert claude.steps[0].recorded_tools_ms == pytest.approx(19_291)
    assert codex.steps[0].think_ms == 0.0
    assert codex.metadata["recorded_start"].startswith("2026-03-21T10:05:59.328")


def test_shorter_round_keeps_the_recorded_prefix() -> None:
    _, codex = iter_tracelab(SAMPLE)
    # Round 5: 10,436 tokens after a context of 10,472 + 294: keeps its 9,216 cached tokens.
    step = codex.steps[5]
    assert (step.kept_prefix_tokens, step.new_input_tokens) == (9_216, 1_220)
    assert codex.steps[1].kept_prefix_tokens is None  # grew: the whole context is kept
    assert codex.steps[1].new_input_tokens == 9_917 - (9_324 + 444)


def test_large_drop_is_a_compaction(tmp_path: Path) -> None:
    rounds = [
        _round("s", 0, 10_000, 500),
        _round("s", 1, 3_000, 10, prefix_tokens=2_000, newly_append_tokens=1_000),
    ]
    rounds[1]["timing_events"] = [
        {"event_type": "user_message", "timestamp": "2026-01-01T00:00:00Z"}
    ]
    (session,) = iter_tracelab(_write(tmp_path, rounds))
    assert session.steps[1].kept_prefix_tokens == 0
    assert session.input_lengths() == [10_000, 3_000]


def test_parallel_and_sequential_tools(tmp_path: Path) -> None:
    def tool(name: str, emitted: str, result: str) -> dict[str, Any]:
        return {
            "tool_name": name,
            "emitted_at": f"2026-01-01T00:00:{emitted}Z",
            "result_at": f"2026-01-01T00:00:{result}Z",
            "tool_wall_latency_ms": 1,
            "tool_internal_latency_ms": None,
            "is_error": False,
        }

    tools = [tool("Read", "01", "05"), tool("Grep", "02", "03"), tool("Bash", "06", "07")]
    (session,) = iter_tracelab(_write(tmp_path, [_round("s", 0, 10, 1, tools=tools)]))
    calls = session.steps[0].tools
    assert calls[0].parallel_group == calls[1].parallel_group is not None
    assert calls[2].parallel_group is None  # emitted after both had returned
    assert [c.kind for c in calls] == ["parse", "file_search", "code_exec"]


def test_tool_map_overrides_and_unmapped_are_kept(tmp_path: Path) -> None:
    tools = [
        {
            "tool_name": "TodoWrite",
            "tool_wall_latency_ms": 12,
            "emitted_at": None,
            "result_at": None,
        },
        {"tool_name": "Bash", "tool_wall_latency_ms": 5, "emitted_at": None, "result_at": None},
    ]
    path = _write(tmp_path, [_round("s", 0, 10, 1, tools=tools)])
    (default,) = iter_tracelab(path)
    assert [(c.name, c.kind, c.duration_ms) for c in default.steps[0].tools] == [
        ("TodoWrite", "unmapped", 12.0),
        ("Bash", "code_exec", 5.0),
    ]
    (mapped,) = iter_tracelab(
        path, TraceOptions(tool_map={"TodoWrite": "parse", "Bash": "api_call"})
    )
    assert [c.kind for c in mapped.steps[0].tools] == ["parse", "api_call"]


def test_sum_contradiction_names_session_and_round(tmp_path: Path) -> None:
    rounds = [_round("s", 0, 100, 5), _round("s", 1, 200, 5, prefix_tokens=150)]
    path = _write(tmp_path, rounds)
    with pytest.raises(TraceFormatError) as err:
        list(iter_tracelab(path))
    assert (err.value.line, err.value.field) == (2, "input_tokens_total")
    assert "session 's' round 1" in str(err.value) and "repair" in str(err.value)
    (repaired,) = iter_tracelab(path, TraceOptions(repair_tokens=True))
    assert repaired.input_lengths() == [100, 200]


def test_output_longer_than_the_next_growth_is_a_contradiction(tmp_path: Path) -> None:
    # Round 1 continues the turn (no user message) but grew by 50 after an output of 80.
    rounds = [_round("s", 0, 1_000, 80), _round("s", 1, 1_050, 5)]
    rounds[1].update(prefix_tokens=1_000, newly_append_tokens=50)
    path = _write(tmp_path, rounds)
    with pytest.raises(TraceFormatError, match=r"session 's' round 1: grew by 50 tokens"):
        list(iter_tracelab(path))
    (repaired,) = iter_tracelab(path, TraceOptions(repair_tokens=True))
    assert repaired.input_lengths() == [1_000, 1_050]
    assert repaired.steps[1].kept_prefix_tokens == 1_000


def test_reasoning_dropped_from_the_context_is_no_contradiction(tmp_path: Path) -> None:
    rounds = [
        _round("s", 0, 1_000, 80, reasoning_output_tokens=60),
        _round("s", 1, 1_030, 5, prefix_tokens=1_000, newly_append_tokens=30),
    ]
    (session,) = iter_tracelab(_write(tmp_path, rounds))
    assert session.input_lengths() == [1_000, 1_030]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda r: r.pop("input_tokens_total"), "input_tokens_total", "missing"),
        (lambda r: r.update(output_tokens="12"), "output_tokens", "non-negative integer"),
        (lambda r: r.update(output_tokens=-1), "output_tokens", "non-negative integer"),
        (lambda r: r.update(session_id=""), "session_id", "non-empty string"),
        (lambda r: r.update(timing_events={}), "timing_events", "expected a list"),
        (
            lambda r: r["timing_events"][1].update(timestamp="yesterday"),
            "timing_events.1.timestamp",
            "ISO 8601",
        ),
        (lambda r: r["timing_events"][0].pop("timestamp"), "timing_events.0.timestamp", "missing"),
        (lambda r: r["tools"][1].update(tool_name=None), "tools.1.tool_name", "non-empty string"),
        (
            lambda r: r["tools"][0].update(tool_wall_latency_ms=-3),
            "tools.0.tool_wall_latency_ms",
            "non-negative",
        ),
        (lambda r: r["tools"][0].update(is_error="no"), "tools.0.is_error", "true, false or null"),
        (lambda r: r["tools"][0].update(emitted_at=5), "tools.0.emitted_at", "ISO 8601"),
    ],
)
def test_malformed_field_names_file_line_and_field(
    tmp_path: Path, mutate: Any, field: str, message: str
) -> None:
    rounds = _rounds()
    bad = copy.deepcopy(rounds[0])
    mutate(bad)
    path = _write(tmp_path, [bad, *rounds[1:]])
    with pytest.raises(TraceFormatError) as err:
        list(iter_tracelab(path))
    assert (err.value.path, err.value.line, err.value.field) == (path, 1, field)
    assert message in str(err.value)


def test_malformed_lines_name_the_line(tmp_path: Path) -> None:
    rounds = [json.dumps(r) for r in _rounds()]
    for bad, message in (("{not json", "invalid JSON"), ("[1, 2]", "JSON object")):
        path = _write(tmp_path, [rounds[0], bad, *rounds[1:]])
        with pytest.raises(TraceFormatError, match=message) as err:
            list(iter_tracelab(path))
        assert err.value.line == 2


def test_rounds_must_be_consecutive(tmp_path: Path) -> None:
    a0, a1, b0 = _round("a", 0, 10, 1), _round("a", 1, 20, 1), _round("b", 0, 10, 1)
    with pytest.raises(TraceFormatError, match="consecutive lines") as err:
        list(iter_tracelab(_write(tmp_path, [a0, b0, a1])))
    assert (err.value.line, err.value.field) == (3, "session_id")
    with pytest.raises(TraceFormatError, match="count up by one") as err:
        list(iter_tracelab(_write(tmp_path, [a0, _round("a", 2, 30, 1)])))
    assert (err.value.line, err.value.field) == (2, "round_index")
