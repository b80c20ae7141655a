"""A recorded Weka conversation with a sub-agent replayed against the real vLLM server
(integration): the sub-agent starts where its parent started it, on the run clock, during
the parent's recorded wait on it, and on its parent's load worker; its requests name their
parent; the parent's wait on it is kept out of the split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cli import main
from harness.server import ServerInfo

MS = 1_000_000


def _request(t: float, tokens: int, out: int, api: float, stop: str) -> dict[str, Any]:
    return {"t": t, "type": "n", "in": tokens, "out": out, "api_time": api, "stop": stop}


def _trace(path: Path) -> Path:
    """Conversation `conv`: requests at 0 and 0.5 s (0.2 s each), a sub-agent spawned at
    0.8 s (100 ms into the 0.9 s gap after the second request's end at 0.7 s), the last
    request at 1.6 s; then a conversation of its own. Dealt by its own index, the sub-agent
    (second in the source) would run on the second of two load workers, away from its
    parent."""
    conv = {
        "id": "conv",
        "block_size": 64,
        "requests": [
            _request(0.0, 120, 8, 0.2, "tool_use"),
            _request(0.5, 160, 8, 0.2, "tool_use"),
            {
                "t": 0.8,
                "type": "subagent",
                "agent_id": "explore",
                "subagent_type": "Explore",
                "status": "completed",
                "requests": [
                    _request(0.8, 60, 6, 0.1, "tool_use"),
                    _request(1.0, 80, 6, 0.1, "end_turn"),
                ],
            },
            _request(1.6, 200, 8, 0.2, "end_turn"),
        ],
    }
    other = {"id": "other", "requests": [_request(0.0, 90, 8, 0.2, "end_turn")]}
    path.write_text(json.dumps(conv) + "\n" + json.dumps(other) + "\n")
    return path


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_a_sub_agent_starts_where_its_parent_started_it(
    vllm_server: ServerInfo, tmp_path: Path, workers: int
) -> None:
    trace = _trace(tmp_path / "weka.jsonl")
    out = tmp_path / "run"
    argv = ["run", str(trace), "--format", "weka", "--server", vllm_server.base_url]
    argv += ["--tools", "replay", "--workers", str(workers), "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    run = summary["run"]
    # On two workers too, the sub-agent runs beside its parent.
    assert (run["subagents_started"], run["subagents_without_parent"]) == (1, 0)
    assert run["subagents_not_started"] == 0 and run["requests_sent"] == 6
    requests = pd.read_parquet(out / "requests.parquet")
    assert requests["ok"].all()
    named = requests.dropna(subset=["parent_session_id"])
    assert set(named["session_id"]) == {"conv/explore"}
    assert set(named["parent_session_id"]) == {"conv"} and len(named) == 2
    by = {(r.session_id, r.step_index): r for r in requests.itertuples()}
    spawn_ns = by[("conv", 1)].done_ns + 100 * MS  # the recorded delay into the tool wait
    child0 = by[("conv/explore", 0)]
    assert spawn_ns <= child0.sent_ns < spawn_ns + 500 * MS
    # The parent waits its recorded 0.9 s on the sub-agent, not the sub-agent's own time.
    assert by[("conv", 2)].sent_ns - by[("conv", 1)].done_ns >= 900 * MS
    assert child0.sent_ns < by[("conv", 2)].sent_ns
    steps = pd.read_parquet(out / "steps.parquet")
    started = steps.set_index(["session_id", "step_index"])["subagents_started"]
    assert started[("conv", 1)] == 1 and started.sum() == 1
    split = summary["latency_split"]
    assert split["subagent_wait_s"] >= 0.9
    assert split["per_tool_kind"]["unmapped"]["calls"] == 3  # 2 parent gaps, 1 child gap
    assert split["sum_check"]["relative_error"] < 0.01
    report = (out / "report.md").read_text()
    assert "Sub-agent sessions started by their parents" in report
    assert "Parents waiting on their sub-agents" in report
