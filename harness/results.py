"""The only code that reads and writes a run directory `results/<run>/`.

Layout: `manifest.json` (what ran), `requests.partial.jsonl` (an append-only journal while
the run is in flight), `requests.parquet` (the finished request table), `summary.json`
(metrics) and any extra JSON files a run chooses to write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import ResultsError, RunExistsError
from harness.records import TABLE_COLUMN_KINDS, ColumnKind, RequestRecord, record_to_row
from harness.summary import Summary

MANIFEST_FILE = "manifest.json"
JOURNAL_FILE = "requests.partial.jsonl"
REQUESTS_FILE = "requests.parquet"
SUMMARY_FILE = "summary.json"
SERVER_LOG_FILE = "server.log"
"""The output of a server the harness started for the run (a sweep's is in the sweep's
folder); not a run file: a replacing run's server writes it afresh before the run begins."""
SAMPLES_TABLE = "telemetry"
"""The telemetry samples: journalled while the run goes on, with columns that depend on the
host's sources (so no fixed schema), then written as telemetry.parquet."""


def read_json_file(path: Path) -> Any:
    """Parse one JSON file, mapping failures to ResultsError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: unreadable JSON: {exc}") from exc


def journal_file(table: str) -> str:
    """File name of a table's append-only journal while the run is in flight."""
    return f"{table}.partial.jsonl"


def table_file(table: str) -> str:
    """File name of a finished table."""
    return f"{table}.parquet"


_RUN_FILES = (
    MANIFEST_FILE,
    SUMMARY_FILE,
    journal_file(SAMPLES_TABLE),
    table_file(SAMPLES_TABLE),
    *(journal_file(t) for t in TABLE_COLUMN_KINDS),
    *(table_file(t) for t in TABLE_COLUMN_KINDS),
)

_ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "int": pa.int64(),
    "int_list": pa.list_(pa.int64()),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
}


def table_schema(table: str) -> pa.Schema:
    """The explicit Arrow schema of a run table, from its column kinds in records.py."""
    kinds = TABLE_COLUMN_KINDS[table]
    return pa.schema([pa.field(n, _ARROW_TYPES[k], nullable=True) for n, k in kinds.items()])


REQUEST_SCHEMA: pa.Schema = table_schema("requests")
"""The explicit schema of `requests.parquet`, in `REQUEST_COLUMNS` order."""

_PANDAS_TYPES: dict[pa.DataType, Any] = {
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.string(): pd.StringDtype(),
}


def _to_jsonable(obj: Any) -> Any:
    """A copy of `obj` that `json.dumps(allow_nan=False)` accepts; NaN/inf become None."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _to_jsonable(dataclasses.asdict(obj))
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return _to_jsonable(item())
    if obj is pd.NA:
        return None
    raise TypeError(f"cannot write {type(obj).__name__} to JSON: {obj!r}")


_JOURNAL_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY


def _journal_default(obj: Any) -> Any:
    """What orjson does not write itself (paths, pandas NA, dataclasses), made plain."""
    return _to_jsonable(obj)


def journal_line(row: Mapping[str, Any]) -> bytes:
    """One journal line: the row as JSON (NaN and infinities null), newline-terminated."""
    return orjson.dumps(row, default=_journal_default, option=_JOURNAL_OPTIONS)


def _atomic_write_text(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) to `path` via a temp file and os.replace: never half-written."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, obj: Any) -> None:
    """Pretty JSON written atomically."""
    text = json.dumps(_to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    _atomic_write_text(path, text)


def _check_name(name: str) -> None:
    """Refuse extra-file names that would escape the run dir or clobber the core files."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ResultsError(f"invalid results file name {name!r}: use a plain file name")
    if name in _RUN_FILES:
        raise ResultsError(f"{name!r} is a core run file; use the dedicated method")


JOURNAL_BATCH_ROWS = 2_000
"""Journal rows parsed into Python at a time before they become Arrow, so sealing a long
run's tables holds one small batch as Python objects, never the whole run."""

ROW_GROUP_ROWS = 64_000
"""Rows per Parquet row group written from a journal (Arrow batches gathered to this size)."""


def _journal_batches(
    path: Path, batch_rows: int = JOURNAL_BATCH_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """Rows of a journal, a batch at a time; a torn last line (killed mid-write) is dropped,
    other bad lines raise."""
    batch: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
                if not line.endswith(b"\n"):
                    break  # the torn tail of a killed writer
                raise ResultsError(f"{path}:{lineno}: corrupt journal line: {exc}") from None
            if not isinstance(row, dict):
                raise ResultsError(f"{path}:{lineno}: journal line is not a JSON object")
            batch.append(row)
            if len(batch) >= batch_rows:
                yield batch
                batch = []
    if batch:
        yield batch


def _rows_to_table(
    rows: list[dict[str, Any]], source: Path, schema: pa.Schema = REQUEST_SCHEMA
) -> pa.Table:
    """Rows as an Arrow table with the table's schema; missing columns become null."""
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResultsError(f"{source}: rows do not fit the table's schema: {exc}") from exc


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow run table as pandas with nullable Int64/boolean/string columns."""
    return _table_to_frame(table)


def _table_to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow request table as pandas with nullable Int64/boolean/string columns."""
    frame: pd.DataFrame = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    return frame


def _samples_journal_frame(journal: Path) -> pd.DataFrame:
    """The telemetry journal as one frame sorted by time, every row holding every column
    (missing as null), built a batch of rows at a time."""
    parts = [pd.DataFrame.from_records(rows) for rows in _journal_batches(journal)]
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True, sort=False)
    if "t_ns" in frame.columns:
        frame = frame.sort_values("t_ns", kind="stable", ignore_index=True)
    return frame


def write_run_file(run_dir: Path, name: str, text: str | bytes) -> Path:
    """Atomically add a file (report.md, a PNG figure) to an existing run dir; core files
    refused."""
    _check_name(name)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: run directory not found")
    path = run_dir / name
    _atomic_write_text(path, text)
    return path


def table_frame(table: str, records: Iterable[object]) -> pd.DataFrame:
    """In-memory records of a run table as the DataFrame `RunReader.table` would give."""
    columns = tuple(TABLE_COLUMN_KINDS[table])
    rows = [_to_jsonable(record_to_row(r, columns)) for r in records]
    return _table_to_frame(_rows_to_table(rows, Path(f"<{table}>"), table_schema(table)))


def requests_frame(records: Iterable[RequestRecord]) -> pd.DataFrame:
    """In-memory records as the same DataFrame (columns, dtypes) that `RunReader.requests` gives."""
    return table_frame("requests", records)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Write a Parquet file atomically (temp file in the same dir, then rename)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _journal_to_parquet(journal: Path, path: Path, schema: pa.Schema) -> None:
    """Write a journal's rows as a Parquet file with `schema`, a batch at a time, atomically."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp_name, schema) as out:
            pending: list[pa.Table] = []
            rows_pending = 0
            wrote = False
            for rows in _journal_batches(journal):
                pending.append(_rows_to_table(rows, journal, schema))
                rows_pending += len(rows)
                if rows_pending >= ROW_GROUP_ROWS:
                    out.write_table(pa.concat_tables(pending))
                    pending, rows_pending, wrote = [], 0, True
            if pending or not wrote:
                out.write_table(pa.concat_tables(pending) if pending else schema.empty_table())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def check_run_dir(run_dir: Path, *, overwrite: bool = False) -> list[str]:
    """The run files already in `run_dir` (a replacing run removes them); ResultsError where
    no run can be written there: not a directory, or a run there and no `overwrite`."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: exists and is not a directory")
    existing = [n for n in _RUN_FILES if (run_dir / n).exists()]
    if existing and not overwrite:
        raise RunExistsError(run_dir, existing)
    return existing


class RunWriter:
    """Writes one run directory: manifest, a crash-safe request journal, then Parquet + summary."""

    def __init__(self, out_dir: Path, *, overwrite: bool = False) -> None:
        self.run_dir = Path(out_dir)
        existing = check_run_dir(self.run_dir, overwrite=overwrite)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(
                f"{self.run_dir}: cannot create the run directory: {exc.strerror or exc}"
            ) from None
        for name in existing:
            (self.run_dir / name).unlink()
        self._journal_path = self.run_dir / JOURNAL_FILE
        # Created at once so a run killed before its first append is still recoverable.
        self._journal: IO[bytes] | None = self._journal_path.open("ab")
        self._other_journals: dict[str, IO[bytes]] = {}
        self._samples: IO[bytes] | None = None
        self._samples_lock = threading.Lock()
        self._samples_closed = False
        self._finalized = False
        self._sealed = False

    @property
    def journal_path(self) -> Path:
        """Path of the append-only request journal."""
        return self._journal_path

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        """Write manifest.json (pretty, atomic) and return its path."""
        path = self.run_dir / MANIFEST_FILE
        _atomic_write_json(path, manifest)
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        """Write an extra JSON file (e.g. `telemetry_summary.json`) atomically into the run dir."""
        _check_name(name)
        path = self.run_dir / name
        _atomic_write_json(path, obj)
        return path

    def append(self, records: Iterable[RequestRecord]) -> int:
        """Append records to the journal and flush, so a hard kill loses none of them."""
        if self._journal is None:
            raise ResultsError(f"{self.run_dir}: append after finalize/close")
        lines = [journal_line(record_to_row(r)) for r in records]
        if lines:
            self._journal.write(b"".join(lines))
            self._journal.flush()
        return len(lines)

    def write_frame(self, name: str, frame: pd.DataFrame) -> Path:
        """Write a derived table (e.g. the per-step latency split) as `name`.parquet."""
        _check_name(name)
        if name in TABLE_COLUMN_KINDS:
            raise ResultsError(f"{name!r} is a journalled run table, not a derived one")
        path = self.run_dir / table_file(name)
        _write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path)
        return path

    def append_rows(self, table: str, records: Iterable[object]) -> int:
        """Append step or tool records to that table's journal and flush."""
        if table == "requests" or table not in TABLE_COLUMN_KINDS:
            raise ResultsError(f"{self.run_dir}: no appendable table {table!r}")
        if self._journal is None:
            raise ResultsError(f"{self.run_dir}: append after finalize/close")
        journal = self._other_journals.get(table)
        if journal is None:
            journal = (self.run_dir / journal_file(table)).open("ab")
            self._other_journals[table] = journal
        columns = tuple(TABLE_COLUMN_KINDS[table])
        lines = [journal_line(record_to_row(r, columns)) for r in records]
        if lines:
            journal.write(b"".join(lines))
            journal.flush()
        return len(lines)

    def append_samples(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append telemetry samples to their journal and flush; safe from any thread. Samples
        that arrive after the tables were sealed are dropped (the run is over)."""
        lines = [journal_line(row) for row in rows]
        with self._samples_lock:
            if self._samples_closed or not lines:
                return 0
            if self._samples is None:
                self._samples = (self.run_dir / journal_file(SAMPLES_TABLE)).open("ab")
            self._samples.write(b"".join(lines))
            self._samples.flush()
        return len(lines)

    def seal_tables(self) -> None:
        """Close the journals and write each table's Parquet file from its journal (the
        journals stay until `finalize`, so a crash in between loses nothing)."""
        if self._sealed:
            return
        self._close_journal()
        for table in TABLE_COLUMN_KINDS:
            journal = self.run_dir / journal_file(table)
            if journal.exists():
                _journal_to_parquet(journal, self.run_dir / table_file(table), table_schema(table))
        samples = self.run_dir / journal_file(SAMPLES_TABLE)
        if samples.exists():
            frame = _samples_journal_frame(samples)
            if not frame.empty:
                _write_parquet(
                    pa.Table.from_pandas(frame, preserve_index=False),
                    self.run_dir / table_file(SAMPLES_TABLE),
                )
        self._sealed = True

    def finalize(self, summary: Summary) -> Path:
        """Seal the tables (Parquet from the journals), write summary.json (the schema's JSON
        form), then drop the journals. Returns the path of requests.parquet."""
        if self._finalized:
            raise ResultsError(f"{self.run_dir}: run already finalized")
        self.seal_tables()
        _atomic_write_json(self.run_dir / SUMMARY_FILE, summary.to_json())
        for table in (*TABLE_COLUMN_KINDS, SAMPLES_TABLE):
            (self.run_dir / journal_file(table)).unlink(missing_ok=True)
        self._finalized = True
        return self.run_dir / REQUESTS_FILE

    def close(self) -> None:
        """Close the journal without finalizing (the run stays recoverable)."""
        self._close_journal()

    def _close_journal(self) -> None:
        """Flush, fsync and close the journal files if open."""
        with self._samples_lock:
            self._samples_closed = True
            if self._samples is not None:
                self._samples.flush()
                os.fsync(self._samples.fileno())
                self._samples.close()
                self._samples = None
        for journal in self._other_journals.values():
            journal.flush()
            os.fsync(journal.fileno())
            journal.close()
        self._other_journals.clear()
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())
            self._journal.close()
            self._journal = None

    def __enter__(self) -> Self:
        """Use as a context manager; leaving closes the journal (it does not finalize)."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the journal."""
        self.close()


class RunReader:
    """Reads a run directory written by `RunWriter`, including one killed before finalize."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ResultsError(f"{self.run_dir}: run directory not found")
        manifest_path = self.run_dir / MANIFEST_FILE
        if not manifest_path.is_file():
            raise ResultsError(f"{self.run_dir}: missing {MANIFEST_FILE}")
        manifest = read_json_file(manifest_path)
        if not isinstance(manifest, dict):
            raise ResultsError(f"{manifest_path}: not a JSON object")
        self._manifest: dict[str, Any] = manifest

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's manifest."""
        return self._manifest

    @property
    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None when the run was not finalized."""
        path = self.run_dir / SUMMARY_FILE
        if not path.is_file():
            return None
        summary = read_json_file(path)
        if not isinstance(summary, dict):
            raise ResultsError(f"{path}: not a JSON object")
        return summary

    @property
    def recovered(self) -> bool:
        """True when requests come from the journal because requests.parquet was never written."""
        return (
            not (self.run_dir / REQUESTS_FILE).is_file() and (self.run_dir / JOURNAL_FILE).is_file()
        )

    def requests(self) -> pd.DataFrame:
        """The request table (REQUEST_COLUMNS; nullable Int64/boolean/string, lists for chunks)."""
        return self.table("requests")

    def has_table(self, table: str) -> bool:
        """Whether the run wrote this table (finished or as a journal)."""
        return any((self.run_dir / f).is_file() for f in (table_file(table), journal_file(table)))

    def table(self, table: str) -> pd.DataFrame:
        """A run table by name (requests, steps, tools), from Parquet or a killed run's journal."""
        return _table_to_frame(self.arrow(table))

    def arrow(self, table: str, columns: Sequence[str] | None = None) -> pa.Table:
        """A run table as Arrow (columns stay columnar: a long run's chunk lists are never
        Python objects), from Parquet or a killed run's journal; `columns` reads only those."""
        if table not in TABLE_COLUMN_KINDS:
            raise ResultsError(f"no run table named {table!r}")
        schema = table_schema(table)
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        parquet_path = self.run_dir / table_file(table)
        if parquet_path.is_file():
            try:
                # Reading by schema reads only its columns; one an older run lacks is null.
                arrow: pa.Table = pq.read_table(parquet_path, schema=schema)
                return arrow
            except (OSError, pa.ArrowException) as exc:
                raise ResultsError(f"{parquet_path}: unreadable: {exc}") from exc
        journal_path = self.run_dir / journal_file(table)
        if journal_path.is_file():
            batches = [
                _rows_to_table(rows, journal_path, schema)
                for rows in _journal_batches(journal_path)
            ]
            return pa.concat_tables(batches) if batches else schema.empty_table()
        raise ResultsError(f"{self.run_dir}: missing {table_file(table)} and {journal_file(table)}")

    def frame(self, name: str) -> pd.DataFrame | None:
        """A derived table written with `RunWriter.write_frame` or the telemetry samples (from
        their journal where the run did not finish), None if the run has none."""
        _check_name(name)
        path = self.run_dir / table_file(name)
        journal = self.run_dir / journal_file(name)
        if not path.is_file() and name == SAMPLES_TABLE and journal.is_file():
            frame = _samples_journal_frame(journal)
            return None if frame.empty else frame
        if not path.is_file():
            return None
        try:
            return _table_to_frame(pq.read_table(path))
        except (OSError, pa.ArrowException) as exc:
            raise ResultsError(f"{path}: unreadable: {exc}") from exc

    def read_json(self, name: str) -> Any:
        """An extra JSON file written with `RunWriter.write_json`."""
        _check_name(name)
        path = self.run_dir / name
        if not path.is_file():
            raise ResultsError(f"{self.run_dir}: missing {name}")
        return read_json_file(path)
