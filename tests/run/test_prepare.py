"""What a run settles before the server: the workload's counted plan, and the tokenizer and
calibration checked there and kept for the run."""

from __future__ import annotations

import io
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from tokenizers import Tokenizer, models, pre_tokenizers

import harness.run.prepare as prepare
from harness.cli.common import resolve_workload
from harness.cli.run_view import ConsoleView
from harness.run.engine import execute
from harness.run.plan import RunPlan
from harness.run.prepare import check_workload, make_tools
from harness.server import ServerInfo
from harness.tools.calibrate import Calibration
from harness.tools.runner import ExecuteTools
from harness.workload.spec import WorkloadSpec

REPO = Path(__file__).resolve().parents[2]
MOONCAKE = REPO / "workloads" / "traces" / "mooncake_conversation_trace.jsonl"
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


def _tokenizer(tmp_path: Path) -> Path:
    """A small word-level tokenizer.json (40 ordinary tokens and one special)."""
    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(40)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["[UNK]"])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def _azure(requests: int) -> WorkloadSpec:
    """The Azure conversation trace's first `requests`, sent at once (time scale 0)."""
    spec = resolve_workload(AZURE, "azure")
    return spec.model_copy(
        update={
            "limits": spec.limits.model_copy(update={"max_requests": requests}),
            "arrival": spec.arrival.model_copy(update={"time_scale": 0.0}),
        }
    )


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


def test_the_tokenizer_is_loaded_once_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokenizer the check loads before the server is the one the run uses: a run of
    two requests (against a port nothing listens on: both fail fast) loads it once."""
    loaded: list[str] = []
    load = prepare.load_token_space
    monkeypatch.setattr(prepare, "load_token_space", lambda n: loaded.append(n) or load(n))
    tokenizer = str(_tokenizer(tmp_path))
    plan = RunPlan(_azure(2), tmp_path / "run", tokenizer=tokenizer, sample_hz=1.0)
    checked = check_workload(plan)
    assert loaded == [tokenizer]
    info = ServerInfo("http://127.0.0.1:9", "m", max_model_len=None, server_version=None)
    view = ConsoleView(Console(file=io.StringIO()))
    result = execute(plan, nullcontext(info), view, checked=checked)
    assert result.summary is not None and result.summary.requests_total == 2
    assert loaded == [tokenizer]  # the run took the checked one
    # A file changed since it was loaded is loaded again.
    Path(tokenizer).write_text(Path(tokenizer).read_text() + "\n")
    check_workload(RunPlan(_azure(2), tmp_path / "again", tokenizer=tokenizer))
    assert loaded == [tokenizer, tokenizer]


def test_the_calibration_is_read_once_for_the_check_and_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "calibration.json"
    Calibration(
        host={},
        ms_per_unit={"parse": 0.5},
        fixed_overhead_ms={"parse": 2.0},
        r2={"parse": 1.0},
        measured_at=datetime.now(UTC),
    ).save(path)
    read: list[Path] = []
    original = Calibration.load
    monkeypatch.setattr(Calibration, "load", lambda p: read.append(Path(p)) or original(p))
    spec = _azure(2)
    spec = spec.model_copy(
        update={"tools": spec.tools.model_copy(update={"mode": "execute", "calibration": path})}
    )
    check_workload(RunPlan(spec, tmp_path / "run"))
    tools = make_tools(spec, lambda: 0, seed=0, workers=1)
    assert read == [path]
    assert isinstance(tools, ExecuteTools)
