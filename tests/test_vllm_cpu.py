"""Tests of harness.vllm_cpu: telling a CPU build of vLLM apart, and its launch defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.vllm_cpu import (
    GIB_BYTES,
    KV_SPACE_ENV,
    available_memory_bytes,
    cpu_defaults,
    detect_build,
    kv_cache_gib,
)

REPO = Path(__file__).resolve().parents[1]
CPU_VLLM = REPO / ".vllm" / "venv" / "bin" / "vllm"


def test_defaults_without_user_settings() -> None:
    """No settings of the user's: eager mode and a quarter of the free memory as KV cache."""
    defaults = cpu_defaults([], {}, 20 * GIB_BYTES)
    assert defaults.args == ("--enforce-eager",)
    assert defaults.env == {KV_SPACE_ENV: "5"}
    assert [d["setting"] for d in defaults.applied] == ["--enforce-eager", f"{KV_SPACE_ENV}=5"]
    assert "20.0 GiB free" in defaults.describe()


@pytest.mark.parametrize(
    "args",
    [
        ["--enforce-eager"],
        ["--no-enforce-eager"],
        ["--compilation-config", '{"mode": 3}'],
        ["-cc.mode=none"],
        ["-O3"],
        ["--optimization-level=2"],
    ],
)
def test_the_users_compilation_choice_replaces_eager(args: list[str]) -> None:
    """Any compilation setting of the user's: no --enforce-eager added."""
    defaults = cpu_defaults(args, {}, 8 * GIB_BYTES)
    assert defaults.args == ()
    assert [d["setting"] for d in defaults.applied] == [f"{KV_SPACE_ENV}=2"]


@pytest.mark.parametrize(
    ("args", "environ"),
    [
        (["--kv-cache-memory-bytes", "2000000000"], {}),
        (["--kv-cache-memory-bytes=2G"], {}),
        (["--gpu-memory-utilization", "0.3"], {}),
        (["--device-memory-utilization=0.3"], {}),
        ([], {KV_SPACE_ENV: "3"}),
    ],
)
def test_the_users_memory_setting_replaces_the_kv_share(
    args: list[str], environ: dict[str, str]
) -> None:
    """A KV cache size or memory share of the user's (flag or environment): none added,
    since VLLM_CPU_KVCACHE_SPACE would override a flag in vllm-cpu."""
    defaults = cpu_defaults(args, environ, 8 * GIB_BYTES)
    assert defaults.env == {}
    assert defaults.args == ("--enforce-eager",)


def test_kv_share_bounds() -> None:
    """At least 1 GiB on a nearly full host, at most 16 GiB on a large one."""
    assert kv_cache_gib(GIB_BYTES // 2) == 1
    assert kv_cache_gib(11 * GIB_BYTES) == 2
    assert kv_cache_gib(1024 * GIB_BYTES) == 16


def test_available_memory_is_positive_and_no_more_than_the_host_has() -> None:
    """The free memory read is a real, positive figure."""
    import psutil

    free = available_memory_bytes()
    assert 0 < free <= psutil.virtual_memory().total


def test_target_device_cpu_is_a_cpu_build() -> None:
    """VLLM_TARGET_DEVICE=cpu marks a CPU build whatever is installed."""
    build = detect_build("no-such-vllm-command-xyz", {"VLLM_TARGET_DEVICE": "cpu"})
    assert build.cpu and build.evidence == "VLLM_TARGET_DEVICE=cpu"


def test_missing_or_non_python_vllm_is_not_taken_for_cpu(tmp_path: Path) -> None:
    """Nothing on PATH, or a command that is not a Python console script: not a CPU build,
    and the evidence says why."""
    assert not detect_build("no-such-vllm-command-xyz", {}).cpu
    shell = tmp_path / "vllm"
    shell.write_text("#!/usr/bin/env bash\nexit 0\n")
    shell.chmod(0o755)
    build = detect_build(str(shell), {})
    assert not build.cpu and "not a Python console script" in build.evidence


@pytest.mark.parametrize("quote", ["", '"'])
def test_a_console_script_in_a_long_path_is_read_through_its_sh_line(
    tmp_path: Path, quote: str
) -> None:
    """A venv deeper than a `#!` line can hold (127 bytes) gets pip's `#!/bin/sh` script with
    the interpreter on its `exec` line (quoted where the path has a space): that Python is
    the one asked for the versions."""
    home = tmp_path / ("a-long-directory-name-" * 6) / ("with space" if quote else "plain")
    home.mkdir(parents=True)
    script = home / "vllm"
    python = f"{quote}{sys.executable}{quote}"
    script.write_text(f"#!/bin/sh\n'''exec' {python} \"$0\" \"$@\"\n' '''\nimport sys\n")
    script.chmod(0o755)
    build = detect_build(str(script), {})
    assert "not a Python console script" not in build.evidence, build.evidence
    assert not build.cpu  # this interpreter has no vllm installed


@pytest.mark.skipif(not CPU_VLLM.exists(), reason="the project's vLLM CPU venv is not set up")
def test_the_projects_vllm_cpu_install_is_a_cpu_build() -> None:
    """The real vllm-cpu 0.32 install in .vllm/venv identifies itself as a CPU build."""
    build = detect_build(str(CPU_VLLM), {})
    assert build.cpu
    assert build.version is not None and "cpu" in build.version
    assert build.to_dict()["cpu"] is True
