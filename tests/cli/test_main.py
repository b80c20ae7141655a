"""The `harness` command as a user runs it, in a subprocess with stderr piped (not a terminal)
and COLUMNS=80: errors are one plain line (user data printed literally, never read as markup,
never wrapped), argparse and validation errors name the option, an unexpected exception is one
line asking for a report, and a reader that closes stdout ends the run quietly. Every input
here fails (or finishes) before a server would be needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "profiles" / "h200-llama70b-fp8-trtllm.yaml"
SCENARIO = REPO / "scenarios" / "china-30t.yaml"
AZURE = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2023-11-16 18:15:46.6805900,374,44\n"
    "2023-11-16 18:15:47.0000000,210,12\n"
)
TIMEOUT_S = 120


def _env() -> dict[str, str]:
    """The user's environment with COLUMNS=80 and this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["COLUMNS"] = "80"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _harness(cwd: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `harness ARGV` with stdout and stderr piped."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *map(str, argv)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def _error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line on stderr of a run that exited `code`, with no traceback."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _workload(tmp_path: Path, extra: str = "", name: str = "w") -> Path:
    (tmp_path / "t.csv").write_text(AZURE)
    path = tmp_path / "w.yaml"
    path.write_text(f"name: {name}\nsource:\n  trace: t.csv\n  format: azure\n{extra}")
    return path


# --- user data is never markup ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name: w\nsource:\n  synthetic: agent\n"[/oops]": 1\n', "unknown key '[/oops]'"),
        ("name: w\nsource:\n  trace: '[/x] [bold]t.csv'\n", "/[/x] [bold]t.csv: "),
    ],
)
def test_markup_in_a_yaml_key_or_value_prints_literally(
    tmp_path: Path, text: str, needle: str
) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(text)
    proc = _harness(tmp_path, "workload", "inspect", workload)
    line = _error_line(proc, 2)
    assert line.startswith("error: ") and needle in line
    assert "MarkupError" not in proc.stderr


def test_markup_in_a_trace_value_prints_literally(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text(AZURE + "2023-11-16 18:15:48.0000000,[/bold],44\n")
    line = _error_line(_harness(tmp_path, "workload", "inspect", trace), 2)
    assert "bad.csv:4" in line and "ContextTokens" in line and "'[/bold]'" in line


def test_markup_in_a_workload_name_prints_literally(tmp_path: Path) -> None:
    proc = _harness(tmp_path, "workload", "inspect", _workload(tmp_path, name="'[/x] [bold]w'"))
    assert proc.returncode == 0, proc.stderr
    assert "workload [/x] [bold]w" in proc.stdout


def test_markup_in_an_accelerator_name_prints_literally(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\nsource: s\naccelerator: '[/Z9]'\ncapacity_tok_s: 1\nbusy_w: 1\nidle_w: 0\n"
    )
    line = _error_line(_harness(tmp_path, "fleet", SCENARIO, "--profile", profile), 2)
    assert "key 'accelerator': '[/Z9]' is not in the catalog" in line


def test_markup_in_a_scenario_name_prints_literally_in_the_tables(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    text = SCENARIO.read_text().replace("name: china-30t", "name: '[/s] [red]x'", 1)
    scenario.write_text(text)
    proc = _harness(tmp_path, "fleet", scenario, "--profile", PROFILE)
    assert proc.returncode == 0, proc.stderr
    assert "[/s] [red]x" in proc.stdout


# --- not wrapped or cut when the stream is not a terminal ---------------------------------


def test_a_long_path_in_an_error_stays_on_one_line(tmp_path: Path) -> None:
    missing = tmp_path / ("d" * 200) / "trace.csv"
    line = _error_line(_harness(tmp_path, "workload", "inspect", missing), 2)
    assert line == f"error: {missing}: no such file"


def test_a_long_key_in_an_error_stays_on_one_line(tmp_path: Path) -> None:
    key = "k" * 200
    line = _error_line(
        _harness(tmp_path, "workload", "inspect", _workload(tmp_path, f"{key}: 1\n")), 2
    )
    assert f"unknown key '{key}'" in line


def test_a_long_name_in_a_table_is_not_cut_at_80_columns(tmp_path: Path) -> None:
    name = "p-" + "x" * 150
    profile = tmp_path / "p.yaml"
    profile.write_text(
        PROFILE.read_text().replace("name: h200-llama70b-fp8-trtllm", f"name: {name}")
    )
    proc = _harness(tmp_path, "fleet", SCENARIO, "--profile", profile)
    assert proc.returncode == 0, proc.stderr
    assert any(name in line for line in proc.stdout.splitlines())


# --- argparse and validation errors: one line naming the option ---------------------------


def test_an_argparse_error_is_one_line_naming_the_option(tmp_path: Path) -> None:
    line = _error_line(_harness(tmp_path, "run", _workload(tmp_path), "--rate", "abc"), 2)
    assert line == (
        "harness run: error: argument --rate: invalid float value: 'abc' (see harness run --help)"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--max-requests", "-5"], "error: --max-requests -5: Input should be greater than 0"),
        (
            ["--pattern", "poisson"],
            "error: --pattern poisson: pattern 'poisson' needs 'rate_per_s'",
        ),
    ],
)
def test_an_invalid_option_value_is_one_line_naming_the_option(
    tmp_path: Path, argv: list[str], expected: str
) -> None:
    line = _error_line(_harness(tmp_path, "run", _workload(tmp_path), *argv), 2)
    assert line == expected


def test_an_invalid_sweep_slo_option_names_the_option(tmp_path: Path) -> None:
    argv = ["sweep", _workload(tmp_path), "--rates", "1", "--slo-ttft-ms", "-1"]
    line = _error_line(_harness(tmp_path, *argv), 2)
    assert line == "error: --slo-ttft-ms -1.0: Input should be greater than 0"


# --- the last resort: no traceback, one line, exit 1 --------------------------------------

_CRASH = """\
import sys
from harness.cli import main, workload_cmd

def boom(sessions):
    raise ZeroDivisionError("a [/bold] bug\\nsecond line")

workload_cmd.workload_stats = boom
sys.exit(main(sys.argv[1:]))
"""


def test_an_unexpected_exception_is_one_line_asking_for_a_report(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(AZURE)
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, "workload", "inspect", str(trace)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    line = _error_line(proc, 1)
    assert line.startswith("internal error: ZeroDivisionError: a [/bold] bug; second line (at ")
    assert "harness/cli/workload_cmd.py:" in line  # the innermost frame in the harness
    assert "please report it" in line and f"harness workload inspect {trace}" in line


# --- a reader that goes away ---------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_a_closed_stdout_exits_quietly(tmp_path: Path, json_flag: list[str]) -> None:
    """`harness workload inspect X | head`: head has gone before the table is written."""
    trace = tmp_path / "t.csv"
    trace.write_text(AZURE)
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "workload", "inspect", str(trace), *json_flag],
            cwd=tmp_path,
            env=_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=TIMEOUT_S,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["runn"], "(did you mean 'run'?)"),
        (["run", "w.yaml", "--format", "mooncak"], "(did you mean 'mooncake'?)"),
        (["run", "w.yaml", "--pattern", "poison"], "(did you mean 'poisson'?)"),
    ],
)
def test_an_invalid_choice_suggests_the_closest(tmp_path: Path, argv: list[str], hint: str) -> None:
    line = _error_line(_harness(tmp_path, *argv), 2)
    assert "invalid choice" in line and hint in line


def test_a_run_directory_in_use_names_the_overwrite_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The library says the directory holds a run (RunExistsError, no option names); the
    command line adds its own option for replacing it."""
    from harness.cli import main, report_cmd
    from harness.errors import RunExistsError
    from harness.results import RunWriter

    used = tmp_path / "run"
    RunWriter(used).write_manifest({"run_name": "old"})
    with pytest.raises(RunExistsError) as info:
        RunWriter(used)
    assert "overwrite" not in str(info.value)

    def handler(args: object) -> int:
        RunWriter(used)
        return 0

    monkeypatch.setattr(report_cmd, "report", handler)
    assert main(["report", str(used)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{used}: already holds a run (manifest.json" in err
    assert "pass --overwrite to replace it, or choose another --out" in err
    assert "overwrite=True" not in err


def test_a_command_imports_only_its_own_module() -> None:
    """`harness workload inspect` does not pay for the charting and run commands' imports
    (matplotlib, the run engine); --version imports no command; help lists every command."""
    probe = (
        "import sys; from harness.cli import _parser; _parser(sys.argv[1:]); "
        "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'harness.cli.'))))"
    )

    def loaded(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
        )
        return done.stdout

    inspect = loaded("workload", "inspect", "x.yaml")
    assert "harness.cli.workload_cmd" in inspect
    assert "matplotlib" not in inspect and "harness.cli.run_cmd" not in inspect
    assert "_cmd" not in loaded("--version")
    everything = loaded("--help")
    assert all(f"harness.cli.{m}_cmd" in everything for m in ("run", "compare", "fleet"))
