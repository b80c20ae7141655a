"""Recorded tool names to kinds: the default table, a workload's overrides (errors naming the
file and key), and names with no mapping kept as counted `unmapped` waits."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.workload.model import KNOWN_TOOL_KINDS, UNMAPPED
from harness.workload.spec import load_workload
from harness.workload.tool_names import DEFAULT_TOOL_MAP, tool_kind


def test_the_default_table_maps_to_kinds_the_runner_knows() -> None:
    assert set(DEFAULT_TOOL_MAP.values()) <= set(KNOWN_TOOL_KINDS)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Bash", "code_exec"),
        ("exec_command", "code_exec"),
        ("Grep", "file_search"),
        ("Glob", "file_search"),
        ("Read", "parse"),
        ("WebSearch", "web_search"),
        ("WebFetch", "api_call"),
        ("Write", "file_write"),
        ("Edit", "file_write"),
        ("apply_patch", "file_write"),
        ("TodoWrite", UNMAPPED),
        ("bash", UNMAPPED),  # names match exactly
    ],
)
def test_default_mapping(name: str, kind: str) -> None:
    assert tool_kind(name) == kind


def test_override_beats_the_default_and_adds_names() -> None:
    overrides = {"Bash": "api_call", "TodoWrite": "parse"}
    assert tool_kind("Bash", overrides) == "api_call"
    assert tool_kind("TodoWrite", overrides) == "parse"
    assert tool_kind("Grep", overrides) == "file_search"


def _workload(tmp_path: Path, tool_map: str) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(
        "name: w\nsource:\n  trace: t.jsonl\n  format: tracelab\n  tool_map:\n" + tool_map
    )
    return path


def test_workload_tool_map_is_read(tmp_path: Path) -> None:
    spec = load_workload(_workload(tmp_path, "    TodoWrite: parse\n    Task: unmapped\n"))
    assert spec.source.tool_map == {"TodoWrite": "parse", "Task": "unmapped"}


def test_workload_tool_map_unknown_kind_names_file_and_key(tmp_path: Path) -> None:
    path = _workload(tmp_path, "    TodoWrite: pars\n")
    with pytest.raises(ConfigError) as err:
        load_workload(path)
    message = str(err.value)
    assert str(path) in message and "source.tool_map.TodoWrite" in message
    assert "'pars'" in message and "did you mean 'parse'" in message


def test_workload_tool_map_must_be_a_mapping_of_names(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("name: w\nsource:\n  trace: t.jsonl\n  tool_map: [Bash]\n")
    with pytest.raises(ConfigError, match="tool_map"):
        load_workload(path)
