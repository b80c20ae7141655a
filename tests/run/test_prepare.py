"""What a run settles before the server: the workload's counted plan."""

from __future__ import annotations

from pathlib import Path

from harness.cli.common import resolve_workload
from harness.run.plan import RunPlan
from harness.run.prepare import check_workload

REPO = Path(__file__).resolve().parents[2]
MOONCAKE = REPO / "workloads" / "traces" / "mooncake_conversation_trace.jsonl"


def test_the_plan_counted_before_the_server_is_reused_only_without_a_tokenizer(
    tmp_path: Path,
) -> None:
    """A trace of token counts is counted once before the server (its plan is reused); a
    text trace needs the server's tokenizer, so its lengths are counted again."""
    plan = check_workload(RunPlan(resolve_workload(MOONCAKE, None), tmp_path / "a"))
    assert plan is not None and plan["requests"] > 0 and plan["max_request_tokens"] > 0
    sharegpt = tmp_path / "sg.json"
    sharegpt.write_text(
        '[{"id": "a", "conversations": [{"from": "human", "value": "hi there"},'
        ' {"from": "gpt", "value": "hello"}]}]'
    )
    spec = resolve_workload(sharegpt, "sharegpt")
    assert check_workload(RunPlan(spec, tmp_path / "b", trace_format="sharegpt")) is None
