"""The CLI's consoles: text prints literally (no markup, no emoji codes), and to a stream that
is not a terminal nothing is wrapped or cut at 80 columns, whatever COLUMNS says."""

from __future__ import annotations

import pytest
from rich.table import Table

from harness.cli.console import PIPE_RULE_WIDTH, make_console, one_line, print_error, rule


@pytest.fixture(autouse=True)
def _columns_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def test_text_prints_literally_and_unwrapped(capsys: pytest.CaptureFixture[str]) -> None:
    long = "/" + "p" * 300
    make_console().print(f"[/bold] [red]x :smile: {long}")
    assert capsys.readouterr().out == f"[/bold] [red]x :smile: {long}\n"


def test_a_table_is_not_cut_at_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    table = Table(title="[/t]")
    table.add_column("name")
    table.add_column("value")
    table.add_row("n" * 200, "[bold]1[/]")
    make_console().print(table)
    out = capsys.readouterr().out
    assert "[/t]" in out
    assert any("n" * 200 in line and "[bold]1[/]" in line for line in out.splitlines())


def test_print_error_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    print_error(make_console(stderr=True), "f.yaml: key 'a' [/x]\n  f.yaml: key 'b'\n\n")
    assert capsys.readouterr().err == "error: f.yaml: key 'a' [/x]; f.yaml: key 'b'\n"


def test_one_line() -> None:
    assert one_line("a\n\n  b  \r\nc") == "a; b; c"
    assert one_line("single") == "single"


def test_a_rule_to_a_pipe_is_80_columns(capsys: pytest.CaptureFixture[str]) -> None:
    rule(make_console(), "w [/x]: rate 1")
    (line,) = capsys.readouterr().out.splitlines()
    assert len(line) == PIPE_RULE_WIDTH and " w [/x]: rate 1 " in line


def test_a_closed_pipe_is_left_to_the_caller() -> None:
    """rich would exit 1 itself; the CLI's console raises, so main picks the exit status."""
    console = make_console()
    with pytest.raises(BrokenPipeError):
        console.on_broken_pipe()
    assert console.quiet


def test_errors_are_scrubbed_of_url_credentials() -> None:
    import io

    from rich.console import Console

    from harness.cli.console import print_error

    buf = io.StringIO()
    print_error(Console(file=buf, width=200), "cannot reach http://u:topsecret@h:1/v1?token=abc")
    out = buf.getvalue()
    assert "topsecret" not in out and "abc" not in out and "http://***@h:1" in out
