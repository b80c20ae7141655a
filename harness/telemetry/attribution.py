"""Which of this host's GPUs are the server's: named (`--gpus`), seen holding the server's
processes (NVML's running processes matched against the server's process tree), or taken
from the CUDA_VISIBLE_DEVICES it was launched with. Where none of these can tell, the
attribution is `unknown` with the reason, and the figures stay those of every GPU: it never
guesses."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from harness.telemetry.cpu import process_tree
from harness.telemetry.gpu import GpuIdentity, GpuReader

METHOD_OPTION = "--gpus"
METHOD_PROCESSES = "processes"
METHOD_CUDA = "CUDA_VISIBLE_DEVICES"
METHOD_UNKNOWN = "unknown"

RECHECK_S = 2.0
"""How often the GPUs' process lists are matched again during a run (processes appear as a
server loads its model, and tensor-parallel workers one by one)."""


class GpuProcesses(Protocol):
    """What attribution needs of the GPU reader: the GPUs and who holds each."""

    processes_problem: str | None

    def identities(self) -> list[GpuIdentity]:
        """Every GPU's index, UUID and name."""

    def running_pids(self, index: int) -> frozenset[int] | None:
        """Pids with a context on GPU `index`; None where NVML cannot list them."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """The server's GPUs (NVML indices, sorted) and how that was told; `devices` is empty and
    `reason` says why where the method is unknown. `reason` may also qualify a known one."""

    method: str
    devices: tuple[int, ...]
    reason: str | None = None

    @property
    def known(self) -> bool:
        """Whether the server's GPUs were told (then only they count)."""
        return self.method != METHOD_UNKNOWN


@dataclass(frozen=True, slots=True)
class CudaEnv:
    """The server's CUDA device environment, as it was started; `where` says how it is
    known (`launch` for a server the harness started, `process` read from /proc)."""

    visible: str | None
    order: str | None
    where: str


def _uuid_matches(name: str, identities: Sequence[GpuIdentity]) -> list[GpuIdentity]:
    """GPUs whose UUID is `name` or starts with it (CUDA takes a unique prefix too)."""
    key = name.lower()
    exact = [g for g in identities if g.uuid is not None and g.uuid.lower() == key]
    if exact:
        return exact
    return [g for g in identities if g.uuid is not None and g.uuid.lower().startswith(key)]


def _listing(identities: Sequence[GpuIdentity]) -> str:
    """`0-7` style summary of the indices NVML lists."""
    if not identities:
        return "none"
    return f"{identities[0].index}-{identities[-1].index}" if len(identities) > 1 else "0"


def resolve_gpu_names(names: Sequence[str], identities: Sequence[GpuIdentity]) -> tuple[int, ...]:
    """NVML indices of the GPUs named by index or UUID (a unique UUID prefix will do), in
    the order given; ValueError saying what is wrong (unknown, ambiguous, twice, MIG)."""
    if not names:
        raise ValueError("no GPU named")
    out: list[int] = []
    for raw in names:
        name = raw.strip()
        if name.isdigit():
            index = int(name)
            if index >= len(identities):
                raise ValueError(
                    f"no GPU {index} on this host (NVML lists {len(identities)}: "
                    f"{_listing(identities)})"
                )
        elif name.upper().startswith("MIG-"):
            raise ValueError(f"{name}: a MIG instance; name its parent GPU by index or UUID")
        elif name.upper().startswith("GPU-"):
            found = _uuid_matches(name, identities)
            if not found:
                raise ValueError(f"no GPU with UUID {name} on this host")
            if len(found) > 1:
                raise ValueError(
                    f"{name} matches {len(found)} GPUs ({', '.join(str(g.uuid) for g in found)})"
                )
            index = found[0].index
        else:
            raise ValueError(f"{name!r} is neither a GPU index nor a UUID (GPU-...)")
        if index in out:
            raise ValueError(f"GPU {index} is named twice")
        out.append(index)
    return tuple(out)


def host_gpus(names: Sequence[str], nvml: Any | None = None) -> tuple[int, ...]:
    """The NVML indices of the named GPUs on this host (checked before a run starts);
    ValueError where NVML cannot be read here or a name matches no GPU."""
    with GpuReader(nvml) as reader:
        if not reader.available:
            raise ValueError(f"NVML is unavailable on this host: {reader.reason}")
        return resolve_gpu_names(names, reader.identities())


def visible_devices(
    env: CudaEnv, identities: Sequence[GpuIdentity]
) -> tuple[tuple[int, ...] | None, str | None]:
    """The NVML indices CUDA_VISIBLE_DEVICES makes visible to the server, and a note; (None,
    why) where it cannot be told. As CUDA does, the list ends at its first entry that names
    no device. Indices are CUDA's, fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID: they
    are NVML's (PCI) order only then, or where every GPU is the same model; UUIDs always
    match."""
    assert env.visible is not None
    entries = [e.strip() for e in env.visible.split(",")]
    if entries == [""]:
        return (), "CUDA_VISIBLE_DEVICES is empty: the server sees no GPU"
    devices: list[int] = []
    by_index = False
    for entry in entries:
        if entry.upper().startswith("MIG-"):
            return None, f"CUDA_VISIBLE_DEVICES names a MIG instance ({entry}): not attributed"
        if entry.upper().startswith("GPU-"):
            found = _uuid_matches(entry, identities)
            if len(found) != 1:
                break
            index = found[0].index
        elif entry.isdigit() and int(entry) < len(identities):
            index, by_index = int(entry), True
        else:
            break
        if index in devices:
            break
        devices.append(index)
    note = None
    if by_index and (env.order or "").strip().upper() != "PCI_BUS_ID":
        models = {g.name for g in identities}
        if len(models) != 1 or None in models:
            return None, (
                f"CUDA_VISIBLE_DEVICES={env.visible} holds CUDA's indices, ordered fastest "
                "first, which on a host of different GPU models need not be NVML's order "
                "(set CUDA_DEVICE_ORDER=PCI_BUS_ID, give UUIDs, or name the GPUs with --gpus)"
            )
        note = (
            f"CUDA_VISIBLE_DEVICES={env.visible} read as NVML's indices: every GPU here is "
            f"a {models.pop()}, so CUDA's fastest-first order is the PCI order"
        )
    if not devices:
        return None, f"CUDA_VISIBLE_DEVICES={env.visible} names no GPU of this host"
    return tuple(devices), note


class GpuAttributor:
    """Tells the server's GPUs, and keeps telling them during the run: `check` (called on
    every sampler tick) matches the process lists again every `recheck_s`; a GPU seen once
    holding a server process stays the server's for the run."""

    def __init__(
        self,
        gpu: GpuProcesses,
        server_pid: int | None,
        *,
        named: Sequence[str] | None = None,
        cuda_env: CudaEnv | None = None,
        no_pid_reason: str | None = None,
        tree: Callable[[int], frozenset[int] | None] = process_tree,
        recheck_s: float = RECHECK_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`named`: the `--gpus` names (already checked; ValueError otherwise); `cuda_env`:
        the server's CUDA_VISIBLE_DEVICES where known; `no_pid_reason`: why there is no
        server pid (an attached server), said where attribution stays unknown."""
        self.gpu = gpu
        self.server_pid = server_pid
        self.identities = gpu.identities()
        self.named = None if named is None else resolve_gpu_names(named, self.identities)
        self.cuda_env = cuda_env
        self.no_pid_reason = no_pid_reason
        self.checks = 0
        self.first_seen_ns: dict[int, int] = {}
        self.pids_on_gpus: set[int] = set()
        self._tree = tree
        self._recheck_s = recheck_s
        self._monotonic = monotonic
        self._next_at = float("-inf")
        self._tree_size: int | None = None
        self._problem: str | None = None

    def check(self, t_ns: int) -> None:
        """Match the GPUs' processes against the server's tree, at most every recheck_s;
        nothing to do where the GPUs were named or there is no server pid."""
        if self.named is not None or self.server_pid is None:
            return
        now = self._monotonic()
        if now < self._next_at:
            return
        self._next_at = now + self._recheck_s
        self.checks += 1
        tree = self._tree(self.server_pid)
        if tree is None:
            self._problem = f"the server process {self.server_pid} is gone or cannot be read"
            return
        self._tree_size = len(tree)
        self._problem = None
        for gpu in self.identities:
            pids = self.gpu.running_pids(gpu.index)
            if pids is None:
                self._problem = self.gpu.processes_problem
                continue
            held = pids & tree
            if held:
                self.first_seen_ns.setdefault(gpu.index, t_ns)
                self.pids_on_gpus |= held

    def _from_cuda_env(self, why_not_processes: str) -> Attribution | None:
        """The attribution CUDA_VISIBLE_DEVICES gives, where it is set and tells."""
        env = self.cuda_env
        if env is None or env.visible is None:
            return None
        devices, note = visible_devices(env, self.identities)
        if devices is None:
            return Attribution(METHOD_UNKNOWN, (), f"{why_not_processes}; {note}")
        reason = f"{why_not_processes}; taken from the server's CUDA_VISIBLE_DEVICES"
        text = f"{reason} ({note})" if note else reason
        return Attribution(METHOD_CUDA, tuple(sorted(devices)), text)

    def result(self) -> Attribution:
        """The server's GPUs as told so far."""
        if self.named is not None:
            return Attribution(METHOD_OPTION, tuple(sorted(self.named)))
        if self.first_seen_ns:
            return Attribution(METHOD_PROCESSES, tuple(sorted(self.first_seen_ns)))
        if self.server_pid is None:
            why = self.no_pid_reason or "no server pid to match NVML's processes against"
        elif self._problem is not None:
            why = self._problem
        elif self.checks == 0:
            why = "NVML's processes were not matched yet"
        else:
            size = "" if self._tree_size is None else f"{self._tree_size} "
            why = (
                f"none of the server's {size}processes (pid {self.server_pid} and its "
                f"descendants) held a GPU in {self.checks} checks (in a container NVML may "
                "list host pids, which do not match; name the GPUs with --gpus)"
            )
        from_env = self._from_cuda_env(why)
        return from_env if from_env is not None else Attribution(METHOD_UNKNOWN, (), why)

    def to_dict(self) -> dict[str, Any]:
        """summary.telemetry.gpu_attribution: the method, the reason, the server's GPUs and
        the others, and what the process matching saw."""
        found = self.result()
        devices = set(found.devices)

        def listed(server: bool) -> list[dict[str, Any]]:
            return [
                {"index": g.index, "uuid": g.uuid, "name": g.name}
                for g in self.identities
                if (g.index in devices) == server
            ]

        return {
            "method": found.method,
            "reason": found.reason,
            "server_gpus": listed(True) if found.known else [],
            "other_gpus": listed(False) if found.known else [],
            "server_pid": self.server_pid,
            "server_pids_on_gpus": sorted(self.pids_on_gpus),
            "first_seen_ns": {str(i): t for i, t in sorted(self.first_seen_ns.items())},
            "checks": self.checks,
        }
