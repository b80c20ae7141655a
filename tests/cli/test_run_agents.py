"""Agent sessions with tools against the real vLLM CPU server: the latency split in replay
mode, real kernels in execute mode, and a runaway code_exec killed by the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.server import ServerInfo


def _write_sessions(path: Path, sessions: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    return path


def _summary(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.integration
def test_replay_tool_time_matches_recorded_durations(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    """Replayed tools: tool time per kind and in total is what the durations imply."""
    steps = [
        {
            "new_input_tokens": 200,
            "output_tokens": 8,
            "tools": [{"kind": "retrieval", "duration_ms": 300}],
        },
        {
            "new_input_tokens": 100,
            "output_tokens": 8,
            "tools": [
                {"kind": "summarize", "duration_ms": 200, "parallel_group": 0},
                {"kind": "web_search", "duration_ms": 200, "parallel_group": 0},
            ],
        },
        {"new_input_tokens": 50, "output_tokens": 8},
    ]
    trace = _write_sessions(
        tmp_path / "agents.jsonl",
        [{"session_id": f"s{i}", "start_ms": 0, "steps": steps} for i in range(2)],
    )
    out = tmp_path / "replay"
    assert main(["run", str(trace), "--server", vllm_server.base_url, "--out", str(out)]) == 0
    split = _summary(out)["latency_split"]
    assert isinstance(split, dict)
    implied_tool_s = 2 * (0.3 + 0.2)  # the parallel pair takes 200 ms of wall time
    assert split["tool_s"] == pytest.approx(implied_tool_s, rel=0.03)
    kinds = split["per_tool_kind"]
    assert kinds["retrieval"]["calls_work_s"] == pytest.approx(0.6, rel=0.03)
    assert kinds["web_search"]["calls_work_s"] == pytest.approx(0.4, rel=0.03)
    # The kinds split the tool row between them: parallel calls are not counted twice.
    assert sum(k["tool_s"] for k in kinds.values()) == pytest.approx(split["tool_s"])
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(split["shares"]["tool"])
    assert split["tool_cpu_s"] is None  # waits measure no CPU: unavailable, not 0
    assert split["tool_queue_s"] == 0.0 and split["slot_queue_s"] == 0.0  # replay: no queue
    total = split["llm_s"] + split["tool_s"] + split["orchestration_s"]
    assert split["total_s"] == pytest.approx(total)
    assert sum(split["shares"].values()) == pytest.approx(1.0)
    assert split["cpu_share"] == pytest.approx((split["tool_s"] + split["orchestration_s"]) / total)
    assert split["sum_check"]["relative_error"] < 0.01
    steps_df = pd.read_parquet(out / "steps.parquet")
    tools_df = pd.read_parquet(out / "tools.parquet")
    assert len(steps_df) == 6 and len(tools_df) == 6
    assert set(tools_df["mode"]) == {"replay"}
    per_step = pd.read_parquet(out / "step_split.parquet")
    assert len(per_step) == 6
    per_session = pd.read_parquet(out / "session_split.parquet")
    parts = per_session[["llm_s", "tool_s", "orchestration_s", "think_s"]].sum(axis=1)
    assert ((parts - per_session["wall_s"]).abs() <= 0.01 * per_session["wall_s"]).all()


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A quick calibration of two kernels on this host."""
    path = tmp_path_factory.mktemp("cal") / "calibration.json"
    code = main(
        [
            "tools",
            "calibrate",
            "--budget",
            "4",
            "--kinds",
            "summarize",
            "code_exec",
            "--out",
            str(path),
        ]
    )
    assert code == 0
    return path


def _execute_trace(path: Path) -> Path:
    return _write_sessions(
        path,
        [
            {
                "session_id": "x",
                "start_ms": 0,
                "steps": [
                    {
                        "new_input_tokens": 200,
                        "output_tokens": 8,
                        "tools": [
                            {"kind": "summarize", "duration_ms": 400},
                            # ~1e9 loop iterations under a 0.5 s CPU limit: a runaway program.
                            {
                                "kind": "code_exec",
                                "duration_ms": 100,
                                "size": 1e6,
                                "timeout_ms": 500,
                            },
                        ],
                    },
                    {"new_input_tokens": 100, "output_tokens": 8},
                ],
            }
        ],
    )


@pytest.mark.integration
def test_execute_mode_runs_real_kernels_and_survives_a_runaway(
    vllm_server: ServerInfo, tmp_path: Path, calibration: Path
) -> None:
    """Execute mode: CPU seconds consistent with wall time; a runaway code_exec is killed
    at its limit, recorded as such, and the session goes on."""
    out = tmp_path / "execute"
    code = main(
        [
            "run",
            str(_execute_trace(tmp_path / "x.jsonl")),
            "--server",
            vllm_server.base_url,
            "--tools",
            "execute",
            "--calibration",
            str(calibration),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    tools = pd.read_parquet(out / "tools.parquet").set_index("kind")
    summ = tools.loc["summarize"]
    work_s = (summ["end_ns"] - summ["work_start_ns"]) / 1e9
    assert summ["status"] == "ok"
    assert summ["cpu_user_s"] + summ["cpu_system_s"] >= 0.6 * work_s
    runaway = tools.loc["code_exec"]
    assert runaway["status"] == "cpu_limit"
    assert 0.3 <= runaway["cpu_user_s"] + runaway["cpu_system_s"] <= 1.5
    requests = pd.read_parquet(out / "requests.parquet")
    assert sorted(requests["step_index"]) == [0, 1]  # the session went on
    split = _summary(out)["latency_split"]
    assert isinstance(split, dict)
    assert split["per_tool_kind"]["code_exec"]["failures"] == 1
    assert split["tool_cpu_s"] > 0.3


@pytest.mark.integration
def test_tool_failure_can_stop_the_session(
    vllm_server: ServerInfo, tmp_path: Path, calibration: Path
) -> None:
    """With tools.on_failure: stop, a failed tool ends its session."""
    trace = _execute_trace(tmp_path / "x.jsonl")
    workload = tmp_path / "stop.yaml"
    workload.write_text(
        f"name: stop\nsource:\n  trace: {trace}\ntools:\n  mode: execute\n"
        f"  on_failure: stop\n  calibration: {calibration}\n"
    )
    out = tmp_path / "stop"
    assert main(["run", str(workload), "--server", vllm_server.base_url, "--out", str(out)]) == 0
    requests = pd.read_parquet(out / "requests.parquet")
    assert list(requests["step_index"]) == [0]


@pytest.mark.integration
def test_one_tool_worker_queueing_is_reported_apart(
    vllm_server: ServerInfo, tmp_path: Path, calibration: Path
) -> None:
    """Two parallel summarize calls on one worker: the second waits for the first. The wait
    is the tool-queue row, not tool work and not in the CPU share; shares add up to 1; the
    summary says queueing dominates when it does."""
    trace = _write_sessions(
        tmp_path / "q.jsonl",
        [
            {
                "session_id": "q",
                "start_ms": 0,
                "steps": [
                    {
                        "new_input_tokens": 50,
                        "output_tokens": 2,
                        "tools": [
                            {"kind": "summarize", "duration_ms": 600, "parallel_group": 0},
                            {"kind": "summarize", "duration_ms": 600, "parallel_group": 0},
                        ],
                    },
                    {"new_input_tokens": 20, "output_tokens": 2},
                ],
            }
        ],
    )
    workload = tmp_path / "q.yaml"
    workload.write_text(
        f"name: q\nsource:\n  trace: {trace}\ntools:\n  mode: execute\n"
        f"  workers: 1\n  calibration: {calibration}\n"
    )
    out = tmp_path / "queued"
    assert main(["run", str(workload), "--server", vllm_server.base_url, "--out", str(out)]) == 0
    split = _summary(out)["latency_split"]
    assert isinstance(split, dict)
    tools = pd.read_parquet(out / "tools.parquet")
    # With two workers the pair would have taken its longer call's work; the rest of the
    # phase was lost to the queue.
    span_s = (tools["end_ns"].max() - tools["start_ns"].min()) / 1e9
    longest_work_s = ((tools["end_ns"] - tools["work_start_ns"]) / 1e9).max()
    assert split["tool_queue_s"] == pytest.approx(span_s - longest_work_s, rel=0.01)
    assert split["tool_queue_s"] > 0.2
    assert split["tool_s"] == pytest.approx(longest_work_s, rel=0.01)
    assert sum(split["shares"].values()) == pytest.approx(1.0)
    assert split["cpu_share"] == pytest.approx(
        (split["tool_s"] + split["orchestration_s"]) / split["total_s"]
    )
    assert split["cpu_share"] + split["gpu_share"] + split["queue_share"] == pytest.approx(1.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"]["tool_workers"] == {
        "workers": 1,
        "source": "the workload's tools.workers",
    }
