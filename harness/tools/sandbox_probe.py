"""Whether bubblewrap can sandbox code here, and if not why and what to do about it.

bwrap's version says which of its options the sandbox may use (`Features`): 0.5.0 is the
oldest it runs on (`--perms`, `--clearenv`), 0.7.0 added `--size` for a tmpfs, 0.8.0
`--disable-userns` (Ubuntu 22.04 ships 0.6.1, RHEL 9 0.6.3). A failed trial is put down to
its cause (`Problem`): bwrap missing, too old, or the user namespace it needs blocked (by
`kernel.unprivileged_userns_clone`, `user.max_user_namespaces`, Ubuntu's AppArmor restriction
or a container's seccomp profile; as root too, since the harness runs bwrap as an
unprivileged uid), each with its own fix.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Version = tuple[int, int, int]
MIN_VERSION: Version = (0, 5, 0)
"""The oldest bubblewrap the sandbox runs on (`--perms` for its tmpfs modes, `--clearenv`)."""
SIZE_VERSION: Version = (0, 7, 0)
"""The first bubblewrap with `--size` (a size-limited tmpfs)."""
DISABLE_USERNS_VERSION: Version = (0, 8, 0)
"""The first bubblewrap with `--disable-userns` (no user namespace made inside)."""
_VERSION = re.compile(r"\bbubblewrap\s+(\d+)\.(\d+)(?:\.(\d+))?")
_VERSION_TIMEOUT_S = 10.0
INSTALL_HINT = "install bubblewrap (`apt-get install bubblewrap`, or `make setup-sandbox`)"
_UPGRADE_HINT = (
    "install bubblewrap 0.8.0 or newer (Debian 12 and Ubuntu 24.04 ship one; elsewhere a "
    "backport or a build of https://github.com/containers/bubblewrap); `make setup-sandbox` "
    "does not replace an installed bwrap"
)
_NAMESPACE_ERRORS = (
    "setting up uid map",
    "setting up gid map",
    "creating new namespace",
    "no permissions to creat",
    "unshare user ns",
    "max_user_namespaces",
    "rtm_newaddr",
)
"""bwrap's own words when it may not make or set up its user namespace (lower case)."""
_CONTAINER_MARKERS = ("docker", "kubepods", "containerd", "libpod", "lxc")


def parse_version(text: str) -> Version | None:
    """The version in `bwrap --version`'s output ("bubblewrap 0.6.1"), or None."""
    m = _VERSION.search(text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def label(version: Version | None) -> str:
    """A version as people write it, "0.6.1" ("of unknown version" where not known)."""
    return ".".join(map(str, version)) if version is not None else "of unknown version"


@dataclass(frozen=True, slots=True)
class Features:
    """What the installed bubblewrap can do, from its version (None: unknown, so neither
    of the newer options is used)."""

    version: Version | None

    @property
    def tmpfs_size(self) -> bool:
        return self.version is not None and self.version >= SIZE_VERSION

    @property
    def disable_userns(self) -> bool:
        return self.version is not None and self.version >= DISABLE_USERNS_VERSION


_features: dict[str, Features] = {}


def bwrap_features(bwrap: str) -> Features:
    """What `bwrap` supports, from `bwrap --version` (kept once the version was read)."""
    known = _features.get(bwrap)
    if known is not None:
        return known
    try:
        done = subprocess.run(
            [bwrap, "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            env={},
            check=False,
        )
        version = parse_version(done.stdout + done.stderr)
    except (OSError, subprocess.SubprocessError):
        version = None
    found = Features(version)
    if version is not None:
        _features[bwrap] = found
    return found


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What on this host may block the user namespace bwrap needs."""

    apparmor_restricts_userns: bool
    userns_clone_disabled: bool
    max_user_namespaces: int | None
    container: str | None


def host_facts(root: Path = Path("/")) -> HostFacts:
    """The sysctls and container markers under `root` (the host's / unless a test's)."""

    def read(rel: str) -> str | None:
        try:
            return (root / rel).read_text().strip()
        except OSError:
            return None

    max_ns = read("proc/sys/user/max_user_namespaces")
    container: str | None = None
    if (root / ".dockerenv").exists():
        container = "docker"
    elif (root / "run/.containerenv").exists():
        container = "podman"
    else:
        init_cgroup = read("proc/1/cgroup") or ""
        container = next((m for m in _CONTAINER_MARKERS if m in init_cgroup), None)
    return HostFacts(
        apparmor_restricts_userns=read("proc/sys/kernel/apparmor_restrict_unprivileged_userns")
        == "1",
        userns_clone_disabled=read("proc/sys/kernel/unprivileged_userns_clone") == "0",
        max_user_namespaces=int(max_ns) if max_ns is not None and max_ns.isdigit() else None,
        container=container,
    )


Cause = Literal["missing", "too_old", "namespaces_blocked", "failed"]


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the bubblewrap sandbox cannot run here (`detail`) and how to fix that (`fix`);
    the way out without a sandbox (`--unsafe-no-sandbox`) is the caller's to add."""

    cause: Cause
    detail: str
    fix: str

    def __str__(self) -> str:
        return f"{self.detail}; {self.fix}"


def missing() -> Problem:
    return Problem("missing", "bwrap (bubblewrap) is not installed", INSTALL_HINT)


def too_old(version: Version | None) -> Problem | None:
    """The problem with a bubblewrap older than MIN_VERSION, or None."""
    if version is None or version >= MIN_VERSION:
        return None
    return Problem(
        "too_old",
        f"bubblewrap {label(version)} is too old: the sandbox needs {label(MIN_VERSION)} or "
        f"newer (--perms, --clearenv; {label(SIZE_VERSION)} adds --size, "
        f"{label(DISABLE_USERNS_VERSION)} --disable-userns)",
        _UPGRADE_HINT,
    )


def _namespace_hints(facts: HostFacts, root: bool) -> list[str]:
    """What to change on this host so that an unprivileged uid may make user namespaces."""
    hints: list[str] = []
    if facts.apparmor_restricts_userns:
        hints.append(
            "AppArmor restricts unprivileged user namespaces here "
            "(kernel.apparmor_restrict_unprivileged_userns = 1, the default since Ubuntu "
            "23.10): allow them with `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` "
            "(a file in /etc/sysctl.d/ keeps it), or load an AppArmor profile that gives "
            "bwrap `userns`"
        )
    if facts.userns_clone_disabled:
        hints.append("allow them with `sysctl -w kernel.unprivileged_userns_clone=1`")
    if facts.max_user_namespaces == 0:
        hints.append("allow them with `sysctl -w user.max_user_namespaces=15000`")
    if facts.container is not None:
        caps = " and `--cap-add SYS_ADMIN` (a root harness stages the view)" if root else ""
        hints.append(
            f"this runs in a container ({facts.container}), whose seccomp profile or dropped "
            f"capabilities block namespaces: start it with `--security-opt seccomp=unconfined` "
            f"(or a profile that allows clone and unshare of namespaces){caps}, or run the "
            "harness on the host"
        )
    if not hints:
        hints.append(
            "the kernel or a security policy (SELinux, a seccomp filter) blocks unprivileged "
            "user namespaces here: check kernel.unprivileged_userns_clone, "
            "user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns"
        )
    return hints


def diagnose(error: str, features: Features, facts: HostFacts, root: bool) -> Problem:
    """The cause of a failed trial in bubblewrap (`error`: bwrap's or the setup's last words)
    and its fix."""
    version = label(features.version)
    low = error.lower()
    staging = "sandbox setup (stage)" in low and "not permitted" in low
    if staging or any(marker in low for marker in _NAMESPACE_ERRORS):
        why = (
            "the harness, as root, may not make the mount namespace it stages the view in"
            if staging
            else "it cannot make the user namespace it needs"
            + (" (as root too: the harness runs bwrap as an unprivileged uid)" if root else "")
        )
        return Problem(
            "namespaces_blocked",
            f"bubblewrap {version} is installed but {why}: {error}",
            "; ".join(_namespace_hints(facts, root)),
        )
    if "unknown option" in low:
        return Problem(
            "failed",
            f"bubblewrap {version} does not know an option the sandbox uses: {error}",
            _UPGRADE_HINT,
        )
    return Problem(
        "failed",
        f"bubblewrap {version} is installed but a trial program failed in it: {error}",
        "the error is bwrap's (or the sandbox setup's) own; `make setup-sandbox` repeats the trial",
    )
