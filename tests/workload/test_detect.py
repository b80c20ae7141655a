"""Format detection from the extension and the first line or header."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.workload.detect import detect_format


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("mooncake_small.jsonl", "mooncake"),
        ("azure2023_small.csv", "azure"),
        ("azure2024_small.csv", "azure"),
        ("burstgpt_v1_small.csv", "burstgpt"),
        ("burstgpt_v3_small.csv", "burstgpt"),
        ("sharegpt_small.json", "sharegpt"),
        ("sessions_small.jsonl", "sessions"),
    ],
)
def test_fixtures(data_dir: Path, name: str, fmt: str) -> None:
    assert detect_format(data_dir / name) == fmt


def test_shared_traces(shared_trace: Callable[[str], Path]) -> None:
    assert detect_format(shared_trace("mooncake_conversation_trace.jsonl")) == "mooncake"
    assert detect_format(shared_trace("azure2023_AzureLLMInferenceTrace_conv.csv")) == "azure"


def test_content_decides_without_a_known_extension(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text("\n\n" + (data_dir / "mooncake_small.jsonl").read_text())
    assert detect_format(path) == "mooncake"
    path = tmp_path / "trace"
    path.write_text("\ufeff" + (data_dir / "azure2023_small.csv").read_text())  # with a BOM
    assert detect_format(path) == "azure"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("x.csv", "a,b,c\n1,2,3\n"),
        ("x.jsonl", '{"prompt": "hi"}\n'),
        ("x.csv", '{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [0]}\n'),
        ("x.jsonl", "[1, 2]\n"),
        ("x.json", "{not json\n"),
        ("x.csv", "\n\n"),
    ],
)
def test_unrecognised_says_to_pass_format(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        detect_format(path)
    message = str(info.value)
    assert "--format" in message
    assert "mooncake, azure, burstgpt, sharegpt, sessions" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        detect_format(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    "first_line",
    [
        '{"input_length": ' + "9" * 5000 + ', "hash_ids": []}',  # ValueError in json
        "[" * 100_000,  # read as ShareGPT, refused by its loader, not by detection
        "{" + '"a": [' * 100_000,  # RecursionError in json
        '"' + "x" * 200_000 + '"',  # longer than the csv module's field limit
    ],
)
def test_undecodable_first_lines_are_not_recognised(tmp_path: Path, first_line: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(first_line + "\n")
    with pytest.raises(ConfigError, match="cannot tell the trace format"):
        detect_format(path)
