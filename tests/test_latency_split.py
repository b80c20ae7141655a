"""The CPU/GPU latency split against hand-computed timelines."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.latency_split import latency_split, session_figures, session_split, step_split
from harness.records import RequestRecord, StepRecord, ToolRecord
from harness.results import requests_frame, table_frame

S = 1_000_000_000


def _steps() -> list[StepRecord]:
    # Session a: step 0 ready 0, sent 1 s, done 3 s, tools 3–7 s, end 7.5 s;
    #            step 1 ready 7.5 s, think 0.5 s, sent 8 s, done 9 s, no tools, end 9 s.
    # Session b: one step, ready 0, sent 0, done 2 s, tools 2–3 s, end 3 s.
    return [
        StepRecord("a", 0, "r0", 0, int(7.5 * S), 1 * S, 3 * S, 3 * S, 7 * S, 2, 0, 0, True),
        StepRecord(
            "a", 1, "r1", int(7.5 * S), 9 * S, 8 * S, 9 * S, None, None, 0, 0, int(0.5 * S), True
        ),
        StepRecord("b", 0, "r2", 0, 3 * S, 0, 2 * S, 2 * S, 3 * S, 1, 1, 0, True),
    ]


def _tools(cpu: bool) -> list[ToolRecord]:
    def rec(
        sid: str, i: int, kind: str, start: float, end: float, status: str = "ok"
    ) -> ToolRecord:
        return ToolRecord(
            sid,
            0,
            i,
            kind,
            "execute" if cpu else "replay",
            None,
            0.0,
            int(start * S),
            int(end * S),
            cpu_user_s=(end - start) * 0.9 if cpu else None,
            cpu_system_s=(end - start) * 0.1 if cpu else None,
            status=status,
        )

    return [
        rec("a", 0, "retrieval", 3, 5),
        rec("a", 1, "summarize", 5, 7),
        rec("b", 0, "retrieval", 2, 3, status="failed"),
    ]


def test_step_split_parts() -> None:
    df = step_split(table_frame("steps", _steps()))
    a0 = df.iloc[0]
    assert (a0.wall_s, a0.llm_s, a0.tool_s) == pytest.approx((7.5, 2.0, 4.0))
    assert a0.orchestration_s == pytest.approx(1.5)
    a1 = df.iloc[1]
    # think time is the user's: not orchestration
    assert (a1.llm_s, a1.tool_s, a1.think_s, a1.orchestration_s) == pytest.approx(
        (1.0, 0.0, 0.5, 0.0)
    )


def test_run_totals_and_shares() -> None:
    split = latency_split(table_frame("steps", _steps()), table_frame("tools", _tools(True)), "w")
    assert split["llm_s"] == pytest.approx(2 + 1 + 2)
    assert split["tool_s"] == pytest.approx(4 + 1)
    assert split["orchestration_s"] == pytest.approx(1.5 + 0 + 0)
    assert split["think_s"] == pytest.approx(0.5)
    assert split["total_s"] == pytest.approx(11.5)
    assert split["sum_check"]["relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert split["cpu_share"] == pytest.approx(6.5 / 11.5)
    assert split["gpu_share"] == pytest.approx(5 / 11.5)
    assert split["tool_cpu_s"] == pytest.approx(5.0)
    kinds = split["per_tool_kind"]
    assert kinds["retrieval"]["calls"] == 2 and kinds["retrieval"]["failures"] == 1
    assert kinds["retrieval"]["tool_s"] == pytest.approx(3.0)
    assert kinds["summarize"]["share"] == pytest.approx(2 / 11.5)
    assert split["per_workload"]["w"]["cpu_share"] == pytest.approx(6.5 / 11.5)


def test_replayed_tools_have_no_cpu_figure() -> None:
    """Replay waits measure no CPU: None, not 0; no tools at all is a measured 0."""
    steps = table_frame("steps", _steps())
    assert latency_split(steps, table_frame("tools", _tools(False)), "w")["tool_cpu_s"] is None
    assert latency_split(steps, table_frame("tools", []), "w")["tool_cpu_s"] == 0.0


def test_session_figures() -> None:
    requests = requests_frame(
        [
            RequestRecord(
                "r0",
                "a",
                0,
                "completions",
                10,
                5,
                0,
                1 * S,
                2 * S,
                3 * S,
                3 * S,
                prompt_tokens=10,
                output_tokens=5,
                http_status=200,
            ),
            RequestRecord(
                "r1",
                "a",
                1,
                "completions",
                20,
                5,
                0,
                8 * S,
                8 * S,
                9 * S,
                9 * S,
                prompt_tokens=20,
                output_tokens=5,
                http_status=200,
            ),
            RequestRecord(
                "r2",
                "b",
                0,
                "completions",
                10,
                5,
                0,
                0,
                1 * S,
                2 * S,
                2 * S,
                http_status=500,
                error="HTTP 500: boom",
            ),
        ]
    )
    fig = session_figures(table_frame("steps", _steps()), requests)
    assert fig["sessions"] == 2
    assert fig["sessions_completed"] == 1  # b's request failed
    assert fig["session_latency_s"]["mean"] == pytest.approx((9 + 3) / 2)
    assert fig["tokens_per_session"]["count"] == 1
    assert fig["tokens_per_session"]["mean"] == pytest.approx(40)
    assert fig["sessions_per_hour"] == pytest.approx(1 / 9 * 3600)


def test_per_step_and_per_session_tables_carry_tool_cpu() -> None:
    steps, tools = table_frame("steps", _steps()), table_frame("tools", _tools(True))
    per_step = step_split(steps, tools).set_index(["session_id", "step_index"])
    assert per_step.loc[("a", 0), "tool_cpu_s"] == pytest.approx(4.0)
    assert pd.isna(per_step.loc[("a", 1), "tool_cpu_s"])  # no tools: nothing measured
    per_session = session_split(steps, tools).set_index("session_id")
    assert per_session.loc["a", "wall_s"] == pytest.approx(9.0)
    assert per_session.loc["a", "llm_s"] == pytest.approx(3.0)
    assert per_session.loc["b", "tool_cpu_s"] == pytest.approx(1.0)
    total = per_session[["llm_s", "tool_s", "orchestration_s", "think_s"]].sum(axis=1)
    assert (total - per_session["wall_s"]).abs().max() < 1e-9


def _queued_run() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One session, one step: ready 0, waited 1 s for a concurrency slot, sent 1 s, done 2 s;
    tools 2–10 s: two parallel calls queued for the one worker: call 0 works 2–5 s, call 1
    waits 2–5 s and works 5–8 s; a third call (next batch) waits 8–9 s, works 9–10 s; end 10 s."""
    steps = [StepRecord("q", 0, "r0", 0, 10 * S, 1 * S, 2 * S, 2 * S, 10 * S, 3, 0, 0, True, 1 * S)]

    def call(i: int, start: float, work: float, end: float, kind: str) -> ToolRecord:
        return ToolRecord(
            "q",
            0,
            i,
            kind,
            "execute",
            1.0,
            0.0,
            int(start * S),
            int(end * S),
            cpu_user_s=end - work,
            cpu_system_s=0.0,
            work_start_ns=int(work * S),
        )

    tools = [
        call(0, 2, 2, 5, "code_exec"),
        call(1, 2, 5, 8, "code_exec"),
        call(2, 8, 9, 10, "parse"),
    ]
    return table_frame("steps", steps), table_frame("tools", tools)


def test_queues_are_rows_of_their_own_and_shares_add_up_to_one() -> None:
    steps, tools = _queued_run()
    row = step_split(steps, tools).iloc[0]
    assert row.llm_s == pytest.approx(1.0)
    assert row.slot_queue_s == pytest.approx(1.0)
    # With a free worker each: the parallel pair takes 3 s (2–5 s), the last call 1 s.
    assert row.tool_s == pytest.approx(4.0)
    assert row.tool_queue_s == pytest.approx(4.0)  # the 8 s tool phase lost 4 s to the queue
    assert row.orchestration_s == pytest.approx(0.0, abs=1e-9)
    split = latency_split(steps, tools, "q")
    shares = split["shares"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert split["cpu_share"] == pytest.approx(0.4)  # tools only: queues are not CPU work
    assert split["queue_share"] == pytest.approx(0.5)
    kinds = split["per_tool_kind"]
    assert sum(k["share"] for k in kinds.values()) == pytest.approx(shares["tool"])
    assert kinds["code_exec"]["calls_wait_s"] == pytest.approx(3.0)  # call 1 waited 3 s
    assert kinds["code_exec"]["calls_wall_s"] == pytest.approx(9.0)  # overlapping calls
    # Each column of the kinds adds up to its row: tool work and queue.
    assert sum(k["tool_s"] for k in kinds.values()) == pytest.approx(split["tool_s"])
    assert sum(k["queue_s"] for k in kinds.values()) == pytest.approx(split["tool_queue_s"])
    assert "queueing dominates: 50 %" in split["queue_note"]
    assert "tools.workers" in split["queue_note"]


def test_gaps_between_calls_are_orchestration_and_no_queue_no_note() -> None:
    steps, tools = _queued_run()
    tools = tools.copy()
    # Each call starts work at once; a 0.5 s gap before the last call is the harness's own.
    tools["work_start_ns"] = tools["start_ns"]
    tools.loc[1, "end_ns"] = 5 * S
    tools.loc[2, "start_ns"] = tools.loc[2, "work_start_ns"] = int(5.5 * S)
    row = step_split(steps, tools).iloc[0]
    assert row.tool_s == pytest.approx(7.5)  # 2–5 s and 5.5–10 s
    assert row.tool_queue_s == pytest.approx(0.0)
    assert row.orchestration_s == pytest.approx(0.5)
    assert latency_split(steps, tools, "q")["queue_note"] is None


def test_each_kind_counts_its_clamped_calls_and_names_its_sandbox() -> None:
    steps, tools = _queued_run()
    tools = tools.copy()
    tools["sandbox"] = pd.Series(["bwrap+cgroup-v1", "bwrap+cgroup-v1", None], dtype="string")
    tools["limits_clamped"] = pd.Series([True, False, False], dtype="boolean")
    kinds = latency_split(steps, tools, "q")["per_tool_kind"]
    assert (kinds["code_exec"]["limits_clamped"], kinds["code_exec"]["sandbox"]) == (
        1,
        "bwrap+cgroup-v1",
    )
    assert (kinds["parse"]["limits_clamped"], kinds["parse"]["sandbox"]) == (0, None)
    replayed = latency_split(
        table_frame("steps", _steps()), table_frame("tools", _tools(False)), "w"
    )
    # replayed calls have no limits: not a count of 0
    assert replayed["per_tool_kind"]["retrieval"]["limits_clamped"] is None


def test_a_parents_wait_on_its_sub_agent_is_kept_out_of_the_split() -> None:
    """Parent p's step 0 (sent 0, done 1 s) started a sub-agent and waited on it 1 → 4 s
    (an unmapped wait) beside a 0.5 s Bash call; the sub-agent ran 1 → 2 s. The wait past
    the Bash call is the sub-agent wait, not tool time: the sub-agent's own row counts its
    work once."""
    steps = [
        StepRecord("p", 0, "r0", 0, 4 * S, 0, 1 * S, 1 * S, 4 * S, 2, 0, 0, True),
        StepRecord("p/c", 0, "r1", 1 * S, 2 * S, 1 * S, 2 * S, request_ok=True),
    ]
    steps[0].subagents_started = 1
    tools = [
        ToolRecord("p", 0, 0, "unmapped", "replay", None, 3_000.0, 1 * S, 4 * S),
        ToolRecord("p", 0, 1, "code_exec", "execute", 1.0, 500.0, 1 * S, int(1.5 * S)),
    ]
    split = latency_split(table_frame("steps", steps), table_frame("tools", tools), "w")
    assert split["tool_s"] == pytest.approx(0.5)
    assert split["subagent_wait_s"] == pytest.approx(2.5)
    assert split["llm_s"] == pytest.approx(2.0)
    assert split["orchestration_s"] == pytest.approx(0.0, abs=1e-9)
    assert split["total_s"] == pytest.approx(2.5)
    assert split["sum_check"]["relative_error"] == pytest.approx(0.0, abs=1e-12)
    kinds = split["per_tool_kind"]
    assert kinds["unmapped"]["calls"] == 1 and kinds["unmapped"]["tool_s"] == 0.0
    assert kinds["code_exec"]["tool_s"] == pytest.approx(0.5)
    # The same wait in a step that started no sub-agent is tool time (a remote call).
    steps[0].subagents_started = 0
    plain = latency_split(table_frame("steps", steps), table_frame("tools", tools), "w")
    assert plain["tool_s"] == pytest.approx(3.0) and plain["subagent_wait_s"] == 0.0
