"""Parse tool kernel: parse JSON API responses and HTML pages with the standard library.

Like an agent reading a web page or a tool's JSON output: `json.loads` plus a walk over the
result, and `html.parser` collecting text, links and tags. Size unit: kilobytes of documents
parsed, in documents of about DOC_BYTES, alternating JSON and HTML. Documents are a pure
function of (seed, document), generated once per process (DOCS_CACHED of each per seed) and
parsed again as often as the size needs.
"""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from typing import Any

import numpy as np

DOC_BYTES = 4_096
DOCS_CACHED = 16
_WORDS = ("agent", "token", "cache", "server", "latency", "energy", "fleet", "model", "tool")
_docs: dict[int, tuple[list[str], list[str]]] = {}


def _words(rng: np.random.Generator, n: int) -> str:
    """`n` words from a small vocabulary."""
    return " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), size=n))


def _json_doc(rng: np.random.Generator) -> str:
    """A search-API-like JSON response of at least DOC_BYTES."""
    results: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"query": _words(rng, 4), "results": results}
    text = json.dumps(doc)
    while len(text) < DOC_BYTES:
        results.append(
            {
                "id": int(rng.integers(1 << 30)),
                "title": _words(rng, 6),
                "score": round(float(rng.random()), 4),
                "tags": [_words(rng, 1) for _ in range(3)],
                "snippet": _words(rng, 20),
                "meta": {"lang": "en", "words": int(rng.integers(100, 5000))},
            }
        )
        text = json.dumps(doc)
    return text


def _html_doc(rng: np.random.Generator) -> str:
    """A web-page-like HTML document of at least DOC_BYTES."""
    head = f"<!DOCTYPE html><html><head><title>{_words(rng, 5)}</title>"
    parts = [head + '<meta charset="utf-8"></head><body><nav><ul>']
    size = len(parts[0])
    while size < DOC_BYTES:
        n = int(rng.integers(1 << 20))
        chunk = (
            f'<li><a href="/page/{n}">{_words(rng, 2)}</a></li>'
            f'<p class="c{n % 5}">{_words(rng, 15)} <b>{_words(rng, 2)}</b> &amp; more</p>'
            f"<table><tr><td>{n}</td><td>{_words(rng, 3)}</td></tr></table>"
        )
        parts.append(chunk)
        size += len(chunk)
    parts.append("</ul></nav></body></html>")
    return "".join(parts)


def docs_for(seed: int) -> tuple[list[str], list[str]]:
    """The cached (JSON, HTML) documents for `seed`."""
    docs = _docs.get(seed)
    if docs is None:
        docs = (
            [_json_doc(np.random.default_rng([seed, 0, i])) for i in range(DOCS_CACHED)],
            [_html_doc(np.random.default_rng([seed, 1, i])) for i in range(DOCS_CACHED)],
        )
        _docs.clear()
        _docs[seed] = docs
    return docs


class _PageParser(HTMLParser):
    """Collects what an agent wants from a page: tags, links and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags = 0
        self.links: list[str] = []
        self.text_chars = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Count the tag; keep a link's target."""
        self.tags += 1
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)

    def handle_data(self, data: str) -> None:
        """Count visible text."""
        self.text_chars += len(data.strip())


def _count_nodes(value: Any) -> int:
    """Nodes in a parsed JSON value."""
    if isinstance(value, dict):
        return 1 + sum(_count_nodes(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_count_nodes(v) for v in value)
    return 1


def run_parse(size: float, seed: int) -> dict[str, float | int | str | None]:
    """Parse `size` KB of JSON and HTML documents, alternating; returns counts."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"parse size must be a finite number >= 0, got {size}")
    docs = max(1, round(size * 1024 / DOC_BYTES))
    json_docs, html_docs = docs_for(seed)
    parsed = nodes = tags = links = 0
    for i in range(docs):
        if i % 2 == 0:
            text = json_docs[(i // 2) % DOCS_CACHED]
            nodes += _count_nodes(json.loads(text))
        else:
            text = html_docs[(i // 2) % DOCS_CACHED]
            parser = _PageParser()
            parser.feed(text)
            parser.close()
            tags += parser.tags
            links += len(parser.links)
        parsed += len(text)
    return {
        "documents": docs,
        "bytes_parsed": parsed,
        "json_nodes": nodes,
        "html_tags": tags,
        "links": links,
    }
