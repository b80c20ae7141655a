"""The workload YAML: strict keys, one source, arrival needs, relative paths, YAML errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.workload.spec import is_workload_file, load_workload, parse_workload

TRACE = "source:\n  trace: traces/t.csv\n  format: azure\n"


def _write(tmp_path: Path, text: str, name: str = "w.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_trace_workload_and_defaults(tmp_path: Path) -> None:
    spec = load_workload(_write(tmp_path, "name: demo\n" + TRACE))
    assert spec.name == "demo"
    assert spec.source.format == "azure"
    assert spec.arrival.pattern == "trace" and spec.arrival.time_scale == 1.0
    assert spec.request.api == "completions" and spec.request.overlength == "error"
    assert spec.limits.max_requests is None and spec.limits.warmup_requests == 0
    assert spec.slo is None


def test_relative_trace_path_is_resolved_against_the_yaml_folder(tmp_path: Path) -> None:
    sub = tmp_path / "workloads"
    sub.mkdir()
    spec = load_workload(_write(sub, "name: demo\n" + TRACE))
    assert spec.source.trace == (sub / "traces" / "t.csv").resolve()
    assert spec.source.trace is not None and spec.source.trace.is_absolute()


def test_absolute_trace_path_is_kept(tmp_path: Path) -> None:
    trace = tmp_path / "elsewhere" / "t.csv"
    spec = load_workload(_write(tmp_path, f"name: demo\nsource:\n  trace: {trace}\n"))
    assert spec.source.trace == trace


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("arrival:\n  ratee: 3\n", "arrival.ratee"),
        ("limits:\n  max_request: 3\n", "limits.max_request"),
        ("request:\n  stream: true\n", "request.stream"),
        ("slo:\n  ttft: 3\n", "slo.ttft"),
        ("colour: red\n", "colour"),
    ],
)
def test_unknown_keys_are_named_with_their_dotted_path(
    tmp_path: Path, extra: str, key: str
) -> None:
    path = _write(tmp_path, "name: demo\n" + TRACE + extra)
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    message = str(info.value)
    assert f"unknown key '{key}'" in message
    assert str(path) in message


def test_unknown_source_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'source\.fromat'"):
        load_workload(_write(tmp_path, "name: demo\n" + TRACE + "  fromat: azure\n"))


@pytest.mark.parametrize(
    "source",
    [
        "source:\n  trace: t.csv\n  synthetic: agent\n",
        "source:\n  seed: 3\n",
    ],
)
def test_exactly_one_of_trace_or_synthetic(tmp_path: Path, source: str) -> None:
    with pytest.raises(ConfigError, match="exactly one of 'trace' or 'synthetic'"):
        load_workload(_write(tmp_path, "name: demo\n" + source))


def test_synthetic_source_with_params(tmp_path: Path) -> None:
    text = "name: demo\nsource:\n  synthetic: agent\n  params:\n    sessions: 4\n"
    spec = load_workload(_write(tmp_path, text))
    assert spec.source.synthetic == "agent" and spec.source.params == {"sessions": 4}
    assert spec.source.trace is None


def test_params_belong_to_a_synthetic_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'params' belongs to a synthetic source"):
        load_workload(_write(tmp_path, "name: demo\n" + TRACE + "  params:\n    a: 1\n"))


@pytest.mark.parametrize("pattern", ["poisson", "constant"])
def test_rate_patterns_need_rate_per_s(tmp_path: Path, pattern: str) -> None:
    text = "name: demo\n" + TRACE + f"arrival:\n  pattern: {pattern}\n"
    with pytest.raises(ConfigError, match=f"pattern '{pattern}' needs 'rate_per_s'"):
        load_workload(_write(tmp_path, text))
    ok = load_workload(_write(tmp_path, text + "  rate_per_s: 2.5\n", "ok.yaml"))
    assert ok.arrival.pattern == pattern and ok.arrival.rate_per_s == 2.5


def test_closed_needs_concurrency(tmp_path: Path) -> None:
    text = "name: demo\n" + TRACE + "arrival:\n  pattern: closed\n"
    with pytest.raises(ConfigError, match="pattern 'closed' needs 'concurrency'"):
        load_workload(_write(tmp_path, text))
    ok = load_workload(_write(tmp_path, text + "  concurrency: 4\n", "ok.yaml"))
    assert ok.arrival.concurrency == 4


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("arrival:\n  time_scale: -1\n", "arrival.time_scale"),
        ("arrival:\n  pattern: burst\n", "arrival.pattern"),
        ("limits:\n  max_requests: 0\n", "limits.max_requests"),
        ("request:\n  overlength: drop\n", "request.overlength"),
        ("slo:\n  ttft_ms: -5\n", "slo.ttft_ms"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_workload(_write(tmp_path, "name: demo\n" + TRACE + extra))


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        # accepted, then the run crashed mid-way on an infinite sleep
        ("arrival:\n  time_scale: .inf\n", "arrival.time_scale", "expected a finite number"),
        ("arrival:\n  time_scale: .nan\n", "arrival.time_scale", "expected a finite number"),
        ("arrival:\n  time_scale: 1e9\n", "arrival.time_scale", "less than or equal to 1000"),
        ("arrival:\n  time_scale: 1e-300\n", "arrival.time_scale", "out of range"),
        ("arrival:\n  time_scale: yes\n", "arrival.time_scale", "expected a number, got bool"),
        ("arrival:\n  time_scale: '2'\n", "arrival.time_scale", "expected a number, got str"),
        ("arrival:\n  rate_per_s: 1e400\n", "arrival.rate_per_s", "expected a finite number"),
        ("arrival:\n  concurrency: 10000000\n", "arrival.concurrency", "less than or equal"),
        ("arrival:\n  seed: -1\n", "arrival.seed", "greater than or equal to 0"),
        ("arrival:\n  concurrency: 2.5\n", "arrival.concurrency", "fractional part"),
        ("limits:\n  max_requests: " + "9" * 30 + "\n", "limits.max_requests", "less than"),
        ("limits:\n  duration_s: .inf\n", "limits.duration_s", "expected a finite number"),
        ("request:\n  timeout_s: .nan\n", "request.timeout_s", "expected a finite number"),
        ("request:\n  temperature: 1e308\n", "request.temperature", "less than or equal"),
        ("slo:\n  ttft_ms: .inf\n", "slo.ttft_ms", "expected a finite number"),
    ],
)
def test_numbers_are_finite_and_bounded(tmp_path: Path, extra: str, key: str, message: str) -> None:
    path = _write(tmp_path, "name: demo\n" + TRACE + extra)
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    assert str(info.value).startswith(f"{path}: key '{key}': ")
    assert message in str(info.value)


def test_time_scale_zero_sends_at_once(tmp_path: Path) -> None:
    spec = load_workload(_write(tmp_path, "name: demo\n" + TRACE + "arrival:\n  time_scale: 0\n"))
    assert spec.arrival.time_scale == 0.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        # a 7 TiB allocation, an OverflowError and a NaN length, before this check
        ("requests: 1000000000000", "key 'source.params.requests': Input should be less than"),
        ("input_tokens: .inf", "key 'source.params.input_tokens': expected a finite"),
        ("range_ratio: .nan", "key 'source.params.range_ratio': expected a finite"),
        ("input_tokens: 1e308", "key 'source.params.input_tokens': "),
        ("colour: red", "unknown key 'source.params.colour'"),
    ],
)
def test_synthetic_params_are_checked_with_the_file(
    tmp_path: Path, params: str, message: str
) -> None:
    text = f"name: demo\nsource:\n  synthetic: random\n  params:\n    {params}\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    assert str(info.value).startswith(f"{path}: synthetic 'random': ")
    assert message in str(info.value)


def test_missing_name_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'name'"):
        load_workload(_write(tmp_path, TRACE))


def test_invalid_yaml_gives_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: demo\nsource:\n  trace: t.csv\n  format: [azure\n")
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    message = str(info.value)
    assert "invalid YAML" in message
    line = int(message.split(f"{path}:", 1)[1].split(":", 1)[0])
    assert 4 <= line <= 5  # the unclosed flow sequence starts on line 4


def test_yaml_tab_error_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: demo\nsource:\n  trace: t.csv\n\tformat: azure\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:4: invalid YAML"):
        load_workload(path)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read workload"):
        load_workload(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_workload(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_workload(None, tmp_path / "empty.yaml")


def test_is_workload_file() -> None:
    assert is_workload_file(Path("a.yaml")) and is_workload_file(Path("b.YML"))
    assert not is_workload_file(Path("trace.csv")) and not is_workload_file(Path("t.jsonl"))


def test_repo_workloads_all_load() -> None:
    folder = Path(__file__).resolve().parents[2] / "workloads"
    files = sorted(folder.glob("*.yaml"))
    if not files:
        pytest.skip("no workloads folder")
    for path in files:
        spec = load_workload(path)
        assert spec.name
        if spec.source.trace is not None:
            assert spec.source.trace.is_absolute()
