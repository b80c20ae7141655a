"""A recorded TraceLab session replayed against the real vLLM server with its tools executed:
the report sets the recorded split beside the replayed one, the token scale is kept, and an
unmapped tool is a counted wait (integration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.server import ServerInfo


def _event(kind: str, second: int) -> dict[str, Any]:
    return {"event_type": kind, "timestamp": f"2026-01-01T00:00:{second:02d}.000Z"}


def _tool(name: str, emitted: int, result: int, ms: int) -> dict[str, Any]:
    return {
        "tool_name": name,
        "emitted_at": f"2026-01-01T00:00:{emitted:02d}.000Z",
        "result_at": f"2026-01-01T00:00:{result:02d}.000Z",
        "tool_wall_latency_ms": ms,
        "tool_internal_latency_ms": None,
        "is_error": False,
    }


def _trace(path: Path) -> Path:
    """One session of three rounds: Bash and an unmapped tool in parallel, a Write, a user
    message after a wait; 2,000-4,000 tokens a round, scaled down by the run."""
    rounds = [
        (
            2_000,
            100,
            [_event("user_message", 0), _event("tool_call", 2)],
            [_tool("Bash", 2, 3, 150), _tool("TodoWrite", 2, 3, 100)],
        ),
        (
            2_300,
            100,
            [_event("tool_result", 3), _event("tool_call", 5)],
            [_tool("Write", 5, 6, 80)],
        ),
        (2_500, 50, [_event("user_message", 8), _event("text", 9)], []),
    ]
    lines = []
    for i, (total, out, events, tools) in enumerate(rounds):
        lines.append(
            json.dumps(
                {
                    "session_id": "claude:s1",
                    "round_index": i,
                    "input_tokens_total": total,
                    "prefix_tokens": 0,
                    "newly_append_tokens": total,
                    "output_tokens": out,
                    "timing_events": events,
                    "tools": tools,
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.integration
def test_tracelab_replay_reports_recorded_beside_replayed(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    calibration = tmp_path / "calibration.json"
    kinds = ["--kinds", "code_exec", "file_write"]
    assert main(["tools", "calibrate", "--budget", "4", *kinds, "--out", str(calibration)]) == 0
    trace = _trace(tmp_path / "rounds.jsonl")
    out = tmp_path / "run"
    argv = ["run", str(trace), "--format", "tracelab", "--server", vllm_server.base_url]
    argv += ["--tools", "execute", "--calibration", str(calibration), "--token-scale", "0.1"]
    assert main([*argv, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["workload"]["source"]["token_scale"] == 0.1
    recorded = manifest["plan"]["recorded_split"]
    # LLM: 0→2 s, 3→5 s, 8→9 s; tools: 2→3 s, 5→6 s; human: 6→8 s.
    assert recorded["totals"]["llm_s"] == pytest.approx(5.0)
    assert recorded["totals"]["tool_s"] == pytest.approx(2.0)
    assert recorded["totals"]["human_s"] == pytest.approx(2.0)
    assert recorded["unmapped_tool_calls"] == {"TodoWrite": 1}
    summary = json.loads((out / "summary.json").read_text())
    kinds_run = summary["latency_split"]["per_tool_kind"]
    assert set(kinds_run) == {"code_exec", "unmapped", "file_write"}
    assert kinds_run["unmapped"]["calls"] == 1
    assert summary["run"]["requests_sent"] == 3
    report = (out / "report.md").read_text()
    assert "Recorded split beside the replayed one (token scale 0.1)" in report
    assert "TodoWrite ×1" in report
