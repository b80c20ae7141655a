"""Tool workers: by default as many as the host can run at once, and bounded."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from harness.tools.workers import tool_workers, usable_cpus
from harness.workload.spec import MAX_TOOL_WORKERS, ToolsSpec


def test_the_default_is_auto_and_means_the_usable_cpus() -> None:
    assert ToolsSpec().workers == "auto"
    workers, source = tool_workers("auto")
    assert workers == usable_cpus() == len(os.sched_getaffinity(0))
    assert source.startswith("auto:") and str(workers) in source


def test_an_explicit_count_is_kept_and_said() -> None:
    assert tool_workers(3) == (3, "the workload's tools.workers")


@pytest.mark.parametrize("bad", [0, -1, MAX_TOOL_WORKERS + 1, 100000, "many"])
def test_impossible_counts_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError):
        ToolsSpec.model_validate({"workers": bad})
