"""Fuzzing every trace loader: any file yields sessions within the bounds of
harness.workload.limits, or raises TraceFormatError naming the file and a line, never any
other exception. The crash findings are kept as explicit regression examples."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from fuzz_inputs import DEEP, FUZZ, NASTY_NUMBERS, NASTY_TEXT, json_values, mutated, texts
from hypothesis import example, given
from hypothesis import strategies as st
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from harness.errors import ConfigError, TraceFormatError
from harness.workload.formats import iter_trace
from harness.workload.limits import MAX_HASH_ID, MAX_TOKENS
from harness.workload.model import Session
from harness.workload.source import sessions_from_path
from harness.workload.stats import ColumnarSessions, workload_stats
from harness.workload.tokenizer import TokenSpace

ORDERED = ("mooncake", "azure", "burstgpt")
"""Formats whose sessions come out in time order (the file must be sorted)."""


def _token_space() -> TokenSpace:
    """A real `tokenizers` word-level tokenizer (the vendor code the TypeError came from)."""
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    return TokenSpace("words", np.arange(3, dtype=np.int64), 3, tok)


SPACE = _token_space()


@pytest.fixture(scope="module")
def trace_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traces")


def _write(folder: Path, name: str, text: str) -> Path:
    """Write text as UTF-8; a lone surrogate becomes bytes that are not UTF-8."""
    path = folder / name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path


def _check_sessions(sessions: Iterable[Session], fmt: str) -> None:
    """What every loaded session must satisfy, and finite stats that JSON can hold."""
    kept: list[Session] = []
    for s in sessions:
        kept.append(s)
        s.session_id.encode("utf-8")
        assert math.isfinite(s.start_ms) and s.start_ms >= 0
        assert all(n <= MAX_TOKENS for n in s.input_lengths())
        for step in s.steps:
            for n in (step.new_input_tokens, step.output_tokens):
                assert type(n) is int and 0 <= n <= MAX_TOKENS
            assert math.isfinite(step.think_ms) and step.think_ms >= 0
            assert step.offset_ms is None or math.isfinite(step.offset_ms)
            for h in step.hash_ids or ():
                assert type(h) is int and 0 <= h <= MAX_HASH_ID
            for tool in step.tools:
                assert math.isfinite(tool.duration_ms)
    if fmt in ORDERED:
        starts = [s.start_ms for s in kept]
        assert starts == sorted(starts)
    json.dumps(workload_stats(kept).to_json_dict(), allow_nan=False)


def _outcome(read: Callable[[], object]) -> object:
    """What reading gives: its value, or the text of its TraceFormatError."""
    try:
        return read()
    except TraceFormatError as err:
        return f"error: {err}"


def _load_or_name_the_line(path: Path, fmt: str) -> None:
    """Load `path` in format `fmt`, then by detection: sessions, or an error naming the file;
    a trace summed from its columns gives its Sessions' sums, or the same error."""
    lines = path.read_bytes().count(b"\n") + 1
    if isinstance(iter_trace(path, fmt, token_counter=SPACE), ColumnarSessions):
        columns = _outcome(lambda: workload_stats(iter_trace(path, fmt, token_counter=SPACE)))
        rows = _outcome(lambda: workload_stats(list(iter_trace(path, fmt, token_counter=SPACE))))
        assert columns == rows
    try:
        _check_sessions(iter_trace(path, fmt, token_counter=SPACE), fmt)
    except TraceFormatError as err:
        assert err.path == path and 1 <= err.line <= lines, (err.line, lines)
        assert str(err).startswith(f"{path}:{err.line}:")
        str(err).encode("utf-8")  # printable: no lone surrogate in the message
    try:
        _check_sessions(sessions_from_path(path, None, token_counter=SPACE), fmt)
    except TraceFormatError as err:
        assert err.path == path and 1 <= err.line <= lines
    except ConfigError as err:  # the format could not be told from the first line
        assert str(err).startswith(f"{path}:")


# --- JSON-lines formats: Mooncake and native sessions -------------------------------------

MOONCAKE = {"timestamp": 10, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}
SESSION = {
    "session_id": "a",
    "start_ms": 0,
    "metadata": {"team": "red"},
    "steps": [
        {
            "new_input_tokens": 600,
            "output_tokens": 10,
            "hash_ids": [7, 8],
            "tools": [{"kind": "parse", "duration_ms": 5, "size": 3, "parallel_group": 0}],
        },
        {"new_input_tokens": 4, "output_tokens": 1, "think_ms": 2.5, "offset_ms": 30},
    ],
}


def _json_line(valid: object) -> st.SearchStrategy[str]:
    """One line: a mutated valid record, any JSON value, any text, or deep nesting."""
    return (
        mutated(valid).map(json.dumps)
        | mutated(valid, st.sampled_from(NASTY_NUMBERS)).map(json.dumps)
        | json_values.map(json.dumps)
        | texts
        | st.sampled_from(DEEP)
    )


def _unique_ids(lines: list[str]) -> str:
    """Join lines, giving each session line its own id (a repeated id would hide the checks
    made after a line is parsed)."""
    return "\n".join(
        line.replace('"session_id": "a"', f'"session_id": "a{i}"', 1)
        for i, line in enumerate(lines)
    )


def _jsonl(valid: object) -> st.SearchStrategy[str]:
    """A file of valid lines and fuzzed ones."""
    good = st.just(json.dumps(valid))
    return st.lists(good | _json_line(valid), min_size=1, max_size=4).map(_unique_ids)


REGRESSIONS_MOONCAKE = (
    '{"timestamp": 0, "input_length": 600, "output_length": 1, "hash_ids": [5, -1]}',
    '{"timestamp": "5", "input_length": 1, "output_length": 1, "hash_ids": [0]}',
    '{"timestamp": 5, "input_length": 1, "output_length": 1, "hash_ids": [0]}\n'
    '{"timestamp": 3, "input_length": 1, "output_length": 1, "hash_ids": [0]}',
    '{"timestamp": 0, "input_length": ' + "9" * 5000 + ', "output_length": 1, "hash_ids": []}',
    '{"timestamp": 0, "input_length": 1' + "0" * 40 + ', "output_length": 1, "hash_ids": []}',
    '{"timestamp": 1e308, "input_length": 1, "output_length": 1, "hash_ids": [0]}',
    '{"timestamp": NaN, "input_length": 1, "output_length": 1, "hash_ids": [0]}',
    "[" * 100_000,
)


@FUZZ
@given(text=_jsonl(MOONCAKE))
@example(text=REGRESSIONS_MOONCAKE[0])
@example(text=REGRESSIONS_MOONCAKE[1])
@example(text=REGRESSIONS_MOONCAKE[2])
@example(text=REGRESSIONS_MOONCAKE[3])
@example(text=REGRESSIONS_MOONCAKE[4])
@example(text=REGRESSIONS_MOONCAKE[5])
@example(text=REGRESSIONS_MOONCAKE[6])
@example(text=REGRESSIONS_MOONCAKE[7])
def test_mooncake(trace_dir: Path, text: str) -> None:
    _load_or_name_the_line(_write(trace_dir, "t.jsonl", text), "mooncake")


def _session_line(steps: int) -> str:
    step = {"new_input_tokens": 10**40, "output_tokens": 1}
    return json.dumps({"session_id": "x", "start_ms": 0, "steps": [step] * steps})


@FUZZ
@given(text=_jsonl(SESSION))
@example(text=_session_line(1))  # 10**40 tokens: OverflowError in workload/stats.py
@example(text=json.dumps({**SESSION, "session_id": "\ud800"}))
@example(text=json.dumps({**SESSION, "start_ms": float("inf")}))
@example(text=json.dumps({**SESSION, "steps": [{"new_input_tokens": 6e8, "output_tokens": 1}] * 2}))
@example(
    text=json.dumps(
        {**SESSION, "steps": [{"new_input_tokens": 1, "output_tokens": 1, "hash_ids": [-1]}]}
    )
)
@example(
    text='{"session_id": "[/x]", "start_ms": 0, "steps": [{"new_input_tokens": 1, '
    '"output_tokens": 1}]}'
)
def test_sessions(trace_dir: Path, text: str) -> None:
    _load_or_name_the_line(_write(trace_dir, "t.jsonl", text), "sessions")


# --- CSV formats: Azure and BurstGPT -----------------------------------------------------

AZURE_HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
AZURE_ROWS = [
    ["2023-11-16 18:15:46.6805900", "374", "44"],
    ["2024-05-10 00:00:00.009930+00:00", "2048", "28"],
]
BURST_HEADER = ["Timestamp", "Session ID", "Model", "Request tokens", "Response tokens", "Log Type"]
BURST_ROWS = [
    ["5", "s1", "ChatGPT", "100", "50", "Conversation log"],
    ["7.5", "", "GPT-4", "36", "29", "API log"],
    ["9", "s1", "ChatGPT", "200", "20", "Conversation log"],
]
cells = texts | st.sampled_from(NASTY_NUMBERS).map(str) | st.integers(0, 10**12).map(str)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


@st.composite
def _csv_file(draw: st.DrawFn, header: list[str], valid: list[list[str]]) -> str:
    """A header (sometimes with a column renamed or dropped) and valid rows with some cells,
    and sometimes whole rows, fuzzed."""
    head = list(header)
    if draw(st.integers(0, 4)) == 0:
        head[draw(st.integers(0, len(head) - 1))] = draw(texts)
    rows = [head]
    for _ in range(draw(st.integers(0, 4))):
        row = list(draw(st.sampled_from(valid)))
        for _ in range(draw(st.integers(0, 2))):
            row[draw(st.integers(0, len(row) - 1))] = draw(cells)
        if draw(st.integers(0, 6)) == 0:
            row = draw(st.lists(cells, max_size=len(row) + 1))
        rows.append(row)
    return _csv(rows) if draw(st.integers(0, 8)) else draw(texts)


@FUZZ
@given(text=_csv_file(AZURE_HEADER, AZURE_ROWS))
@example(text=_csv([AZURE_HEADER, ["2024-05-10 00:00:00+99:99", "1", "1"]]))
@example(text=_csv([AZURE_HEADER, AZURE_ROWS[1], AZURE_ROWS[0]]))  # backwards in time
@example(text=_csv([AZURE_HEADER, ["2023-11-16 18:15:46", "9" * 5000, "1"]]))
@example(text=_csv([AZURE_HEADER, ["0001-01-01 00:00:00", "1", "1"], AZURE_ROWS[1]]))
def test_azure(trace_dir: Path, text: str) -> None:
    _load_or_name_the_line(_write(trace_dir, "t.csv", text), "azure")


@FUZZ
@given(text=_csv_file(BURST_HEADER, BURST_ROWS))
@example(text=_csv([BURST_HEADER, BURST_ROWS[0], ["1e308", "", "x", "1", "1", "API log"]]))
@example(text=_csv([BURST_HEADER, ["inf", "", "x", "1", "1", "API log"]]))
@example(text=_csv([BURST_HEADER, BURST_ROWS[2], BURST_ROWS[0]]))  # backwards in time
@example(text=_csv([BURST_HEADER, ["5", "[/x]", "[bold]", "10", "1", "[/]"]]))
def test_burstgpt(trace_dir: Path, text: str) -> None:
    _load_or_name_the_line(_write(trace_dir, "t.csv", text), "burstgpt")


# --- ShareGPT ---------------------------------------------------------------------------

CONVERSATION = {
    "id": "c1",
    "conversations": [
        {"from": "system", "value": "hello"},
        {"from": "human", "value": "hello world"},
        {"from": "gpt", "value": "world"},
    ],
}


@st.composite
def _sharegpt(draw: st.DrawFn) -> str:
    """A list of mutated conversations, or any JSON value, text or deep nesting."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return str(draw(json_values.map(json.dumps) | texts | st.sampled_from(DEEP)))
    items = draw(st.lists(st.just(CONVERSATION) | mutated(CONVERSATION), max_size=3))
    return "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]"


@FUZZ
@given(text=_sharegpt())
@example(
    text='[{"conversations": [{"from": "human", "value": "\\ud800"}, '
    '{"from": "gpt", "value": "x"}]}]'
)
@example(text='[{"id": "' + "[/x]" + '", "conversations": []}]')
@example(text="[\n" + "[" * 100_000)
@example(text='[{"id": ' + "9" * 5000 + "}]")
def test_sharegpt(trace_dir: Path, text: str) -> None:
    _load_or_name_the_line(_write(trace_dir, "t.json", text), "sharegpt")


def _all_nasty_cells() -> list[str]:
    return [str(v) for v in NASTY_NUMBERS] + list(NASTY_TEXT)


@pytest.mark.parametrize("cell", _all_nasty_cells())
@pytest.mark.parametrize("column", [0, 1, 2])
def test_every_nasty_azure_cell(trace_dir: Path, cell: str, column: int) -> None:
    row = list(AZURE_ROWS[0])
    row[column] = cell
    _load_or_name_the_line(_write(trace_dir, "t.csv", _csv([AZURE_HEADER, row])), "azure")
