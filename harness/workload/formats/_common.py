"""Shared helpers for the trace loaders: readable-file checks, JSON-lines and CSV row
streaming, and field parsers that raise TraceFormatError naming the file, line and field."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from harness.config_files import lone_surrogate
from harness.errors import ConfigError, TraceFormatError
from harness.workload.limits import MAX_TOKENS
from harness.workload.model import Session

_INT_TEXT = re.compile(r"\d+(?:\.0*)?")
_DECIMAL_TEXT = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
TOO_LONG = "an integer of more than 4,300 digits"
"""Why `json` refuses a number: Python's limit on int conversion (`sys.get_int_max_str_digits`)."""
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def check_readable(path: Path) -> None:
    """Fail early, with a ConfigError, when a trace file is missing or not a file."""
    if not path.exists():
        raise ConfigError(f"{path}: trace file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")


def json_lines(path: Path, first_line: int = 1) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line, decoded value) for each non-blank line of a JSON-lines file, from
    `first_line` on (the lines before it are read as text, not decoded, so a reader taking
    over part-way meets the same errors at the same lines)."""
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
            if lineno < first_line or not text.strip():
                continue
            value = decode_json(path, lineno, text)
            if may_hold_surrogates(text):
                where = lone_surrogate(value)
                if where is not None:
                    raise surrogate_error(path, lineno, where)
            yield lineno, value


def decode_json(path: Path, line: int, text: str) -> Any:
    """Decode one JSON document; bad JSON, nesting too deep for the decoder and integers too
    long to convert (over 4,300 digits) are errors naming the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise TraceFormatError(
            path, line, None, f"invalid JSON: {err.msg} (column {err.colno})"
        ) from None
    except RecursionError:
        raise TraceFormatError(path, line, None, "invalid JSON: nested too deeply") from None
    except ValueError:  # int() refuses integers of more than 4,300 digits
        raise TraceFormatError(path, line, None, f"invalid JSON: {TOO_LONG}") from None


def json_object(path: Path, line: int, value: Any) -> dict[str, Any]:
    """Check that a decoded JSON line is an object."""
    if not isinstance(value, dict):
        raise TraceFormatError(path, line, None, f"expected a JSON object, got {_kind(value)}")
    return value


def require(
    path: Path, line: int, record: dict[str, Any], key: str, field: str | None = None
) -> Any:
    """Return a JSON record's `key`, or raise naming the missing field (`field`, the key's
    dotted path in a nested record, or the key itself)."""
    if key not in record:
        raise TraceFormatError(path, line, field or key, "missing")
    return record[key]


def json_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, decoded value) per record: JSON lines, or one JSON document at line 1 (a
    pretty-printed export, whose first line alone is not JSON)."""
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        first = ""
        for text in f:
            if text.strip():
                first = text
                break
    try:
        decode_json(path, 1, first)
    except TraceFormatError:
        if first.strip().startswith("{"):
            try:
                document = decode_json(path, 1, path.read_text(encoding="utf-8-sig"))
            except (TraceFormatError, UnicodeDecodeError):
                pass  # not one document either: the line's own error comes from json_lines
            else:
                yield 1, document
                return
    yield from json_lines(path)


def out_of_order(
    path: Path, line: int, field: str, value: float, before: tuple[int, float], traces: str
) -> TraceFormatError:
    """The error for a record timed `value`, earlier than the one `before` it (its line and
    time), in `traces` traces, which are sorted by time."""
    line_before, time_before = before
    return TraceFormatError(
        path,
        line,
        field,
        f"{value:g} is earlier than line {line_before}'s {time_before:g}: "
        f"{traces} traces are sorted by time",
    )


def json_text(path: Path, line: int, field: str, raw: Any) -> str:
    """A field that must be a non-empty string."""
    if not isinstance(raw, str) or not raw:
        raise TraceFormatError(path, line, field, f"expected a non-empty string, got {brief(raw)}")
    return raw


def json_list(path: Path, line: int, field: str, raw: Any) -> list[Any]:
    """A field that must be a JSON list."""
    if not isinstance(raw, list):
        raise TraceFormatError(path, line, field, f"expected a list, got {brief(raw)}")
    return raw


def json_mapping(path: Path, line: int, field: str, raw: Any) -> dict[str, Any]:
    """A field that must be a JSON object."""
    if not isinstance(raw, dict):
        raise TraceFormatError(path, line, field, f"expected a JSON object, got {brief(raw)}")
    return raw


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
                    self.path, line, column, f"missing column (header has {header_text(names)})"
                )


def json_count(path: Path, line: int, field: str, raw: Any, maximum: int = MAX_TOKENS) -> int:
    """A token count in a JSON record: a JSON integer, or a number with no fraction as some
    exporters write them (`512.0`), from 0 to `maximum`; not a string or a boolean."""
    if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer() and raw >= 0:
        raw = int(raw) if raw <= maximum else raw
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return _at_most(path, line, field, raw, maximum)
    raise TraceFormatError(path, line, field, f"expected a non-negative integer, got {brief(raw)}")


def json_number(path: Path, line: int, field: str, raw: Any, maximum: float) -> float:
    """A time or duration in a JSON record: a finite JSON number (not a string or boolean) from
    0 to `maximum`."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise TraceFormatError(path, line, field, f"expected a finite number, got {raw!r}")
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
        return float(_at_most(path, line, field, raw, maximum))
    raise TraceFormatError(path, line, field, f"expected a non-negative number, got {brief(raw)}")


def csv_count(path: Path, line: int, field: str, text: str, maximum: int = MAX_TOKENS) -> int:
    """A token count in a CSV cell: decimal digits (``12`` or ``12.0``) from 0 to `maximum`."""
    stripped = text.strip()
    if _INT_TEXT.fullmatch(stripped):
        digits = stripped.split(".", 1)[0].lstrip("0") or "0"
        if len(digits) > len(str(maximum)):
            raise TraceFormatError(
                path, line, field, f"{brief(text)} exceeds the limit of {maximum:,}"
            )
        return _at_most(path, line, field, int(digits), maximum)
    raise TraceFormatError(path, line, field, f"expected a non-negative integer, got {brief(text)}")


def csv_number(path: Path, line: int, field: str, text: str, maximum: float) -> float:
    """A time in a CSV cell: a non-negative decimal (``5``, ``19440110.5``, ``1e3``) from 0 to
    `maximum`; ``nan``, ``inf`` and signs are errors."""
    stripped = text.strip()
    if not _DECIMAL_TEXT.fullmatch(stripped):
        raise TraceFormatError(
            path, line, field, f"expected a non-negative number, got {brief(text)}"
        )
    value = float(stripped)
    if not math.isfinite(value):
        raise TraceFormatError(path, line, field, f"expected a finite number, got {brief(text)}")
    return _at_most(path, line, field, value, maximum)


N = TypeVar("N", int, float)


def _at_most(path: Path, line: int, field: str, value: N, maximum: float) -> N:
    """`value` itself, or an error when it is above `maximum` (compared exactly, so a huge
    integer never goes through a float)."""
    if value > maximum:
        raise TraceFormatError(
            path, line, field, f"{brief(value)} exceeds the limit of {maximum:,.0f}"
        )
    return value


def header_text(names: Sequence[str], most: int = 12) -> str:
    """A CSV header for an error message: its first `most` names and how many more."""
    shown = ", ".join(brief(n).strip("'") for n in names[:most])
    return shown if len(names) <= most else f"{shown}, … ({len(names) - most:,} more)"


def brief(value: Any) -> str:
    """A value for an error message, cut short (a huge number or string stays readable)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_prompts(path: Path, line: int, session: Session, field: str | None = None) -> None:
    """Each step's whole prompt (agent-loop rule) must stay within MAX_TOKENS; the error names
    `field`, by default the step's `steps.I.new_input_tokens`."""
    for i, prompt in enumerate(session.input_lengths()):
        if prompt > MAX_TOKENS:
            raise TraceFormatError(
                path,
                line,
                field or f"steps.{i}.new_input_tokens",
                f"step {i}'s prompt of {prompt:,} tokens exceeds the limit of {MAX_TOKENS:,}",
            )


def may_hold_surrogates(text: str) -> bool:
    """True when JSON text has a `\\uD800`-`\\uDFFF` escape (the only way to a lone surrogate)."""
    return _SURROGATE_ESCAPE.search(text) is not None


def surrogate_error(path: Path, line: int, where: str) -> TraceFormatError:
    """The error for a string holding a lone surrogate at dotted path `where`."""
    message = "holds a lone surrogate escape (\\ud800-\\udfff), not Unicode text"
    return TraceFormatError(path, line, where or None, message)


def _kind(value: Any) -> str:
    """Name a JSON value's type for an error message."""
    names = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
