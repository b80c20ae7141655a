"""Resolving the workload argument: a YAML as is, a trace file wrapped in a default workload."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.cli import main
from harness.cli.common import add_workload_args, option_errors, resolve_workload
from harness.errors import ConfigError
from harness.workload.spec import WorkloadSpec


def _yaml(tmp_path: Path, text: str, name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


TRACE_YAML = (
    "name: from-yaml\nsource:\n  trace: t.csv\n  format: azure\narrival:\n  time_scale: 0\n"
)


def test_yaml_is_loaded_as_is(tmp_path: Path) -> None:
    spec = resolve_workload(_yaml(tmp_path, TRACE_YAML), None)
    assert spec.name == "from-yaml"
    assert spec.source.format == "azure"
    assert spec.source.trace == (tmp_path / "t.csv").resolve()
    assert spec.arrival.time_scale == 0


def test_yml_extension_is_a_workload_too(tmp_path: Path) -> None:
    spec = resolve_workload(_yaml(tmp_path, TRACE_YAML, "w.YML"), None)
    assert spec.name == "from-yaml"


def test_format_overrides_the_yaml(tmp_path: Path) -> None:
    spec = resolve_workload(_yaml(tmp_path, TRACE_YAML), "burstgpt")
    assert spec.source.format == "burstgpt"
    assert spec.name == "from-yaml" and spec.arrival.time_scale == 0  # the rest is kept


def test_format_on_a_synthetic_yaml_is_an_error(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "name: syn\nsource:\n  synthetic: agent\n")
    assert resolve_workload(path, None).source.synthetic == "agent"
    with pytest.raises(ConfigError, match="--format applies to a trace source"):
        resolve_workload(path, "azure")


def test_trace_file_is_wrapped_in_a_default_workload(tmp_path: Path) -> None:
    trace = tmp_path / "my_trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    spec = resolve_workload(trace, None)
    assert spec.name == "my_trace"
    assert spec.source.trace == trace.resolve() and spec.source.format is None
    assert spec.arrival.pattern == "trace" and spec.arrival.time_scale == 1.0
    assert spec.source.synthetic is None
    assert resolve_workload(trace, "azure").source.format == "azure"


def test_relative_trace_path_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    spec = resolve_workload(Path("t.jsonl"), "mooncake")
    assert spec.source.trace == tmp_path.resolve() / "t.jsonl"
    assert spec.source.trace is not None and spec.source.trace.is_absolute()


@pytest.mark.parametrize("name", ["absent.yaml", "absent.csv"])
def test_missing_file_is_a_config_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        resolve_workload(tmp_path / name, None)


def test_invalid_yaml_workload_is_a_config_error(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "name: x\nsource:\n  trace: t.csv\n  bogus: 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'source\.bogus'"):
        resolve_workload(path, None)


def test_workload_args() -> None:
    parser = argparse.ArgumentParser()
    add_workload_args(parser)
    args = parser.parse_args(["t.csv", "--format", "sharegpt", "--tokenizer", "/m"])
    assert args.workload == Path("t.csv") and args.format == "sharegpt"
    assert args.tokenizer == "/m"
    defaults = parser.parse_args(["w.yaml"])
    assert defaults.format is None and defaults.tokenizer is None
    with pytest.raises(SystemExit):
        parser.parse_args(["t.csv", "--format", "nope"])


def _validation_error(data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        WorkloadSpec.model_validate(data)
    return info.value


def test_option_errors_name_the_option_the_section_or_the_key() -> None:
    options = {("limits", "max_requests"): "max_requests", ("arrival", "pattern"): "pattern"}
    source = {"synthetic": "agent"}
    err = _validation_error(
        {
            "name": "w",
            "source": source,
            "limits": {"max_requests": 0},
            "arrival": {"pattern": "poisson"},
        }
    )
    args = argparse.Namespace(max_requests=0, pattern="poisson")
    assert option_errors(err, options, args) == (
        "--pattern poisson: pattern 'poisson' needs 'rate_per_s'; "
        "--max-requests 0: Input should be greater than 0"
    )
    # nothing on the command line set it: the workload's own key is named
    err = _validation_error({"name": "w", "source": source, "arrival": {"pattern": "closed"}})
    none_given = argparse.Namespace(max_requests=None, pattern=None)
    assert option_errors(err, options, none_given) == (
        "workload key 'arrival': pattern 'closed' needs 'concurrency'"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "w.yaml", "--sample-hz", "0"],
        ["run", "w.yaml", "--sample-hz", "inf"],
        ["run", "w.yaml", "--idle-baseline", "nan"],
        ["run", "w.yaml", "--seed", "-1"],
        ["run", "w.yaml", "--prompt-salt", "1e3"],
        ["run", "w.yaml", "--server-pid", "0"],
        ["tools", "calibrate", "--budget", "inf"],
        ["serve", "--port", "70000"],
    ],
)
def test_numeric_options_are_checked_when_parsed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error: argument --" in err
    assert "Traceback" not in err


def test_a_missing_workload_suggests_close_files_beside_it_and_in_workloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "workloads"
    shipped.mkdir()
    (shipped / "demo-chatbot.yaml").write_text("")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "demo-chatbot-long.yaml").write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        resolve_workload(Path("mine/demo-chatbto.yaml"), None)
    message = str(info.value)
    assert message.startswith("mine/demo-chatbto.yaml: no such file (did you mean ")
    assert "'mine/demo-chatbot-long.yaml'" in message
    assert "'workloads/demo-chatbot.yaml'" in message
    with pytest.raises(ConfigError) as info:
        resolve_workload(Path("zzz.yaml"), None)
    assert str(info.value) == "zzz.yaml: no such file"
