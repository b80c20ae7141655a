"""Flat traces (CSV, JSON lines) read for their sums as typed Arrow columns: pyarrow parses
whole lines, a few MB at a time on every core, straight into each field's type (no text
cells, no line numbers). It reads some input more leniently than the row checks do (`0x1f`
and padded integers or a time without seconds in CSV; two records on a line, a byte-order
mark mid-file or deep nesting in JSON), so each chunk is vouched for first. One that is not,
or that pyarrow refuses, ends the typed read: the loader goes on from that chunk with its
exact reader, whose errors name the line and field."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from harness.workload.formats import _batches
from harness.workload.formats._batches import read_header

_BOM = b"\xef\xbb\xbf"
_OPEN_BRACE = ord("{")
_SCAN_BYTES = 8 << 20
"""Bytes read at once when counting lines (only where the typed read gives up)."""
LONG_LINE = 1000
"""JSON lines longer than this are decoded by Python's json first: it refuses nesting deeper
than its recursion limit and integers of over 4,300 digits, which pyarrow reads (and nesting
tens of thousands deep overflows pyarrow's parser's stack); a shorter line nests less than
Python's limit."""


@dataclass(frozen=True, slots=True)
class TypedChunk:
    """Whole lines of a trace file as typed columns: where they start, their bytes (valid
    until the next chunk is asked for: its reading ahead reuses them) and the columns asked
    for (a CSV file's empty lines skipped, as the row reader skips them)."""

    offset: int
    data: memoryview
    columns: dict[str, pa.Array]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


@dataclass(frozen=True, slots=True)
class Stop:
    """Where the typed read gave up: the byte offset of the first chunk it did not vouch for."""

    offset: int


class TypedCsv:
    """A CSV trace whose `required` columns are read as `types` chunk by chunk."""

    def __init__(
        self, path: Path, required: Sequence[str], types: Mapping[str, pa.DataType]
    ) -> None:
        self.path = path
        self._types = dict(types)
        with path.open("rb") as f:
            header = read_header(path, f, required)
            self._start = f.tell()
        self.readable = header is not None
        """False where the header has quotes or lone CRs: the exact reader reads the file."""
        names, self._header_line = header or ([], 1)
        self._width = len(names)
        self._where = {name: i for i, name in enumerate(names)}  # the last of a repeated name

    def chunks(self) -> Generator[TypedChunk | Stop, None, None]:
        """The file's data lines as TypedChunks; a Stop in place of the first chunk that is
        not vouched for (and nothing after it)."""
        if not self.readable:
            yield Stop(self._start)
            return
        yield from _read_ahead(self.path, self._start, self._typed)

    def column_as_bytes(self, chunk: TypedChunk, column: str) -> pa.BinaryArray:
        """One column of a chunk read again as raw cells (the same rows, empty lines skipped)."""
        table = pcsv.read_csv(
            pa.py_buffer(chunk.data),
            read_options=pcsv.ReadOptions(column_names=self._names()),
            parse_options=pcsv.ParseOptions(newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                include_columns=[f"c{self._where[column]}"],
                column_types={f"c{self._where[column]}": pa.binary()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        cells: pa.BinaryArray = table.column(0).combine_chunks()
        return cells

    def line_at(self, offset: int) -> int:
        """The 1-based line that starts at byte `offset` (the start of a line)."""
        return self._header_line + 1 + _newlines(self.path, self._start, offset)

    def last_row_line(self, offset: int) -> int:
        """The line of the last non-empty line before byte `offset`, or 0 where there is none
        (the typed chunks skip only empty lines: any other is a row or was refused)."""
        line = self.line_at(offset) - 1
        window = 1 << 16
        with self.path.open("rb") as f:
            while True:
                begin = max(self._start, offset - window)
                f.seek(begin)
                lines = f.read(offset - begin).split(b"\n")[:-1]
                whole = lines if begin == self._start else lines[1:]
                for back, text in enumerate(reversed(whole)):
                    if text.rstrip(b"\r"):
                        return line - back
                if begin == self._start:
                    return 0
                window *= 4

    def _names(self) -> list[str]:
        return [f"c{i}" for i in range(self._width)]

    def _typed(self, offset: int, buf: bytearray, end: int) -> TypedChunk | Stop:
        """`buf[:end]` parsed into typed columns, or a Stop where it is not vouched for."""
        if not _plain(buf, end):
            return Stop(offset)
        data = memoryview(buf)[:end]
        wanted = {column: f"c{self._where[column]}" for column in self._types}
        try:
            table = pcsv.read_csv(
                pa.py_buffer(data),
                read_options=pcsv.ReadOptions(column_names=self._names()),
                parse_options=pcsv.ParseOptions(newlines_in_values=False),
                convert_options=pcsv.ConvertOptions(
                    include_columns=list(wanted.values()),
                    column_types={wanted[c]: t for c, t in self._types.items()},
                    null_values=[],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return Stop(offset)
        columns = {c: table.column(name).combine_chunks() for c, name in wanted.items()}
        if any(array.null_count for array in columns.values()):
            return Stop(offset)
        return TypedChunk(offset, data, columns)


class TypedJsonLines:
    """A JSON-lines trace whose records' fields are read as `schema` chunk by chunk (other
    fields are parsed, to be checked, and dropped)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self._schema = schema
        with path.open("rb") as f:
            self._start = len(_BOM) if f.read(len(_BOM)) == _BOM else 0

    def chunks(self) -> Generator[TypedChunk | Stop, None, None]:
        """The file's lines as TypedChunks, one record a line; a Stop in place of the first
        chunk that is not vouched for (and nothing after it)."""
        yield from _read_ahead(self.path, self._start, self._typed)

    def line_at(self, offset: int) -> int:
        """The 1-based line that starts at byte `offset` (the start of a line)."""
        return 1 + _newlines(self.path, self._start, offset)

    def _typed(self, offset: int, buf: bytearray, end: int) -> TypedChunk | Stop:
        """`buf[:end]` parsed into typed columns, or a Stop where it is not vouched for: it
        must be ASCII without lone CRs, each line an object (`{` first, no blank lines) and
        one record, with no nulls in the fields asked for, and each long line must decode
        in Python too."""
        if not end or int(np.frombuffer(buf, dtype=np.uint8, count=end).max()) >= 0x80:
            return Stop(offset)
        if buf.find(b"\r", 0, end) >= 0 and buf.count(b"\r", 0, end) != buf.count(b"\r\n", 0, end):
            return Stop(offset)
        data = memoryview(buf)[:end]
        chars = np.frombuffer(buf, dtype=np.uint8, count=end)
        ends = np.flatnonzero(chars == 10)
        starts = np.concatenate(([0], ends + 1))
        lengths = np.append(ends, end) - starts
        if chars[-1] == 10:  # no line after the last line feed
            starts, lengths = starts[:-1], lengths[:-1]
        if not (chars[starts] == _OPEN_BRACE).all() or _refused(data, starts, lengths):
            return Stop(offset)  # before pyarrow: a bare `null` or deep nesting crashes it
        try:
            table = pjson.read_json(
                pa.BufferReader(pa.py_buffer(data)),
                read_options=pjson.ReadOptions(block_size=max(1 << 20, int(lengths.max()) + 1)),
                parse_options=pjson.ParseOptions(
                    explicit_schema=self._schema,
                    unexpected_field_behavior="ignore",
                    newlines_in_values=False,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return Stop(offset)
        if table.num_rows != len(starts):
            return Stop(offset)
        columns = {name: table.column(name).combine_chunks() for name in self._schema.names}
        if any(_has_nulls(array) for array in columns.values()):
            return Stop(offset)
        return TypedChunk(offset, data, columns)


def _read_ahead(
    path: Path, start: int, typed: Callable[[int, bytearray, int], TypedChunk | Stop]
) -> Generator[TypedChunk | Stop, None, None]:
    """`typed` of each chunk of whole lines from byte `start`, the next chunk parsed while
    this one is used; ends after the first Stop."""
    with path.open("rb") as f, ThreadPoolExecutor(max_workers=1) as ahead:
        f.seek(start)
        pieces = _whole_lines(f, start, _batches.BATCH_BYTES)

        def parse_next() -> TypedChunk | Stop | None:
            piece = next(pieces, None)
            return None if piece is None else typed(*piece)

        pending = ahead.submit(parse_next)
        while (chunk := pending.result()) is not None:
            if isinstance(chunk, Stop):
                yield chunk
                return
            pending = ahead.submit(parse_next)
            yield chunk


def _refused(data: memoryview, starts: np.ndarray, lengths: np.ndarray) -> bool:
    """True when Python's json decoder refuses one of these lines (of a chunk's bytes) that
    is longer than LONG_LINE."""
    long = lengths > LONG_LINE
    for begin, length in zip(starts[long].tolist(), lengths[long].tolist(), strict=True):
        try:
            json.loads(bytes(data[begin : begin + length]))
        except (ValueError, RecursionError):
            return True
    return False


def _has_nulls(array: pa.Array) -> bool:
    """Nulls in an array or, for a list, in the items it holds."""
    if array.null_count:
        return True
    if isinstance(array, pa.ListArray):
        return bool(array.flatten().null_count)
    return False


def _plain(buf: bytearray, end: int) -> bool:
    """True when pyarrow's reading of `buf[:end]` can stand for the row reader's: no quotes
    (a quoted cell may hold a line break), no CR but in CRLF line ends, only ASCII (the row
    reader refuses text that is not UTF-8), and no `x` or `X` (pyarrow reads `0x1f` as 31)."""
    if any(buf.find(char, 0, end) >= 0 for char in (b'"', b"x", b"X")):
        return False
    if end and int(np.frombuffer(buf, dtype=np.uint8, count=end).max()) >= 0x80:
        return False
    return buf.find(b"\r", 0, end) < 0 or buf.count(b"\r", 0, end) == buf.count(b"\r\n", 0, end)


def _whole_lines(f: BufferedReader, offset: int, size: int) -> Iterator[tuple[int, bytearray, int]]:
    """(byte offset, buffer, end) of chunks of whole lines from `f`, `buf[:end]` (the last may
    lack its newline), read into two buffers in turn: a chunk's bytes stay as they are while
    the next is read, and are overwritten by the one after."""
    buffers = [bytearray(size), bytearray(size)]
    rest = b""
    turn = 0
    while True:
        buf = buffers[turn]
        if len(buf) < len(rest) + size:  # a line longer than a chunk: a larger buffer
            buf = buffers[turn] = bytearray(len(rest) + size)
        turn ^= 1
        buf[: len(rest)] = rest
        with memoryview(buf) as view:
            got = f.readinto(view[len(rest) : len(rest) + size])
        end = len(rest) + got
        if not got:
            if end:
                yield offset, buf, end
            return
        cut = buf.rfind(b"\n", 0, end) + 1
        if cut == 0:
            rest = bytes(buf[:end])
            continue
        rest = bytes(buf[cut:end])
        yield offset, buf, cut
        offset += cut


def _newlines(path: Path, begin: int, end: int) -> int:
    """How many line feeds the file holds from byte `begin` to `end`."""
    count = 0
    with path.open("rb") as f:
        f.seek(begin)
        left = end - begin
        while left > 0:
            block = f.read(min(_SCAN_BYTES, left))
            if not block:
                break
            count += int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) == 10))
            left -= len(block)
    return count
