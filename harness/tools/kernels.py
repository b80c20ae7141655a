"""The registry of real CPU tool kernels: kind -> `run_<kind>(size, seed) -> summary`."""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import ConfigError
from harness.tools import file_search, file_write, parse, retrieval, summarize
from harness.tools.code_exec import run_code_exec

Summary = dict[str, float | int | str | None]
Kernel = Callable[[float, int], Summary]

KERNELS: dict[str, Kernel] = {
    "retrieval": retrieval.run_retrieval,
    "summarize": summarize.run_summarize,
    "code_exec": run_code_exec,
    "file_search": file_search.run_file_search,
    "parse": parse.run_parse,
    "file_write": file_write.run_file_write,
}

SIZE_UNITS: dict[str, str] = {
    "retrieval": "thousand documents scanned (384-dim float32, batch of 8 queries)",
    "summarize": "sentences summarised (LexRank, pages of 50)",
    "code_exec": "thousand loop iterations of the generated program (sandboxed)",
    "file_search": "source files grepped",
    "parse": "KB of JSON and HTML parsed",
    "file_write": "KB written to disk and fsync'd (files written whole, then edited)",
}


def kernel(kind: str) -> Kernel:
    """The kernel for `kind`; ConfigError naming the kind when there is none."""
    try:
        return KERNELS[kind]
    except KeyError:
        known = ", ".join(KERNELS)
        raise ConfigError(f"unknown tool kind {kind!r}; known kinds: {known}") from None


def prepare(seed: int) -> None:
    """Build every kernel's cached inputs for `seed` at full size, so calls don't pay for it."""
    retrieval.index_for(seed, retrieval.INDEX_CAP_DOCS)
    summarize.pages_for(seed, summarize.PAGES_CACHED)
    file_search.tree_for(seed, file_search.TREE_CAP_FILES)
    parse.docs_for(seed)
