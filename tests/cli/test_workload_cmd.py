"""`harness workload inspect` of a recorded trace: exact sums, the recording's own split per
session, tool calls by kind (unmapped counted), and scaled beside unscaled sums (--json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "workloads" / "traces" / "tracelab_round_trace_sample.jsonl"


def _inspect(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["workload", "inspect", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_inspect_json_of_the_tracelab_sample(capsys: pytest.CaptureFixture[str]) -> None:
    data = _inspect(capsys, str(SAMPLE))
    assert (data["sessions"], data["requests"]) == (2, 19)
    assert (data["input_tokens"], data["output_tokens"]) == (514_012, 11_335)
    assert data["token_scale"] == 1.0 and "unscaled" not in data
    recorded = data["recorded_split"]
    assert isinstance(recorded, dict)
    totals = recorded["totals"]
    assert totals["sessions"] == 2
    assert totals["llm_s"] == pytest.approx(139.199)
    assert totals["human_s"] == pytest.approx(19.913 + 6.333 + 18.362)
    assert [s["requests"] for s in recorded["sessions"]] == [10, 9]
    assert recorded["tool_calls_by_kind"] == {
        "api_call": 1,
        "code_exec": 13,
        "file_write": 2,
        "web_search": 3,
    }
    assert recorded["unmapped_tool_calls"] == {}


def test_inspect_token_scale_shows_both_sums(capsys: pytest.CaptureFixture[str]) -> None:
    data = _inspect(capsys, str(SAMPLE), "--token-scale", "0.1")
    assert data["token_scale"] == 0.1
    assert data["unscaled"] == {
        "sessions": 2,
        "requests": 19,
        "input_tokens": 514_012,
        "output_tokens": 11_335,
    }
    assert data["input_tokens"] == 51_409 and data["output_tokens"] == 1_133


def test_inspect_counts_unmapped_tools_of_a_workload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(
        f"name: w\nsource:\n  trace: {SAMPLE}\n  format: tracelab\n"
        "  tool_map:\n    WebFetch: unmapped\n    write_stdin: unmapped\n"
    )
    recorded = _inspect(capsys, str(workload))["recorded_split"]
    assert isinstance(recorded, dict)
    assert recorded["unmapped_tool_calls"] == {"WebFetch": 1, "write_stdin": 2}
    assert recorded["tool_calls_by_kind"]["unmapped"] == 3


def test_inspect_table_prints_the_recorded_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "inspect", str(SAMPLE), "--token-scale", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "Recorded split" in out and "input_tokens (unscaled)" in out
    assert "Bash ×3" in out


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "5000"])
def test_bad_token_scale_is_refused(scale: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workload", "inspect", str(SAMPLE), "--token-scale", scale]) == 2
    assert "--token-scale must be a number in (0, 1000]" in capsys.readouterr().err
