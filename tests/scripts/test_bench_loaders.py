"""scripts/bench_loaders.py's generated files: every format's writer gives a trace its loader
reads, with the rows asked for, and the typed sums agree with the Sessions on each."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_modules import load_script

from harness.workload.formats import iter_trace
from harness.workload.stats import workload_stats

bench = load_script("bench_loaders")


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
