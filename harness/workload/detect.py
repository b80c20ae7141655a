"""Guess a trace file's format from its extension and its first non-blank line or header."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.workload.spec import TRACE_FORMATS

_PEEK_CHARS = 1 << 20
"""Characters read to find the first record; a longer first line is not recognised."""

_BY_SUFFIX: dict[str, frozenset[str]] = {
    ".csv": frozenset({"azure", "burstgpt"}),
    ".jsonl": frozenset({"mooncake", "sessions", "tracelab", "weka", "bailian", "otel"}),
    ".ndjson": frozenset({"mooncake", "sessions", "tracelab", "weka", "bailian", "otel"}),
    ".json": frozenset({"sharegpt", "mooncake", "sessions", "tracelab", "weka", "bailian", "otel"}),
}


def detect_format(path: Path) -> str:
    """Name the trace format of `path` (one of TRACE_FORMATS) or raise ConfigError."""
    head = _peek(path)
    guess = _guess(head)
    allowed = _BY_SUFFIX.get(path.suffix.lower(), frozenset(TRACE_FORMATS))
    if guess is None or guess not in allowed:
        raise ConfigError(
            f"{path}: cannot tell the trace format from its extension and first line; "
            f"pass --format with one of: {', '.join(TRACE_FORMATS)}"
        )
    return guess


def _peek(path: Path) -> str:
    """The text from the first non-blank character up to the end of that line."""
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            text = f.read(_PEEK_CHARS)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read trace: {err.strerror}") from None
    text = text.lstrip()
    first = text.split("\n", 1)[0].strip()
    if text.startswith("[") or first == "{":  # a JSON document over several lines
        return text
    return first


def _guess(head: str) -> str | None:
    """Recognise a format from the first record or header."""
    if head.startswith("["):
        return "sharegpt"
    if head.startswith("{"):
        return _guess_json(head)
    if not head:
        return None
    try:
        header = {name.strip() for name in next(csv.reader([head]), [])}
    except csv.Error:  # e.g. a field longer than the csv module's limit
        return None
    if "ContextTokens" in header:
        return "azure"
    if "Request tokens" in header:
        return "burstgpt"
    return None


def _guess_json(line: str) -> str | None:
    """Recognise a JSON-lines record by its keys."""
    try:
        record: Any = json.loads(line)
    except (ValueError, RecursionError):  # bad JSON, too deep, a 5,000-digit integer
        # A pretty-printed OTLP/JSON export: `{` then `"resourceSpans": [` on the next line.
        return "otel" if line[1:].lstrip().startswith('"resourceSpans"') else None
    if not isinstance(record, dict):
        return None
    if "steps" in record:
        return "sessions"
    if "chat_id" in record and "parent_chat_id" in record and "turn" in record:
        return "bailian"
    if "input_length" in record and "hash_ids" in record:
        return "mooncake"
    if "round_index" in record and "input_tokens_total" in record:
        return "tracelab"
    if "requests" in record and "block_size" in record:
        return "weka"
    if "resourceSpans" in record:
        return "otel"
    return None
