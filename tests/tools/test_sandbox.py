"""The sandbox: limits, statuses, exact child CPU and memory, cleanup and network isolation."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from harness.tools.sandbox import (
    NOFILE_LIMIT,
    SandboxResult,
    SandboxUnavailable,
    find_bwrap,
    require_sandbox,
    run_sandboxed,
)

MiB = 1024 * 1024


def _run(
    code: str, *, cpu_s: float = 5, memory_bytes: int = 256 * MiB, wall_s: float = 10
) -> SandboxResult:
    return run_sandboxed(code, cpu_s=cpu_s, memory_bytes=memory_bytes, wall_s=wall_s)


@pytest.mark.usefixtures("needs_bwrap")
def test_cpu_bound_program_is_ok_and_its_cpu_time_is_measured() -> None:
    """The measured CPU time covers what the program itself counted (a loaded host slows the
    wall clock, not the CPU seconds), and never exceeds the wall time by more than a core."""
    code = (
        "import time\nx = 0\nfor i in range(4_000_000):\n    x += i * i\n"
        "print(time.process_time())\n"
    )
    r = _run(code)
    assert r.status == "ok" and r.exit_code == 0, r
    own = float(r.stdout.strip())
    measured = r.cpu_user_s + r.cpu_system_s
    assert own > 0.1
    assert own <= measured <= own + 0.5 and measured <= r.wall_s * 1.05 + 0.05, r
    assert r.peak_rss_bytes is not None and r.peak_rss_bytes > 1 * MiB


@pytest.mark.usefixtures("needs_bwrap")
def test_infinite_loop_is_killed_at_its_cpu_limit() -> None:
    r = _run("while True:\n    pass\n", cpu_s=1, wall_s=20)
    assert r.status == "cpu_limit", r
    assert r.cpu_user_s + r.cpu_system_s >= 0.9


@pytest.mark.usefixtures("needs_bwrap")
def test_sleep_forever_is_killed_at_its_wall_limit_in_its_own_tmp() -> None:
    code = "import os, time\nprint(os.getcwd(), flush=True)\ntime.sleep(3600)\n"
    r = _run(code, wall_s=0.5)
    assert r.status == "timeout", r
    assert 0.5 <= r.wall_s < 5
    assert r.stdout.strip() == "/tmp"  # the sandbox's own tmpfs, not a folder of the host's


@pytest.mark.usefixtures("needs_bwrap")
def test_memory_hog_hits_the_memory_limit() -> None:
    r = _run("x = bytearray(1 << 30)\n", memory_bytes=128 * MiB)
    assert r.status == "memory_limit", r


@pytest.mark.usefixtures("needs_bwrap")
def test_non_zero_exit_is_failed_with_stderr() -> None:
    r = _run("import sys\nsys.stderr.write('boom\\n')\nraise SystemExit(3)\n")
    assert (r.status, r.exit_code) == ("failed", 3)
    assert "boom" in r.stderr


@pytest.mark.usefixtures("needs_bwrap")
def test_exception_is_failed_with_traceback() -> None:
    r = _run("raise RuntimeError('nope')\n")
    assert r.status == "failed" and "RuntimeError: nope" in r.stderr


@pytest.mark.usefixtures("needs_bwrap")
def test_child_gets_a_clean_environment_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HARNESS_SECRET", "s3cret")
    code = (
        "import os, resource, sys\n"
        "print(sorted(os.environ))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "print(sys.flags.isolated, sys.flags.no_site)\n"
    )
    r = _run(code)
    env_line, nofile, flags = r.stdout.splitlines()
    assert "HTTPS_PROXY" not in env_line and "HARNESS_SECRET" not in env_line
    assert int(nofile) == NOFILE_LIMIT
    assert flags == "1 1"


@pytest.mark.usefixtures("needs_bwrap")
def test_network_is_unreachable_when_isolated() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        r = _run(code)
    if not r.network_isolated:
        pytest.skip("network namespaces are not available here: isolation is best-effort")
    assert r.status == "failed" and "Error" in r.stderr, r


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        run_sandboxed("pass", cpu_s=0, memory_bytes=MiB, wall_s=1)


@pytest.mark.usefixtures("needs_bwrap")
def test_peak_rss_is_the_programs_not_the_parents() -> None:
    ballast = bytearray(b"x") * (150 * MiB)  # resident in this (parent) process
    small = _run("pass\n")
    big = _run("x = bytearray(100_000_000)\n")
    del ballast
    assert small.peak_rss_bytes is not None and small.peak_rss_bytes < 60 * MiB
    assert big.peak_rss_bytes is not None and 100_000_000 < big.peak_rss_bytes < 160 * MiB


@pytest.mark.usefixtures("needs_bwrap")
def test_runs_in_bubblewrap_with_every_limit_said() -> None:
    r = _run("print('hi')\n")
    assert (r.status, r.stdout, r.backend) == ("ok", "hi\n", "bwrap")
    assert r.network_isolated and r.host_uid is not None
    assert {"memory", "processes", "cpu", "wall", "disk", "network"} <= set(r.enforced)
    assert r.clamped == ()


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH on which there is no bwrap (the sandbox is found on PATH)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_bwrap() is None


@pytest.mark.usefixtures("no_bwrap")
@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is for a harness running as root")
def test_as_root_without_bwrap_generated_code_is_refused_and_the_fix_named() -> None:
    with pytest.raises(SandboxUnavailable, match=r"apt-get install bubblewrap.*setup-sandbox"):
        require_sandbox(allow_unsandboxed=False)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        _run("print('hi')\n")
    require_sandbox(allow_unsandboxed=True)  # the explicit opt-out


@pytest.mark.usefixtures("no_bwrap")
def test_without_bwrap_the_rlimit_sandbox_says_what_it_does_not_contain() -> None:
    r = run_sandboxed(
        "print('hi')\n", cpu_s=5, memory_bytes=256 * MiB, wall_s=10, allow_unsandboxed=True
    )
    assert (r.status, r.stdout, r.backend) == ("ok", "hi\n", "rlimits")
    # the interpreter's own VmHWM, from the prelude's report (never the parent's RSS)
    assert r.peak_rss_bytes is not None and r.peak_rss_bytes < 60 * MiB, r
    assert "per process" in r.enforced["memory"] and "cgroup" not in r.enforced["memory"]
    assert "writable" in r.enforced["disk"]


@pytest.mark.usefixtures("no_bwrap")
@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is for a harness running as root")
def test_the_cli_refuses_execute_before_any_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    workload = tmp_path / "w.yaml"
    workload.write_text("name: w\nsource: {synthetic: agent, params: {sessions: 1}}\n")
    args = ["run", str(workload), "--tools", "execute", "--server", "http://127.0.0.1:9"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install bubblewrap" in err and "--unsafe-no-sandbox" in err
    assert "127.0.0.1:9" not in err  # the server was never tried
    assert not (tmp_path / "out").exists()
    assert main([*args, "--unsafe-no-sandbox", "--out", str(tmp_path / "out")]) == 2
    assert "bubblewrap" not in capsys.readouterr().err  # past the check: the server's error
