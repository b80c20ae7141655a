"""Flat traces read in batches through pyarrow: CSV and JSON-lines files cut into chunks of
whole lines (so every row keeps its line number), column parsers that validate millions of
cells at once, and the stream that gives a loader's Sessions or its requests in columns from
the same parsing. A chunk pyarrow cannot read as plain rows (blank lines, quotes, bytes that
are not UTF-8, a row of the wrong width) is read again row by row, and a bad cell is replayed
through the loader's own row check, so errors name the file, line and field as before."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from harness.errors import TraceFormatError
from harness.workload.formats._common import CsvRows, csv_count, csv_number, header_text
from harness.workload.limits import MAX_TOKENS
from harness.workload.model import Session
from harness.workload.stats import RequestBatch

BATCH_BYTES = 8 << 20
"""Bytes of a file parsed at once: about 200,000 Azure rows, a few MB of Arrow columns."""
ROWS_PER_BATCH = 100_000
"""Rows per batch where a file is read row by row."""
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class CsvBatch:
    """Rows of a CSV trace: the cells of each column asked for (as text) and each row's line."""

    columns: dict[str, pa.StringArray]
    lines: np.ndarray
    """The 1-based line of each row (int64)."""

    def __len__(self) -> int:
        return len(self.lines)

    def cell(self, column: str, row: int) -> str:
        """One cell's text, for a row check or an error message."""
        return str(self.columns[column][row].as_py())


def csv_batches(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str] = (),
    chunk_bytes: int = 0,
    start: tuple[int, int] | None = None,
) -> Iterator[CsvBatch]:
    """Stream a CSV file's non-blank data rows in batches of the `required` columns (the header
    must name each) and the `optional` ones it names, with the checks of `CsvRows`: a missing
    column, a row of the wrong width and text that is not UTF-8 are errors naming the line.
    `start` (a byte offset at the start of a line, and that line's number) reads on from
    there, as a reader that gave up part-way does."""
    chunk_bytes = chunk_bytes or BATCH_BYTES
    with path.open("rb") as f, ThreadPoolExecutor(max_workers=1) as ahead:
        header = read_header(path, f, required)
        if header is None:  # lone CR line ends: the row reader, as before, for the whole file
            yield from _csv_rows_batches(path, required, optional)
            return
        names, line = header
        where = {n: i for i, n in enumerate(names)}
        wanted = {c: where[c] for c in (*required, *optional) if c in where}
        first_line = line + 1
        if start is not None:
            f.seek(start[0])
            first_line = start[1]
        chunks = _line_chunks(f, first_line, chunk_bytes)

        def parse_next() -> tuple[tuple[int, int, bytes, int], CsvBatch | bool | None] | None:
            """The next chunk, parsed by pyarrow where it can be (False: read on by rows)."""
            item = next(chunks, None)
            if item is None:
                return None
            chunk, lines = item[2], item[3]
            if b'"' in chunk or (b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n")):
                return item, False  # a quoted cell may hold a line break, across chunks
            return item, _arrow_batch(chunk, item[0], lines, len(names), wanted)

        pending = ahead.submit(parse_next)  # the next chunk is read and parsed meanwhile
        while (done := pending.result()) is not None:
            (start_line, offset, chunk, _), batch = done
            if batch is False:
                f.seek(offset)
                yield from _row_batches(path, f, start_line, len(names), wanted)
                return
            pending = ahead.submit(parse_next)
            if not isinstance(batch, CsvBatch):
                batch = _chunk_rows(path, chunk, start_line, len(names), wanted)
            if len(batch):
                yield batch


def read_header(path: Path, f: IO[bytes], required: Sequence[str]) -> tuple[list[str], int] | None:
    """The header's names (stripped) and line, past blank rows; None when the file ends its
    lines with a lone CR (left to the row reader, which splits on it)."""
    line = 0
    while True:
        raw = f.readline()
        if not raw:
            raise TraceFormatError(path, max(line, 1), None, "empty file: no CSV header")
        line += 1
        if line == 1:
            raw = raw.removeprefix(_BOM)
        if b"\r" in raw.removesuffix(b"\r\n") or b'"' in raw:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise TraceFormatError(path, line, None, f"unreadable CSV: {err}") from None
        row = next(csv.reader([text]), [])
        if any(cell.strip() for cell in row):
            break
    names = [cell.strip() for cell in row]
    for column in required:
        if column not in names:
            raise TraceFormatError(
                path, line, column, f"missing column (header has {header_text(names)})"
            )
    return names, line


def _line_chunks(f: IO[bytes], first_line: int, size: int) -> Iterator[tuple[int, int, bytes, int]]:
    """Yield (line of its first row, byte offset, bytes, lines) for chunks of whole lines
    (the file's last line may lack its newline)."""
    line = first_line
    offset = f.tell()
    rest = b""
    while True:
        block = f.read(size)
        data = rest + block
        if not block:
            if data:
                yield line, offset, data, data.count(b"\n") + (not data.endswith(b"\n"))
            return
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        chunk, rest = data[:cut], data[cut:]
        lines = chunk.count(b"\n")
        yield line, offset, chunk, lines
        line += lines
        offset += cut


def _arrow_batch(
    chunk: bytes, first_line: int, lines: int, width: int, wanted: dict[str, int]
) -> CsvBatch | None:
    """The chunk parsed by pyarrow, or None unless each of its `lines` is one well-formed row
    whose first wanted cell starts with a visible ASCII character (pyarrow skips empty lines
    and refuses ragged rows, so lines would not be known; a row of blank cells is skipped)."""
    if not chunk.isascii():
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return None
    names = [f"c{i}" for i in range(width)]
    keep = {column: names[i] for column, i in wanted.items()}
    try:
        table = pcsv.read_csv(
            pa.py_buffer(chunk),
            read_options=pcsv.ReadOptions(column_names=names),
            parse_options=pcsv.ParseOptions(newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                include_columns=list(dict.fromkeys(keep.values())),
                column_types=dict.fromkeys(keep.values(), pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != lines:
        return None
    columns = {column: table.column(name).combine_chunks() for column, name in keep.items()}
    if columns and _maybe_blank(next(iter(columns.values()))):
        return None
    return CsvBatch(columns, np.arange(first_line, first_line + lines, dtype=np.int64))


def _maybe_blank(cells: pa.StringArray) -> bool:
    """True when a cell is empty or starts with a byte that may begin white space (a row of
    blank cells must be skipped, which the row reader does)."""
    if len(cells) == 0:
        return False
    offsets = cell_offsets(cells)
    if (np.diff(offsets) == 0).any():
        return True
    first = np.frombuffer(cells.buffers()[2], dtype=np.uint8)[offsets[:-1]]
    return bool(((first <= 32) | (first >= 128)).any())


def _chunk_rows(
    path: Path, chunk: bytes, first_line: int, width: int, wanted: dict[str, int]
) -> CsvBatch:
    """A chunk read row by row, as `CsvRows` reads a file: blank rows skipped, a ragged row
    or text that is not UTF-8 an error naming its line."""
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + chunk.count(b"\n", 0, err.start)
        raise TraceFormatError(path, line, None, f"unreadable CSV: {err}") from None
    batches = list(_row_batches(path, io.BytesIO(chunk), first_line, width, wanted))
    if not batches:
        return CsvBatch({c: strings([]) for c in wanted}, np.empty(0, np.int64))
    if len(batches) == 1:
        return batches[0]
    return CsvBatch(
        {c: pa.concat_arrays([b.columns[c] for b in batches]) for c in wanted},
        np.concatenate([b.lines for b in batches]),
    )


def _row_batches(
    path: Path, f: IO[bytes], first_line: int, width: int, wanted: dict[str, int]
) -> Iterator[CsvBatch]:
    """Data rows of `width` cells read by Python's csv module from `f` (its first line is
    `first_line`), in batches of the `wanted` columns (by position)."""
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    reader = csv.reader(text)
    cells: dict[str, list[str]] = {c: [] for c in wanted}
    lines: list[int] = []
    while True:
        try:
            row = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as err:
            line = first_line + reader.line_num
            raise TraceFormatError(path, line, None, f"unreadable CSV: {err}") from None
        if row is None:
            break
        line = first_line + reader.line_num - 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            raise TraceFormatError(path, line, None, f"expected {width} fields, got {len(row)}")
        for column, i in wanted.items():
            cells[column].append(row[i])
        lines.append(line)
        if len(lines) >= ROWS_PER_BATCH:
            yield _batch_of(cells, lines)
            cells = {c: [] for c in wanted}
            lines = []
    text.detach()
    if lines:
        yield _batch_of(cells, lines)


def _csv_rows_batches(
    path: Path, required: Sequence[str], optional: Sequence[str]
) -> Iterator[CsvBatch]:
    """A whole file read by `CsvRows` (header and rows), in batches."""
    rows = CsvRows(path, required)
    cells: dict[str, list[str]] = {}
    lines: list[int] = []
    for line, row in rows.rows():
        if not cells:
            cells = {c: [] for c in (*required, *optional) if rows.has(c)}
        for column, values in cells.items():
            values.append(row[rows.columns[column]])
        lines.append(line)
        if len(lines) >= ROWS_PER_BATCH:
            yield _batch_of(cells, lines)
            cells = {c: [] for c in cells}
            lines = []
    if lines:
        yield _batch_of(cells, lines)


def _batch_of(cells: dict[str, list[str]], lines: list[int]) -> CsvBatch:
    """A CsvBatch of rows read by Python."""
    columns = {c: strings(values) for c, values in cells.items()}
    return CsvBatch(columns, np.array(lines, dtype=np.int64))


# --- column parsers ---------------------------------------------------------------------


def count_cells(
    path: Path, batch: CsvBatch, column: str, maximum: int = MAX_TOKENS
) -> tuple[np.ndarray, np.ndarray]:
    """A column of token counts as `csv_count` reads each cell: int64 values and a mask of
    the cells it refuses (their values 0). Plain digits are converted at once; any other
    cell (`12.0`, ` 12`) goes through `csv_count` itself."""
    cells = batch.columns[column]
    short = np.diff(cell_offsets(cells)) <= len(str(maximum))
    plain = flags(pc.ascii_is_decimal(cells)) & short
    if plain.all():
        values = numbers(pc.cast(cells, pa.int64()))
        return values, values > maximum
    values = np.zeros(len(cells), dtype=np.int64)
    values[plain] = numbers(pc.cast(cells.filter(booleans(plain)), pa.int64()))
    bad = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(~plain).tolist():
        try:
            values[i] = csv_count(path, int(batch.lines[i]), column, batch.cell(column, i))
        except TraceFormatError:
            bad[i] = True
    bad |= values > maximum
    return values, bad


_DECIMAL = r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?$"


def number_cells(
    path: Path, batch: CsvBatch, column: str, maximum: float
) -> tuple[np.ndarray, np.ndarray]:
    """A column of times as `csv_number` reads each cell: float64 values and a mask of the
    cells it refuses. Plain decimals are converted at once (correctly rounded, as `float`);
    any other cell goes through `csv_number` itself."""
    cells = batch.columns[column]
    plain_cells = pc.match_substring_regex(cells, _DECIMAL)
    plain = flags(plain_cells)
    values = np.zeros(len(cells), dtype=np.float64)
    values[plain] = numbers(pc.cast(cells.filter(plain_cells), pa.float64()))
    bad = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(~plain).tolist():
        try:
            values[i] = csv_number(
                path, int(batch.lines[i]), column, batch.cell(column, i), maximum
            )
        except TraceFormatError:
            bad[i] = True
    bad |= ~np.isfinite(values) | (values > maximum)
    return values, bad


def first_bad(*masks: np.ndarray) -> int | None:
    """The first row any mask marks, or None."""
    bad = masks[0].copy()
    for mask in masks[1:]:
        bad |= mask
    return int(np.argmax(bad)) if bad.any() else None


# --- the stream ---------------------------------------------------------------------------


class ColumnarTrace:
    """A loader's Sessions, or its requests in columns (the `ColumnarSessions` of
    `workload_stats`): `sessions` and `requests` each start a parse of their own, so the sums
    can take a faster reader than the Sessions, which need every row's line."""

    def __init__(
        self,
        sessions: Callable[[], Iterator[Session]],
        requests: Callable[[], Iterator[RequestBatch]],
    ) -> None:
        self._sessions = sessions
        self._requests = requests
        self._iterator: Iterator[Session] | None = None

    def __iter__(self) -> Iterator[Session]:
        return self

    def __next__(self) -> Session:
        if self._iterator is None:
            self._iterator = self._sessions()
        return next(self._iterator)

    def request_batches(self) -> Iterator[RequestBatch]:
        """The requests in columns; refused once Sessions have been taken (they would be
        counted twice)."""
        if self._iterator is not None:
            raise RuntimeError("request_batches after iterating the Sessions")
        return self._requests()


def numbers(array: pa.Array, *, nulls: bool = False) -> np.ndarray:
    """An Arrow array of integers, floats or timestamps as a numpy view of its buffer (a
    timestamp as its int64 count; pyarrow's own `to_numpy` imports pandas). Nulls are
    refused, or with `nulls` left as whatever their slots hold."""
    kind = array.type
    if array.null_count and not nulls:
        raise ValueError(f"a {kind} array with nulls has no numpy view")
    if pa.types.is_timestamp(kind):
        dtype = np.dtype(np.int64)
    elif pa.types.is_floating(kind):
        dtype = np.dtype(f"f{kind.bit_width // 8}")
    elif pa.types.is_integer(kind):
        sign = "i" if pa.types.is_signed_integer(kind) else "u"
        dtype = np.dtype(f"{sign}{kind.bit_width // 8}")
    else:
        raise TypeError(f"no numpy view of a {kind} array")
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


def cell_offsets(cells: pa.StringArray | pa.BinaryArray) -> np.ndarray:
    """Where each cell of a string (or binary) array starts in its data buffer, and where the
    last ends: len(cells) + 1 int32 offsets."""
    return np.frombuffer(
        cells.buffers()[1], dtype=np.int32, count=len(cells) + 1, offset=cells.offset * 4
    )


def flags(array: pa.BooleanArray) -> np.ndarray:
    """An Arrow boolean array without nulls as a numpy bool array."""
    if array.null_count:
        raise ValueError("a boolean array with nulls has no numpy flags")
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    bits = np.frombuffer(array.buffers()[1], dtype=np.uint8)
    unpacked = np.unpackbits(bits, count=array.offset + len(array), bitorder="little")
    return unpacked[array.offset :].astype(bool)


def booleans(mask: np.ndarray) -> pa.BooleanArray:
    """A numpy bool array as an Arrow boolean array (`pa.array` imports pandas)."""
    bits = np.packbits(mask.astype(bool), bitorder="little")
    array: pa.BooleanArray = pa.Array.from_buffers(
        pa.bool_(), len(mask), [None, pa.py_buffer(bits)]
    )
    return array


def integers(values: np.ndarray) -> pa.Int64Array:
    """A numpy integer array as an Arrow int64 array (`pa.array` imports pandas)."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    array: pa.Int64Array = pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])
    return array


def strings(texts: Sequence[str]) -> pa.StringArray:
    """An Arrow string array of Python strings, built from its buffers (`pa.array` imports
    pandas)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    array = pa.Array.from_buffers(
        pa.large_string(),
        len(encoded),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
    )
    cells: pa.StringArray = array.cast(pa.string())
    return cells
