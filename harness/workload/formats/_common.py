"""Shared helpers for the trace loaders: readable-file checks, JSON-lines and CSV row
streaming, and field parsers that raise TraceFormatError naming the file, line and field."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, TraceFormatError

_INT_TEXT = re.compile(r"\d+(?:\.0*)?")


def check_readable(path: Path) -> None:
    """Fail early, with a ConfigError, when a trace file is missing or not a file."""
    if not path.exists():
        raise ConfigError(f"{path}: trace file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")


def json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line, decoded value) for each non-blank line of a JSON-lines file."""
    with path.open(encoding="utf-8-sig") as f:
        lineno = 0
        while True:
            try:
                text = f.readline()
            except UnicodeDecodeError as err:
                raise TraceFormatError(path, lineno + 1, None, f"not UTF-8 text: {err}") from None
            if not text:
                break
            lineno += 1
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise TraceFormatError(
                    path, lineno, None, f"invalid JSON: {err.msg} (column {err.colno})"
                ) from None
            yield lineno, value


def json_object(path: Path, line: int, value: Any) -> dict[str, Any]:
    """Check that a decoded JSON line is an object."""
    if not isinstance(value, dict):
        raise TraceFormatError(path, line, None, f"expected a JSON object, got {_kind(value)}")
    return value


def require(path: Path, line: int, record: dict[str, Any], key: str) -> Any:
    """Return a JSON record's field, or raise naming the missing field."""
    if key not in record:
        raise TraceFormatError(path, line, key, "missing")
    return record[key]


class CsvRows:
    """A CSV file read row by row: the header maps column names to positions."""

    def __init__(self, path: Path, required: Sequence[str]) -> None:
        """Prepare to read `path`, whose header must name every `required` column."""
        self.path = path
        self._required = tuple(required)
        self.columns: dict[str, int] = {}

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Yield (1-based line, fields) for each non-blank data row; the header sets `columns`."""
        with self.path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            width = 0
            while True:
                try:
                    row = next(reader, None)
                except (csv.Error, UnicodeDecodeError) as err:
                    raise TraceFormatError(
                        self.path, reader.line_num + 1, None, f"unreadable CSV: {err}"
                    ) from None
                if row is None:
                    break
                if not any(cell.strip() for cell in row):
                    continue
                if not self.columns:
                    self._read_header(reader.line_num, row)
                    width = len(row)
                    continue
                if len(row) != width:
                    raise TraceFormatError(
                        self.path, reader.line_num, None, f"expected {width} fields, got {len(row)}"
                    )
                yield reader.line_num, row
            if not self.columns:
                raise TraceFormatError(self.path, 1, None, "empty file: no CSV header")

    def has(self, column: str) -> bool:
        """True when the header names this column."""
        return column in self.columns

    def _read_header(self, line: int, row: list[str]) -> None:
        """Map column names (stripped) to positions; a missing required column is an error."""
        names = [cell.strip() for cell in row]
        self.columns = {name: i for i, name in enumerate(names)}
        for column in self._required:
            if column not in self.columns:
                raise TraceFormatError(
                    self.path, line, column, f"missing column (header has {', '.join(names)})"
                )


def nonneg_int(path: Path, line: int, field: str, raw: Any) -> int:
    """Parse a token count: a JSON integer or a CSV decimal string (``12`` or ``12.0``)."""
    if isinstance(raw, str):
        text = raw.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text.split(".", 1)[0])
    elif isinstance(raw, int) and not isinstance(raw, bool):
        if raw >= 0:
            return raw
    elif isinstance(raw, float) and raw.is_integer() and raw >= 0:
        return int(raw)
    raise TraceFormatError(path, line, field, f"expected a non-negative integer, got {raw!r}")


def nonneg_float(path: Path, line: int, field: str, raw: Any) -> float:
    """Parse a time or duration: a finite, non-negative JSON number or CSV decimal string."""
    value: float | None = None
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    if value is None or not math.isfinite(value) or value < 0:
        raise TraceFormatError(path, line, field, f"expected a non-negative number, got {raw!r}")
    return value


def _kind(value: Any) -> str:
    """Name a JSON value's type for an error message."""
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
