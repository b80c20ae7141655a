"""Summarisation tool kernel: LexRank extractive summaries of seeded generated text.

Like a search agent summarising the pages it fetched (LangChain with LexRank): the text is
split into sentences and tokenised, each sentence becomes a TF-IDF vector (numpy), the cosine
similarity graph is thresholded and ranked by power iteration, and the top sentences form the
summary. Size unit: sentences. The text comes in pages of PAGE_SENTENCES sentences, each page
summarised on its own (so work grows linearly with size); pages are a pure function of
(seed, page), generated once per process (up to PAGES_CACHED per seed, reused cyclically).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

PAGE_SENTENCES = 50
PAGES_CACHED = 128
SUMMARY_SENTENCES = 3
SIM_THRESHOLD = 0.1
DAMPING = 0.85
_VOCAB = 3_000
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "an", "el", "or", "us", "ti", "po")
_STOP = frozenset({"the", "a", "of", "and", "to", "in", "is", "for", "on", "with"})
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z]+")
_pages: dict[int, list[list[str]]] = {}


def _vocabulary(rng: np.random.Generator) -> list[str]:
    """Pseudo-words of two to four syllables, plus stop words."""
    words = {"".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 5)))) for _ in range(_VOCAB)}
    return sorted(words) + sorted(_STOP)


def _page(rng: np.random.Generator, vocab: list[str]) -> list[str]:
    """PAGE_SENTENCES sentences with Zipf-like word frequencies."""
    sentences = []
    for _ in range(PAGE_SENTENCES):
        n = int(rng.integers(8, 26))
        idx = np.minimum(rng.zipf(1.3, size=n) - 1, len(vocab) - 1)
        words = [vocab[i] for i in idx]
        sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
    return sentences


def pages_for(seed: int, pages: int) -> list[list[str]]:
    """The cached pages for `seed`, at least min(pages, PAGES_CACHED) of them."""
    want = min(max(pages, 1), PAGES_CACHED)
    have = _pages.setdefault(seed, [])
    if len(have) < want:
        vocab = _vocabulary(np.random.default_rng([seed, 0]))
        have.extend(
            _page(np.random.default_rng([seed, 1, p]), vocab) for p in range(len(have), want)
        )
    return have


def lexrank(text: str, top: int = SUMMARY_SENTENCES) -> list[str]:
    """The `top` most central sentences of `text` by LexRank, in text order."""
    sentences = [s for s in _SENTENCE_SPLIT.split(text.strip()) if s]
    if not sentences:
        return []
    counts = [Counter(w for w in _WORD.findall(s.lower()) if w not in _STOP) for s in sentences]
    terms: dict[str, int] = {}
    for c in counts:
        for w in c:
            terms.setdefault(w, len(terms))
    n = len(sentences)
    tf = np.zeros((n, max(1, len(terms))))
    for i, c in enumerate(counts):
        for w, k in c.items():
            tf[i, terms[w]] = k
    df = np.count_nonzero(tf, axis=0)
    vectors = tf * np.log(n / np.maximum(df, 1) + 1.0)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms > 0, norms, 1.0)
    graph = (vectors @ vectors.T > SIM_THRESHOLD).astype(np.float64)
    graph /= graph.sum(axis=1, keepdims=True).clip(min=1.0)
    scores = np.full(n, 1.0 / n)
    for _ in range(100):
        nxt = (1 - DAMPING) / n + DAMPING * (graph.T @ scores)
        done = float(np.abs(nxt - scores).sum()) < 1e-6
        scores = nxt
        if done:
            break
    best = sorted(np.argsort(-scores)[:top].tolist())
    return [sentences[i] for i in best]


def run_summarize(size: float, seed: int) -> dict[str, float | int | str | None]:
    """LexRank-summarise `size` sentences page by page; returns counts."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"summarize size must be a finite number >= 0, got {size}")
    sentences = max(1, round(size))
    pages = pages_for(seed, math.ceil(sentences / PAGE_SENTENCES))
    remaining, page, chars, summary_chars = sentences, 0, 0, 0
    while remaining > 0:
        take = pages[page % len(pages)][: min(remaining, PAGE_SENTENCES)]
        text = " ".join(take)
        chars += len(text)
        summary_chars += sum(len(s) for s in lexrank(text))
        remaining -= len(take)
        page += 1
    return {"sentences": sentences, "pages": page, "chars": chars, "summary_chars": summary_chars}
