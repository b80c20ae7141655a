"""The real CPU tool kernels: each runs, is deterministic, and does more work for a larger size.

Work is compared by counters the kernel reports and by CPU seconds (process CPU time, or the
sandboxed child's for code_exec), which a busy machine disturbs far less than wall time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from harness.errors import ConfigError
from harness.tools import file_search, kernels
from harness.tools.kernels import KERNELS, SIZE_UNITS, kernel
from harness.tools.runner import TOOL_KINDS

# (kind, small size, large size, counter that must grow)
CASES = [
    ("retrieval", 1.0, 120.0, "docs_scanned"),
    ("summarize", 20.0, 1500.0, "sentences"),
    ("code_exec", 1.0, 150.0, "iterations"),
    ("file_search", 10.0, 800.0, "files_searched"),
    ("parse", 4.0, 400.0, "bytes_parsed"),
]


@pytest.fixture(scope="module", autouse=True)
def _remove_trees() -> Iterator[None]:
    """Remove the generated source trees after this module."""
    yield
    file_search.cleanup()


def _cpu_s(kind: str, size: float) -> tuple[float, kernels.Summary]:
    """CPU seconds one call took, and its summary."""
    start = time.process_time()
    summary = kernel(kind)(size, 7)
    if kind == "code_exec":
        return float(summary["cpu_user_s"] or 0) + float(summary["cpu_system_s"] or 0), summary
    return time.process_time() - start, summary


def test_registry_matches_tool_kinds() -> None:
    assert tuple(KERNELS) == TOOL_KINDS
    assert set(SIZE_UNITS) == set(TOOL_KINDS)


@pytest.mark.parametrize(("kind", "small", "large", "counter"), CASES)
def test_kernel_work_grows_with_size(
    kind: str, small: float, large: float, counter: str, request: pytest.FixtureRequest
) -> None:
    if kind == "code_exec":
        request.getfixturevalue("needs_bwrap")
    kernel(kind)(small, 7)  # warm caches and imports
    cpu_small, s = _cpu_s(kind, small)
    cpu_large, big = _cpu_s(kind, large)
    assert big.get("status", "ok") == "ok", big
    work_small, work_large = s[counter], big[counter]
    assert isinstance(work_small, int) and isinstance(work_large, int)
    assert work_large > 10 * work_small
    assert cpu_large > cpu_small


@pytest.mark.parametrize("kind", ["retrieval", "summarize", "file_search", "parse"])
def test_kernel_is_deterministic(kind: str) -> None:
    assert kernel(kind)(3.0, 11) == kernel(kind)(3.0, 11)


@pytest.mark.usefixtures("needs_bwrap")
def test_code_exec_is_deterministic_and_sandboxed() -> None:
    a, b = kernel("code_exec")(2.0, 5), kernel("code_exec")(2.0, 5)
    assert a["status"] == "ok" and a["checksum"] == b["checksum"] is not None
    assert a["peak_rss_bytes"] is not None and int(a["peak_rss_bytes"]) > 0


def test_retrieval_beyond_the_index_cap_repeats_passes() -> None:
    from harness.tools.retrieval import INDEX_CAP_DOCS

    out = kernel("retrieval")(2.5 * INDEX_CAP_DOCS / 1000, 7)
    assert out["passes"] == 3 and out["docs_scanned"] == round(2.5 * INDEX_CAP_DOCS)


@pytest.mark.parametrize("kind", TOOL_KINDS)
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_kernel_rejects_a_bad_size(kind: str, bad: float) -> None:
    with pytest.raises(ValueError, match="size"):
        kernel(kind)(bad, 0)


def test_unknown_kind_names_it() -> None:
    with pytest.raises(ConfigError, match="web_browse"):
        kernel("web_browse")


def test_file_search_tree_is_removed_by_cleanup() -> None:
    tree = file_search.tree_for(3, 5)
    assert sum(1 for _ in tree.rglob("*.py")) >= 5
    file_search.cleanup()
    assert not tree.exists()
