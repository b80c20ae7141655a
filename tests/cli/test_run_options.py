"""`harness run` options over the workload file: overrides, pattern switches, bad combos."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.cli import run_options
from harness.cli.common import resolve_workload
from harness.cli.run_cmd import run_plan
from harness.errors import ConfigError
from harness.server_process import DEFAULT_STARTUP_TIMEOUT_S
from harness.telemetry.steady import SteadyRule
from harness.workload.spec import WorkloadSpec

BASE = """\
name: base
source:
  trace: t.csv
  format: azure
arrival:
  pattern: trace
  time_scale: 2.0
limits:
  max_requests: 100
  max_concurrency: 8
  duration_s: 60
  warmup_requests: 1
request:
  api: completions
  overlength: error
slo:
  ttft_ms: 500
"""


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    run_options.add_run_args(parser)
    return parser.parse_args(["w.yaml", *argv])


def _spec(tmp_path: Path, text: str = BASE) -> WorkloadSpec:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return resolve_workload(path, None)


def _with(tmp_path: Path, *argv: str, text: str = BASE) -> WorkloadSpec:
    return run_options.apply_overrides(_spec(tmp_path, text), _parse(*argv))


def test_no_options_keep_the_file(tmp_path: Path) -> None:
    assert _with(tmp_path) == _spec(tmp_path)


def test_options_override_yaml_values(tmp_path: Path) -> None:
    spec = _with(
        tmp_path,
        "--time-scale", "0",
        "--max-requests", "7",
        "--max-concurrency", "3",
        "--duration", "1.5",
        "--warmup", "0",
        "--api", "chat",
        "--overlength", "clip",
    )  # fmt: skip
    assert spec.arrival.time_scale == 0 and spec.arrival.pattern == "trace"
    assert spec.limits.max_requests == 7
    assert spec.limits.max_concurrency == 3
    assert spec.limits.duration_s == 1.5
    assert spec.limits.warmup_requests == 0  # a zero is an override, not "unset"
    assert spec.request.api == "chat" and spec.request.overlength == "clip"
    # what was not overridden stays
    assert spec.name == "base" and spec.slo is not None and spec.slo.ttft_ms == 500
    assert spec.source.trace == (tmp_path / "t.csv").resolve()


def test_rate_switches_a_trace_pattern_to_poisson(tmp_path: Path) -> None:
    spec = _with(tmp_path, "--rate", "4")
    assert spec.arrival.pattern == "poisson" and spec.arrival.rate_per_s == 4.0


def test_rate_keeps_an_explicit_or_rate_pattern(tmp_path: Path) -> None:
    spec = _with(tmp_path, "--rate", "4", "--pattern", "constant")
    assert spec.arrival.pattern == "constant" and spec.arrival.rate_per_s == 4.0
    constant = BASE.replace("pattern: trace", "pattern: constant\n  rate_per_s: 1")
    spec = _with(tmp_path, "--rate", "9", text=constant)
    assert spec.arrival.pattern == "constant" and spec.arrival.rate_per_s == 9.0


def test_concurrency_switches_to_closed(tmp_path: Path) -> None:
    spec = _with(tmp_path, "--concurrency", "4")
    assert spec.arrival.pattern == "closed" and spec.arrival.concurrency == 4
    poisson = BASE.replace("pattern: trace", "pattern: poisson\n  rate_per_s: 1")
    spec = _with(tmp_path, "--concurrency", "2", text=poisson)
    assert spec.arrival.pattern == "closed" and spec.arrival.concurrency == 2


def test_pattern_alone_uses_the_files_rate(tmp_path: Path) -> None:
    with_rate = BASE.replace("time_scale: 2.0", "time_scale: 2.0\n  rate_per_s: 3")
    spec = _with(tmp_path, "--pattern", "poisson", text=with_rate)
    assert spec.arrival.pattern == "poisson" and spec.arrival.rate_per_s == 3.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--pattern", "poisson"), "--pattern poisson: pattern 'poisson' needs 'rate_per_s'"),
        (("--pattern", "constant"), "--pattern constant: pattern 'constant' needs 'rate_per_s'"),
        (("--pattern", "closed"), "--pattern closed: pattern 'closed' needs 'concurrency'"),
        (("--rate", "0"), "--rate 0.0: Input should be greater than 0"),
        (("--rate", "-2"), "--rate -2.0: Input should be greater than 0"),
        (("--concurrency", "0"), "--concurrency 0: Input should be greater than 0"),
        (("--max-requests", "0"), "--max-requests 0: Input should be greater than 0"),
        (("--max-concurrency", "-1"), "--max-concurrency -1: Input should be greater than 0"),
        (("--duration", "0"), "--duration 0.0: Input should be greater than 0"),
        (("--warmup", "-1"), "--warmup -1: Input should be greater than or equal to 0"),
        (("--time-scale", "-1"), "--time-scale -1.0: Input should be greater than or equal to 0"),
    ],
)
def test_invalid_values_are_one_line_config_errors_naming_the_option(
    tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    """The option and the value given, with pydantic's reason: no "validation error for
    WorkloadSpec", no link, one line."""
    with pytest.raises(ConfigError) as info:
        _with(tmp_path, *argv)
    assert str(info.value) == message


def test_choices_are_checked_by_the_parser() -> None:
    for argv in (("--pattern", "burst"), ("--api", "grpc"), ("--overlength", "drop")):
        with pytest.raises(SystemExit):
            _parse(*argv)


def test_rate_and_concurrency_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        _with(tmp_path, "--rate", "2", "--concurrency", "4")


def test_rate_on_a_closed_workload_needs_a_pattern(tmp_path: Path) -> None:
    closed = BASE.replace("pattern: trace", "pattern: closed\n  concurrency: 4")
    with pytest.raises(ConfigError, match="--rate needs a poisson or constant pattern"):
        _with(tmp_path, "--rate", "2", text=closed)
    spec = _with(tmp_path, "--rate", "2", "--pattern", "constant", text=closed)
    assert (spec.arrival.pattern, spec.arrival.rate_per_s) == ("constant", 2.0)


def test_concurrency_with_an_open_pattern_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--concurrency needs the closed pattern"):
        _with(tmp_path, "--concurrency", "4", "--pattern", "poisson")


@pytest.mark.parametrize("text", ["0", "-2", "257", "two", "1.5"])
def test_a_bad_worker_count_is_a_usage_error_naming_the_option(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parse("--workers", text)
    assert "--workers" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0", "-5", "nan", "inf", "soon", "86401"])
def test_a_bad_server_start_timeout_is_a_usage_error_naming_the_option(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parse("--server-start-timeout-s", text)
    assert "--server-start-timeout-s" in capsys.readouterr().err


def test_the_server_start_timeout_defaults_to_the_servers_own() -> None:
    assert _parse().server_start_timeout_s == DEFAULT_STARTUP_TIMEOUT_S == 300
    assert _parse("--server-start-timeout-s", "1200").server_start_timeout_s == 1200


def test_workers_take_a_count_or_auto() -> None:
    assert _parse("--workers", "4").workers == 4
    assert _parse("--workers", "AUTO").workers == "auto"
    assert _parse().workers is None  # the workload's client.workers then


def test_client_workers_in_the_workload_are_checked_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(BASE + "client:\n  workers: 0\n")
    with pytest.raises(ConfigError, match=r"client\.workers"):
        resolve_workload(path, None)
    path.write_text(BASE + "client:\n  workers: 3\n")
    assert resolve_workload(path, None).client.workers == 3


def _note(tmp_path: Path, *argv: str, text: str = BASE) -> str | None:
    base = _spec(tmp_path, text)
    args = _parse(*argv)
    return run_options.timing_note(base, run_options.apply_overrides(base, args), args)


def test_rate_on_a_trace_says_it_replaced_the_traces_timing(tmp_path: Path) -> None:
    """`--rate 5` on a trace workload is Poisson at 5/s, as `vllm bench serve --request-rate`,
    and the run says that the trace's own timestamps were not used."""
    assert _note(tmp_path, "--rate", "5") == (
        "--rate 5 replaced the trace's own timestamps with Poisson arrivals at 5 sessions/s "
        "(leave --rate out to replay the trace's timing, --time-scale to scale it)"
    )
    constant = _note(tmp_path, "--pattern", "constant", "--rate", "2.5")
    assert constant is not None
    assert constant.startswith("--pattern constant --rate 2.5 replaced the trace's own")
    assert "constant arrivals at 2.5 sessions/s" in constant
    closed = _note(tmp_path, "--concurrency", "4")
    assert closed is not None and "with a closed loop of 4 concurrent sessions" in closed


@pytest.mark.parametrize("argv", [("--rate", "5"), ("--concurrency", "4")])
def test_the_note_says_the_arrivals_in_the_summarys_words(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    """The note and summary.load.description say the applied arrivals in one wording."""
    from harness.run.finish import load_applied

    base = _spec(tmp_path, BASE)
    args = _parse(*argv)
    merged = run_options.apply_overrides(base, args)
    note = run_options.timing_note(base, merged, args)
    arrivals = load_applied(merged, 1).description.removesuffix(", at most 8 requests in flight")
    assert note is not None and f" with {arrivals} (" in note


def test_no_note_where_the_trace_timing_is_kept_or_there_was_none(tmp_path: Path) -> None:
    assert _note(tmp_path) is None
    assert _note(tmp_path, "--time-scale", "0") is None
    poisson = BASE.replace("pattern: trace", "pattern: poisson\n  rate_per_s: 1")
    assert _note(tmp_path, "--rate", "9", text=poisson) is None  # the file chose its pattern


def test_the_rate_help_says_what_it_does_to_a_trace() -> None:
    parser = argparse.ArgumentParser()
    run_options.add_run_args(parser)
    text = " ".join(parser.format_help().split())
    assert "Poisson arrivals as `vllm bench serve --request-rate`" in text
    assert "on a trace workload it replaces the trace's own timestamps" in text


def test_percentiles_default_and_parse() -> None:
    assert _parse().percentiles == (50.0, 90.0, 95.0, 99.0)
    assert _parse("--percentiles", "99,50, 99.9,p75").percentiles == (50.0, 75.0, 99.0, 99.9)
    assert _parse().csv is False and _parse("--csv").csv is True
    assert _parse().no_report is False and _parse("--no-report").no_report is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0,50", "0 is not a percentile: each must be > 0 and < 100"),
        ("100", "100 is not a percentile: each must be > 0 and < 100"),
        ("-5", "-5 is not a percentile"),
        ("nan", "nan is not a percentile"),
        ("50,fast", "'fast' is not a number"),
        ("50,,90", "an empty item (give e.g. 50,90,99)"),
        ("90,90", "90 is given twice"),
    ],
)
def test_bad_percentiles_are_usage_errors_naming_the_option(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse("--percentiles", value)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --percentiles: " in err and message in err


def test_gpu_metrics_urls_reach_the_plan_once_each_with_their_rate(tmp_path: Path) -> None:
    from harness.cli.run_cmd import run_plan

    args = _parse(
        *("--gpu-metrics", "node-a", "--gpu-metrics", "http://node-b:9400/metrics"),
        *("--gpu-metrics", "node-a:9400", "--gpu-metrics-every", "0.5"),
    )
    plan = run_plan(args, _spec(tmp_path), tmp_path / "out")
    assert plan.gpu_metrics == ("http://node-a:9400/metrics", "http://node-b:9400/metrics")
    assert plan.gpu_metrics_every_s == 0.5
    assert run_plan(_parse(), _spec(tmp_path), tmp_path / "out").gpu_metrics == ()


@pytest.mark.parametrize("argv", [("--gpu-metrics", "ftp://x"), ("--gpu-metrics-every", "0")])
def test_bad_gpu_metrics_options_are_usage_errors_naming_the_option(
    argv: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)
    assert argv[0] in capsys.readouterr().err


def test_the_steady_rule_is_parsed_into_the_plan(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert run_plan(_parse(), spec, tmp_path / "r").steady == SteadyRule(0.85, 20.0)
    given = _parse("--steady-frac", "0.7", "--steady-min-s", "30")
    assert run_plan(given, spec, tmp_path / "r").steady == SteadyRule(0.7, 30.0)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--steady-frac", "0"), ("--steady-frac", "1.5"), ("--steady-min-s", "0")],
)
def test_a_bad_steady_rule_is_a_usage_error_naming_the_option(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(option, value)
    assert info.value.code == 2
    assert f"argument {option}: {value} must be a finite number > 0" in capsys.readouterr().err


def test_gpus_take_indices_and_uuids() -> None:
    assert _parse("--gpus", "2,5").gpus == ("2", "5")
    assert _parse("--gpus", " GPU-1234-abcd , 3").gpus == ("GPU-1234-abcd", "3")
    assert _parse().gpus is None  # told from the server's processes then


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2,,5", "an empty item (give e.g. 2,5)"),
        ("cuda:0", "'cuda:0' is neither a GPU index nor a UUID"),
        ("-1", "'-1' is neither a GPU index nor a UUID"),
        ("2,2", "2 is given twice"),
    ],
)
def test_bad_gpus_are_usage_errors_naming_the_option(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _parse("--gpus", value)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --gpus: " in err and message in err
