"""Retrieval tool kernel: exact nearest-neighbour search over a seeded embedding index.

Like a RAG pipeline's flat (exact) retriever: a batch of query embeddings is scored against
every document embedding with one matmul and the top k are picked with argpartition.
Size unit: thousands of documents scanned. The index holds 384-dimensional float32 unit
vectors (MiniLM's width), built in 1,000-document blocks that are a pure function of
(seed, block), cached per process and grown on demand up to INDEX_CAP_DOCS; a call scans the
first `size` thousand documents, and a size beyond the cap scans the whole index again with
a fresh query batch per pass (more questions against the same corpus).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

DIM = 384
BLOCK_DOCS = 1_000
INDEX_CAP_DOCS = 50_000
QUERY_BATCH = 8
TOP_K = 10
_CACHED_SEEDS = 2

Matrix = npt.NDArray[np.float32]
_index: dict[int, Matrix] = {}


def _unit_rows(rng: np.random.Generator, rows: int) -> Matrix:
    """`rows` random unit vectors of width DIM."""
    m = rng.standard_normal((rows, DIM), dtype=np.float32)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return m


def index_for(seed: int, docs: int) -> Matrix:
    """The cached index for `seed`, holding at least min(docs, INDEX_CAP_DOCS) documents."""
    want = min(max(docs, 1), INDEX_CAP_DOCS)
    have = _index.get(seed)
    if have is not None and have.shape[0] >= want:
        return have
    have_blocks = 0 if have is None else have.shape[0] // BLOCK_DOCS
    want_blocks = math.ceil(want / BLOCK_DOCS)
    new = [
        _unit_rows(np.random.default_rng([seed, b]), BLOCK_DOCS)
        for b in range(have_blocks, want_blocks)
    ]
    grown = np.concatenate(([have] if have is not None else []) + new)
    _index.pop(seed, None)
    while len(_index) >= _CACHED_SEEDS:
        _index.pop(next(iter(_index)))
    _index[seed] = grown
    return grown


def run_retrieval(size: float, seed: int) -> dict[str, float | int | str | None]:
    """Exact top-k search of query batches over `size` thousand documents; returns counts."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"retrieval size must be a finite number >= 0, got {size}")
    docs = max(1, round(size * BLOCK_DOCS))
    index = index_for(seed, docs)
    remaining, passes, best = docs, 0, -1.0
    while remaining > 0:
        n = min(remaining, index.shape[0])
        queries = _unit_rows(np.random.default_rng([seed, 1_000_003, passes]), QUERY_BATCH)
        scores = index[:n] @ queries.T
        k = min(TOP_K, n)
        top = np.argpartition(scores, n - k, axis=0)[n - k :]
        top_scores = np.take_along_axis(scores, top, axis=0)
        order = np.argsort(-top_scores, axis=0)
        ranked = np.take_along_axis(top, order, axis=0)
        best = max(best, float(scores[ranked[0], np.arange(QUERY_BATCH)].max()))
        remaining -= n
        passes += 1
    return {
        "docs_scanned": docs,
        "passes": passes,
        "queries": passes * QUERY_BATCH,
        "best_score": best,
    }
