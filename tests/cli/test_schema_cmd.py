"""`harness schema summary`: the JSON Schema on stdout, and `--check` over summary files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from summary_builders import summary_dict

from harness.cli import main
from harness.summary import SCHEMA_VERSION, Summary


def test_prints_the_summary_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "summary"]) == 0
    out = capsys.readouterr().out
    schema = json.loads(out)
    assert out.startswith("{\n  ")  # pretty
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "harness summary.json"
    version = schema["properties"]["schema_version"]
    assert "schema_version" in schema["required"] and version["maximum"] == SCHEMA_VERSION
    assert schema["additionalProperties"] is False
    assert {"Stats", "LatencySplit", "Energy", "ClientHealth", "Workers"} <= set(schema["$defs"])
    assert schema == {"$schema": schema["$schema"], **Summary.model_json_schema()}


def test_check_says_which_summaries_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(summary_dict()))
    old = tmp_path / "old.json"
    unversioned = summary_dict()
    del unversioned["schema_version"]
    old.write_text(json.dumps(unversioned))
    assert main(["schema", "summary", "--check", str(run), str(old)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"ok: {run / 'summary.json'} (schema_version {SCHEMA_VERSION})",
        f"ok: {old} (schema_version 0)",
    ]
    bad = tmp_path / "invalid-on-purpose.json"
    bad.write_text(json.dumps({**summary_dict(), "ttft_ms": {"p99": "slow"}}))
    missing = tmp_path / "missing.json"
    assert main(["schema", "summary", "--check", str(run), str(bad), str(missing)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok: ")
    assert out[1].startswith(f"invalid: {bad}: invalid summary: key 'ttft_ms.count'")
    assert out[2].startswith(f"invalid: {missing}: cannot read summary")
    assert out[3] == "2 of 3 summaries do not fit the schema"


def test_schema_needs_a_file_kind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["schema"])
    assert info.value.code == 2
    assert "schema" in capsys.readouterr().err
