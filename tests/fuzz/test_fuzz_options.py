"""Fuzzing the load options of `harness run` (and `sweep`): any value gives a workload whose
numbers are finite and within bounds, or a clear error (argparse's usage error, or a
ConfigError naming the option), never a traceback. The values found by hand run through
the real command in a subprocess: exit 2, one line, no "Traceback"."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_inputs import FUZZ, NASTY_NUMBERS, NASTY_TEXT
from hypothesis import example, given
from hypothesis import strategies as st

from harness.cli.run_options import add_run_args, apply_overrides
from harness.errors import ConfigError
from harness.workload.limits import (
    MAX_CONCURRENCY,
    MAX_DURATION_S,
    MAX_RATE_PER_S,
    MAX_REQUESTS,
    MAX_TIME_SCALE,
)
from harness.workload.spec import WorkloadSpec, load_workload

WORKLOAD = """\
name: fuzz
source:
  synthetic: random
  params: {requests: 4, input_tokens: 16, output_tokens: 4}
arrival: {pattern: trace}
"""
OPTIONS = (
    "--rate",
    "--concurrency",
    "--time-scale",
    "--max-concurrency",
    "--max-requests",
    "--duration",
    "--warmup",
)
values = (
    st.sampled_from([str(v) for v in NASTY_NUMBERS] + list(NASTY_TEXT))
    | st.floats().map(str)
    | st.integers().map(str)
    | st.text(max_size=8)
)


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("options") / "w.yaml"
    path.write_text(WORKLOAD)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness run", exit_on_error=True)
    add_run_args(parser)
    return parser


def _check_bounds(spec: WorkloadSpec) -> None:
    """Every number an option can set is finite and within its bound."""
    arrival, limits = spec.arrival, spec.limits
    assert math.isfinite(arrival.time_scale) and 0 <= arrival.time_scale <= MAX_TIME_SCALE
    if arrival.rate_per_s is not None:
        assert math.isfinite(arrival.rate_per_s) and 0 < arrival.rate_per_s <= MAX_RATE_PER_S
    for count, top in (
        (arrival.concurrency, MAX_CONCURRENCY),
        (limits.max_concurrency, MAX_CONCURRENCY),
        (limits.max_requests, MAX_REQUESTS),
    ):
        assert count is None or 0 < count <= top
    assert 0 <= limits.warmup_requests <= MAX_REQUESTS
    if limits.duration_s is not None:
        assert math.isfinite(limits.duration_s) and 0 < limits.duration_s <= MAX_DURATION_S


@FUZZ
@given(option=st.sampled_from(OPTIONS), value=values, pattern=st.sampled_from(("", "poisson")))
@example(option="--rate", value="nan", pattern="poisson")
@example(option="--rate", value="1e400", pattern="poisson")
@example(option="--time-scale", value="inf", pattern="")
@example(option="--duration", value="inf", pattern="")
@example(option="--max-requests", value="-1", pattern="")
def test_load_options(workload: Path, option: str, value: str, pattern: str) -> None:
    argv = [str(workload), f"{option}={value}"]  # "=": a value like -1 is not an option
    if pattern:
        argv += ["--pattern", pattern]
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage):
            args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's own message: not a number of that type
        assert exit_.code == 2
        assert "error:" in usage.getvalue() and "Traceback" not in usage.getvalue()
        return
    try:
        spec = apply_overrides(load_workload(workload), args)
    except ConfigError as err:
        assert str(err).strip() and "Traceback" not in str(err)
        return
    _check_bounds(spec)


# --- the command itself, in a subprocess ----------------------------------------------------

MAIN = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--rate", "nan"], ("--rate", "rate_per_s")),
        (["--rate", "1e400"], ("--rate", "rate_per_s")),
        (["--max-requests", "-1"], ("--max-requests", "max_requests")),
        (["--duration", "inf"], ("--duration", "duration_s")),
        (["--time-scale", "inf"], ("--time-scale", "time_scale")),
        (["--time-scale", "nan"], ("--time-scale", "time_scale")),
        (["--concurrency", str(10**9)], ("--concurrency", "concurrency")),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_option_values_exit_2_in_one_line(
    tmp_path: Path, argv: list[str], names: tuple[str, ...]
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD)
    # an unreachable server: a wrongly accepted value would fail later, naming the server
    command = [sys.executable, "-c", MAIN, "run", str(path), *argv]
    command += ["--server", "http://127.0.0.1:9", "--out", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert "Traceback" not in err
    assert err and "\n" not in err, err
    assert any(name in err for name in names), err


def test_inspect_json_never_prints_infinity(tmp_path: Path) -> None:
    trace = tmp_path / "burst.csv"
    trace.write_text("Timestamp,Request tokens,Response tokens\n0,1,1\n1e308,1,1\n")
    command = [sys.executable, "-c", MAIN, "workload", "inspect", str(trace), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert "Infinity" not in done.stdout
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{trace}:3: field 'Timestamp'" in done.stderr
