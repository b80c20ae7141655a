"""Typed chunk readers: which chunks they vouch for, where they stop, and the lines they
count for the exact reader that goes on from there."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from harness.workload.formats import _batches
from harness.workload.formats._batches import csv_batches, numbers
from harness.workload.formats._typed import Stop, TypedChunk, TypedCsv, TypedJsonLines

HEADER = "t,n\n"
TYPES = {"t": pa.float64(), "n": pa.uint32()}


def _chunks(path: Path) -> list[TypedChunk | Stop]:
    return list(TypedCsv(path, ("t", "n"), TYPES).chunks())


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_batches, "BATCH_BYTES", 64)


def test_chunks_are_whole_lines_at_the_exact_readers_offsets(
    tmp_path: Path, small_chunks: None
) -> None:
    """The typed chunks start where the exact reader's batches do, so the reader that goes
    on from a Stop reads the same chunks as one that read the file from the start."""
    path = tmp_path / "t.csv"
    path.write_text(HEADER + "".join(f"{i}.5,{i}\n" for i in range(100)))
    chunks = _chunks(path)
    assert all(isinstance(c, TypedChunk) for c in chunks) and len(chunks) > 10
    typed = [c for c in chunks if isinstance(c, TypedChunk)]
    assert [int(v) for c in typed for v in numbers(c.columns["n"])] == list(range(100))
    reader = TypedCsv(path, ("t", "n"), TYPES)
    starts = [reader.line_at(c.offset) for c in typed]
    assert starts == [int(b.lines[0]) for b in csv_batches(path, ("t", "n"))]


@pytest.mark.parametrize(
    "odd",
    ['"1",2\n', "1,0x1f\n", "1,é\n", "1,2\r3,4\n", "1,\n", "1,2,3\n", "x,1\n"],
)
def test_a_chunk_not_vouched_for_stops_the_reading(
    tmp_path: Path, small_chunks: None, odd: str
) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i},{i}\n" for i in range(60)]
    rows[40] = odd
    path.write_text(HEADER + "".join(rows), newline="")
    chunks = _chunks(path)
    assert isinstance(chunks[-1], Stop)
    assert all(isinstance(c, TypedChunk) for c in chunks[:-1]) and len(chunks) > 2
    stop = chunks[-1]
    assert TypedCsv(path, ("t", "n"), TYPES).line_at(stop.offset) <= 42


def test_crlf_line_ends_are_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"t,n\r\n1,2\r\n\r\n3,4\r\n")
    (chunk,) = _chunks(path)
    assert isinstance(chunk, TypedChunk) and numbers(chunk.columns["n"]).tolist() == [2, 4]


def test_a_quoted_header_leaves_the_file_to_the_exact_reader(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('"t",n\n1,2\n')
    reader = TypedCsv(path, ("t", "n"), TYPES)
    assert not reader.readable and isinstance(next(iter(reader.chunks())), Stop)


def test_the_last_row_before_an_offset_skips_empty_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    text = HEADER + "1,1\n2,2\n\n\r\n\n3,3\n"
    path.write_text(text, newline="")
    reader = TypedCsv(path, ("t", "n"), TYPES)
    at = text.encode().index(b"3,3")
    assert reader.line_at(at) == 7
    assert reader.last_row_line(at) == 3
    assert reader.last_row_line(len(HEADER)) == 0  # no row before the first


def test_json_lines_are_typed_one_record_a_line(tmp_path: Path, small_chunks: None) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(b'{"a": %d, "b": "x"}\n' % i for i in range(30)))
    schema = pa.schema([("a", pa.int64())])
    chunks = list(TypedJsonLines(path, schema).chunks())
    assert all(isinstance(c, TypedChunk) for c in chunks) and len(chunks) > 3
    typed = [c for c in chunks if isinstance(c, TypedChunk)]
    assert [int(v) for c in typed for v in numbers(c.columns["a"])] == list(range(30))
    reader = TypedJsonLines(path, schema)
    assert [reader.line_at(c.offset) for c in typed][:2] == [1, 1 + len(typed[0])]


@pytest.mark.parametrize(
    "odd",
    [
        "",  # a blank line: the lines would not be the records
        "null",  # pyarrow's reader crashes on a bare null (and reads one after a record)
        " 5",
        '{"a": 1}{"a": 2}',  # two records on a line
        '{"a": null}',
        '{"b": 1}',  # a missing field
        '{"a": 1.5}',
        '{"a": 1, "x": "é"}',
        '{"a": 1, "x": ' + "[" * 1200 + "]" * 1200 + "}",  # deeper than Python decodes
        '{"a": 1}\r{"a": 2}',
    ],
)
def test_a_json_chunk_not_vouched_for_stops_the_reading(
    tmp_path: Path, small_chunks: None, odd: str
) -> None:
    path = tmp_path / "t.jsonl"
    lines = [f'{{"a": {i}}}' for i in range(40)]
    lines[30] = odd
    path.write_text("".join(line + "\n" for line in lines), newline="")
    chunks = list(TypedJsonLines(path, pa.schema([("a", pa.int64())])).chunks())
    assert isinstance(chunks[-1], Stop) and len(chunks) > 2
