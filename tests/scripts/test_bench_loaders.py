"""scripts/bench_loaders.py's generated files: every format's writer gives a trace its loader
reads, with the rows asked for, and the typed sums agree with the Sessions on each."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from harness.workload.formats import iter_trace
from harness.workload.stats import workload_stats

REPO = Path(__file__).resolve().parents[2]


def _module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _module("bench_loaders", REPO / "scripts" / "bench_loaders.py")


class _Words:
    def count(self, text: str) -> int:
        return len(text.split())


@pytest.mark.parametrize("fmt", sorted(bench.WRITERS))
def test_each_writer_gives_a_trace_of_its_format(tmp_path: Path, fmt: str) -> None:
    writer, kind = bench.WRITERS[fmt]
    path = tmp_path / f"{fmt}.{kind}"
    try:
        writer(path, 60)
    except SystemExit as missing:  # the shared Azure or Mooncake trace is not here
        pytest.skip(str(missing))
    stats = workload_stats(iter_trace(path, fmt, token_counter=_Words()))
    assert stats.requests > 0
    if fmt in ("azure", "mooncake", "burstgpt", "bailian"):
        assert stats.requests == 60  # one request a row or line
    sessions = list(iter_trace(path, fmt, token_counter=_Words()))
    assert workload_stats(sessions) == stats
    if fmt == "burstgpt":
        assert len(sessions) < 60  # conversations of several turns
