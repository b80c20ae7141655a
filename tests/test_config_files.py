"""Reading YAML/JSON inputs: every error names the file (and the line or dotted key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from harness.config_files import read_json, read_yaml, validate
from harness.errors import ConfigError


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float = Field(gt=0)


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(ConfigError, match=r"x\.yaml:\d+: invalid YAML"):
        read_yaml(path, "scenario")


def test_bad_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{\n  "a": 1,\n}\n')
    with pytest.raises(ConfigError, match=r"c\.json:3: invalid JSON"):
        read_json(path, "capacity")


def test_missing_file_says_what_was_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read workload"):
        read_yaml(tmp_path / "none.yaml", "workload")


def test_validation_errors_name_the_dotted_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    with pytest.raises(ConfigError) as err:
        validate(_Outer, {"inner": {"rate": -1, "typo": 2}}, path)
    text = str(err.value)
    assert f"{path}: key 'inner.rate': Input should be greater than 0" in text
    assert f"{path}: unknown key 'inner.typo'" in text


def test_a_list_where_a_mapping_belongs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        validate(_Outer, [1, 2], tmp_path / "s.yaml")
