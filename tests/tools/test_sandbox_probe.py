"""Whether bubblewrap can run here: its version and what it supports, and a refusal that
names the real cause (missing, too old, user namespaces blocked) with that cause's fix.

The probe's inputs are faked (bwrap's version, its error, the host's sysctls), never bwrap
itself; what an older bwrap lacks is also run for real through the installed one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.tools import sandbox, sandbox_bwrap
from harness.tools.sandbox import (
    TMPFS_BYTES,
    Features,
    SandboxUnavailable,
    require_sandbox,
    run_sandboxed,
    sandbox_problem,
)
from harness.tools.sandbox_probe import HostFacts, diagnose, host_facts, parse_version
from harness.tools.sandbox_view import python_view

NO_FACTS = HostFacts(False, False, None, None)
UID_MAP = "bwrap: setting up uid map: Permission denied"
NO_PERMISSION = (
    "bwrap: No permissions to create a new namespace, likely because the kernel does not "
    "allow non-privileged user namespaces."
)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("bubblewrap 0.8.0\n", (0, 8, 0)),
        ("bubblewrap 0.6.1", (0, 6, 1)),
        ("bubblewrap 0.11.1\n", (0, 11, 1)),  # compared as numbers: newer than 0.8.0
        ("bubblewrap 0.10\n", (0, 10, 0)),
        ("bwrap: Unknown option --version", None),
        ("", None),
    ],
)
def test_the_version_is_read_from_bwrap_version(
    text: str, version: tuple[int, int, int] | None
) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize(
    ("version", "size", "disable_userns"),
    [
        ((0, 6, 1), False, False),  # Ubuntu 22.04
        ((0, 6, 3), False, False),  # RHEL 9
        ((0, 7, 0), True, False),
        ((0, 8, 0), True, True),
        ((0, 11, 1), True, True),
        (None, False, False),  # unknown: neither newer option
    ],
)
def test_newer_options_only_from_the_version_that_has_them(
    version: tuple[int, int, int] | None, size: bool, disable_userns: bool
) -> None:
    features = Features(version)
    assert (features.tmpfs_size, features.disable_userns) == (size, disable_userns)
    args = sandbox_bwrap._bwrap_args("bwrap", features, python_view(), True, (3, 4, 5))
    assert ("--size" in args, "--disable-userns" in args) == (size, disable_userns)
    assert "--perms" in args and "--clearenv" in args  # what MIN_VERSION has


def _host(root: Path, files: dict[str, str]) -> HostFacts:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return host_facts(root)


def test_host_facts_are_read_from_the_sysctls_and_container_markers(tmp_path: Path) -> None:
    facts = _host(
        tmp_path,
        {
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
            "proc/sys/kernel/unprivileged_userns_clone": "0\n",
            "proc/sys/user/max_user_namespaces": "0\n",
            ".dockerenv": "",
        },
    )
    assert facts == HostFacts(True, True, 0, "docker")
    assert _host(tmp_path / "plain", {"proc/1/cgroup": "0::/init.scope\n"}) == NO_FACTS
    k8s = _host(tmp_path / "k8s", {"proc/1/cgroup": "0::/kubepods/burstable/pod1/abc\n"})
    assert k8s.container == "kubepods"


def test_apparmor_blocking_user_namespaces_names_its_sysctl_not_an_install() -> None:
    facts = HostFacts(True, False, None, None)
    problem = diagnose(UID_MAP, Features((0, 9, 0)), facts, root=True)
    assert problem.cause == "namespaces_blocked"
    assert "bubblewrap 0.9.0 is installed" in problem.detail and UID_MAP in problem.detail
    assert "as root too" in problem.detail  # the harness runs bwrap as an unprivileged uid
    assert "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in problem.fix
    assert "apt-get install" not in str(problem)


@pytest.mark.parametrize(
    ("facts", "hint"),
    [
        (HostFacts(False, True, None, None), "sysctl -w kernel.unprivileged_userns_clone=1"),
        (HostFacts(False, False, 0, None), "sysctl -w user.max_user_namespaces="),
        (HostFacts(False, False, 15000, "docker"), "--security-opt seccomp=unconfined"),
        (NO_FACTS, "blocks unprivileged user namespaces"),
    ],
)
def test_each_cause_of_blocked_namespaces_gets_its_own_fix(facts: HostFacts, hint: str) -> None:
    problem = diagnose(NO_PERMISSION, Features((0, 8, 0)), facts, root=False)
    assert problem.cause == "namespaces_blocked" and hint in problem.fix
    assert "as root" not in problem.detail


def test_a_root_harness_in_a_container_without_mount_namespaces_is_told_so() -> None:
    error = "sandbox setup (stage): [Errno 1] unshare(CLONE_NEWNS): Operation not permitted"
    problem = diagnose(error, Features((0, 8, 0)), HostFacts(False, False, None, "docker"), True)
    assert problem.cause == "namespaces_blocked"
    assert "mount namespace" in problem.detail
    assert "--cap-add SYS_ADMIN" in problem.fix


def test_another_failure_is_reported_as_bwrap_said_it() -> None:
    problem = diagnose(
        "bwrap: Can't mount proc on /newroot/proc", Features((0, 8, 0)), NO_FACTS, True
    )
    assert problem.cause == "failed" and "Can't mount proc" in problem.detail
    unknown = diagnose("bwrap: Unknown option --perms", Features(None), NO_FACTS, True)
    assert "0.8.0 or newer" in unknown.fix


@pytest.fixture
def faked(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The probe's inputs under the test's control: a bwrap on PATH, its version, its error
    in a trial, the host's facts."""
    inputs: dict[str, object] = {"version": (0, 8, 0), "error": None, "facts": NO_FACTS}
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: "/opt/bwrap")
    monkeypatch.setattr(sandbox, "bwrap_features", lambda b: Features(inputs["version"]))  # type: ignore[arg-type]
    monkeypatch.setattr(sandbox, "probe", lambda b: inputs["error"])
    monkeypatch.setattr(sandbox, "host_facts", lambda: inputs["facts"])
    monkeypatch.setattr(sandbox, "is_root", lambda: True)
    return inputs


def test_a_bwrap_older_than_the_minimum_is_refused_with_its_version(
    faked: dict[str, object],
) -> None:
    faked["version"] = (0, 4, 0)
    faked["error"] = "not tried"  # a too-old bwrap is refused before any trial
    problem = sandbox_problem()
    assert problem is not None and problem.cause == "too_old"
    assert "bubblewrap 0.4.0 is too old" in problem.detail and "0.5.0" in problem.detail
    assert "does not replace an installed bwrap" in problem.fix


def test_the_refusal_as_root_gives_the_cause_and_the_way_out(faked: dict[str, object]) -> None:
    faked["error"] = UID_MAP
    faked["facts"] = HostFacts(True, False, None, None)
    with pytest.raises(SandboxUnavailable) as refused:
        require_sandbox(allow_unsandboxed=False)
    message = str(refused.value)
    assert UID_MAP in message and "kernel.apparmor_restrict_unprivileged_userns=0" in message
    assert "--unsafe-no-sandbox" in message
    assert "install bubblewrap" not in message
    with pytest.raises(SandboxUnavailable, match="apparmor_restrict"):
        run_sandboxed("pass", cpu_s=1, memory_bytes=1 << 26, wall_s=1)


def test_bwrap_missing_says_how_to_install_it(
    faked: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "find_bwrap", lambda: None)
    problem = sandbox_problem()
    assert problem is not None and problem.cause == "missing"
    assert "apt-get install bubblewrap" in problem.fix and "setup-sandbox" in problem.fix


@pytest.mark.usefixtures("needs_bwrap")
@pytest.mark.skipif(os.geteuid() != 0, reason="a root harness mounts the tmpfs itself")
def test_as_root_a_bwrap_without_size_still_gets_capped_tmpfs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The installed bwrap run with only what 0.6.1 has: /tmp and /dev/shm are the tmpfs the
    harness mounted with their size, the hidden site-packages stays read-only, and the
    result says that nested user namespaces are not blocked."""
    monkeypatch.setattr(sandbox, "bwrap_features", lambda b: Features((0, 6, 1)))
    masks = python_view().masks
    code = f"""
import os
for folder in ("/tmp", "/dev/shm"):
    written = 0
    try:
        for n in range(6):  # 6 MiB files: RLIMIT_FSIZE never stops them, the tmpfs does
            with open(f"{{folder}}/big{{n}}", "wb") as f:
                for _ in range(6):
                    written += f.write(b"x" * (1 << 20))
                    f.flush()
    except OSError:
        pass
    print(folder, written)
for mask in {list(masks)!r}:
    try:
        os.chmod(mask, 0o777)
        open(os.path.join(mask, "x"), "w").close()
        print("wrote", mask)
    except OSError as exc:
        print("denied", mask, type(exc).__name__)
"""
    r = run_sandboxed(code, cpu_s=5, memory_bytes=1 << 28, wall_s=15)
    assert r.status == "ok" and r.backend == "bwrap", r
    lines = r.stdout.splitlines()
    for line in lines[:2]:
        assert 0 < int(line.split()[1]) <= TMPFS_BYTES, r
    assert [line.split()[0] for line in lines[2:]] == ["denied"] * len(masks), r
    assert f"of {TMPFS_BYTES} B each" in r.enforced["disk"]
    assert "may make nested user namespaces" in r.enforced["identity"]
