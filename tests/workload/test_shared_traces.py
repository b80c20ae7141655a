"""Exact figures for the two shared public traces, checked against an independent reading."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.workload.formats.azure import iter_azure
from harness.workload.formats.mooncake import iter_mooncake
from harness.workload.source import sessions_from_path
from harness.workload.stats import workload_stats

MOONCAKE = "mooncake_conversation_trace.jsonl"
AZURE = "azure2023_AzureLLMInferenceTrace_conv.csv"


def test_mooncake_conversation_trace(shared_trace: Callable[[str], Path]) -> None:
    path = shared_trace(MOONCAKE)
    with path.open() as f:
        records = [json.loads(line) for line in f if line.strip()]
    inputs = np.array([r["input_length"] for r in records])
    outputs = np.array([r["output_length"] for r in records])
    times = [r["timestamp"] for r in records]

    stats = workload_stats(sessions_from_path(path))
    assert stats.sessions == stats.requests == len(records) == 12_031  # traces/README.md
    assert stats.input_tokens == int(inputs.sum()) == 144_793_823
    assert stats.output_tokens == int(outputs.sum()) == 4_122_048
    assert stats.span_s == (max(times) - min(times)) / 1000 == 3536.999
    assert stats.input_percentiles.p50 == pytest.approx(float(np.percentile(inputs, 50)))
    assert stats.output_percentiles.p99 == pytest.approx(float(np.percentile(outputs, 99)))
    # reference.md: average 12,035 input and 343 output tokens
    assert round(stats.input_tokens / stats.requests) == 12_035
    assert round(stats.output_tokens / stats.requests) == 343
    assert [len(s.steps[0].hash_ids or ()) for s in iter_mooncake(path)] == [
        len(r["hash_ids"]) for r in records
    ]


def test_azure_2023_conversation_trace(shared_trace: Callable[[str], Path]) -> None:
    path = shared_trace(AZURE)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    context = sum(int(r["ContextTokens"]) for r in rows)
    generated = sum(int(r["GeneratedTokens"]) for r in rows)
    stamps = pd.to_datetime(pd.Series([r["TIMESTAMP"] for r in rows]), format="ISO8601")
    span = stamps.max() - stamps.min()

    stats = workload_stats(sessions_from_path(path))
    assert stats.sessions == stats.requests == len(rows) == 19_366  # traces/README.md
    assert stats.input_tokens == context == 22_361_870
    assert stats.output_tokens == generated == 4_088_665
    assert span.value == 3_501_721_937_000  # ns: 18:15:46.6805900 -> 19:14:08.4025270
    assert stats.span_s == pytest.approx(3501.721937, abs=1e-9)
    # every start, to the 100 ns tick of the 7-digit fractions
    expected_ms = ((stamps - stamps.iloc[0]).dt.total_seconds() * 1000).to_numpy()
    starts = np.array([s.start_ms for s in iter_azure(path)])
    assert np.max(np.abs(starts - expected_ms)) < 1e-6
    # reference.md: ~1.15k context and 211 generated tokens per request
    assert round(stats.output_tokens / stats.requests) == 211
    assert 1100 < stats.input_tokens / stats.requests < 1200
