"""Opening a workload source: dispatch to loaders or generators, and the request limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError, TraceFormatError
from harness.workload.formats.sharegpt import TokenCounter
from harness.workload.model import Session, Step
from harness.workload.source import apply_request_limit, open_source, sessions_from_path
from harness.workload.spec import SourceSpec


def _session(name: str, steps: int) -> Session:
    return Session(name, 0.0, tuple(Step(10 + k, 1) for k in range(steps)))


def test_limit_truncates_the_last_session() -> None:
    sessions = [_session("a", 2), _session("b", 3), _session("c", 1)]
    limited = list(apply_request_limit(sessions, 4))
    assert [(s.session_id, s.requests) for s in limited] == [("a", 2), ("b", 2)]
    assert limited[1].steps == sessions[1].steps[:2]
    assert [s.requests for s in apply_request_limit(sessions, 5)] == [2, 3]
    assert list(apply_request_limit(sessions, None)) == sessions


def test_limit_stops_reading(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = (data_dir / "mooncake_small.jsonl").read_text()
    path.write_text(lines + "this line is broken\n")
    with pytest.raises(TraceFormatError):
        list(sessions_from_path(path))
    assert [s.session_id for s in sessions_from_path(path, limit_requests=3)] == [
        "mc-1",
        "mc-3",
        "mc-4",
    ]


def test_synthetic_source_with_limit() -> None:
    spec = SourceSpec(synthetic="agent", params={"sessions": 5}, seed=3, limit_requests=7)
    sessions = list(open_source(spec))
    assert sum(s.requests for s in sessions) == 7


def test_trace_source_detects_or_takes_the_format(data_dir: Path) -> None:
    spec = SourceSpec(trace=data_dir / "azure2023_small.csv")
    assert [s.session_id for s in open_source(spec)] == ["az-2", "az-3", "az-5"]
    spec = SourceSpec(trace=data_dir / "azure2023_small.csv", format="mooncake")
    with pytest.raises(TraceFormatError):
        list(open_source(spec))
    assert len(list(open_source(spec, format_override="azure"))) == 3


def test_sharegpt_source_passes_the_counter(data_dir: Path, word_counter: TokenCounter) -> None:
    spec = SourceSpec(trace=data_dir / "sharegpt_small.json", limit_requests=3)
    with pytest.raises(ConfigError, match="--tokenizer"):
        open_source(spec)
    sessions = list(open_source(spec, token_counter=word_counter))
    assert [s.requests for s in sessions] == [2, 1]


def test_sessions_from_path_checks_arguments(data_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown trace format 'csv'"):
        sessions_from_path(data_dir / "azure2023_small.csv", fmt="csv")
    with pytest.raises(ConfigError, match="must be positive"):
        sessions_from_path(data_dir / "azure2023_small.csv", limit_requests=0)
    assert len(list(sessions_from_path(data_dir / "sessions_small.jsonl", "sessions"))) == 2
