"""NVIDIA GPU inventory and sampling through NVML (`pynvml` from nvidia-ml-py; the only importer).

Where NVML is missing or does not initialise, GPUs are reported as unavailable with the
reason, never as an empty measurement; a read that fails is None plus an error count, never 0.
Power is the instantaneous field (NVML_FI_DEV_POWER_INSTANT) where the GPU has it, else
nvmlDeviceGetPowerUsage, a one-second average on Ampere and newer (GA100 excepted); each
sample says which, and keeps the averaged reading in its own field."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

ARCHITECTURES: dict[int, str] = {
    2: "Kepler",
    3: "Maxwell",
    4: "Pascal",
    5: "Volta",
    6: "Turing",
    7: "Ampere",
    8: "Ada",
    9: "Hopper",
    10: "Blackwell",
    13: "Rubin",
}
"""NVML_DEVICE_ARCH_* values → architecture names (from nvidia-ml-py's constants)."""

_INIT_HINTS: dict[str, str] = {
    "NVMLError_LibraryNotFound": "libnvidia-ml.so not found (no NVIDIA driver on this host)",
    "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded",
    "NVMLError_LibRmVersionMismatch": "NVML library and kernel driver versions differ (reboot?)",
    "NVMLError_NoPermission": "no permission to open the NVIDIA device",
}


def _text(value: bytes | str) -> str:
    """NVML returns bytes in older bindings and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def architecture_name(code: int) -> str:
    """An NVML architecture code as a name, so the manifest reads 'Hopper', not 9."""
    return ARCHITECTURES.get(int(code), f"unknown ({int(code)})")


def _load_nvml(nvml: Any | None) -> tuple[Any | None, str | None]:
    """The injected NVML module, else `pynvml`; (None, reason) where it is not installed."""
    if nvml is not None:
        return nvml, None
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    return pynvml, None


def _init_reason(err: Exception) -> str:
    """Why nvmlInit failed, in words a user can act on."""
    name = type(err).__name__
    hint = _INIT_HINTS.get(name)
    return f"NVML did not initialise: {name}: {err}" + (f" ({hint})" if hint else "")


POWER_INSTANT = "nvml-instant"
"""A sample's power_source where power_w is NVML_FI_DEV_POWER_INSTANT."""
POWER_AVERAGE = "nvml-average"
"""A sample's power_source where power_w is nvmlDeviceGetPowerUsage (the field is missing)."""

_VALUE_FIELDS: dict[int, str] = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal"}
_VALUE_FIELDS.update({5: "siVal", 6: "usVal"})
"""NVML_VALUE_TYPE_* → the c_nvmlValue_t member holding a field value of that type."""

_NO_FIELD = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "NVMLError_InvalidArgument")
"""NVML errors that mean a field (or nvmlDeviceGetFieldValues itself) is not there on this
GPU or driver: remembered, not retried, and not counted as read failures."""


@dataclass(slots=True, frozen=True)
class GpuIdentity:
    """One GPU as NVML names it: its index (NVML's order, by PCI bus), UUID and model name;
    None where NVML could not say."""

    index: int
    uuid: str | None
    name: str | None


@dataclass(slots=True, frozen=True)
class GpuSample:
    """One GPU's readings at one instant; a field NVML could not give is None, never 0."""

    index: int
    power_w: float | None
    """Instantaneous power where the GPU has the field, else the averaged reading."""
    power_avg_w: float | None
    """nvmlDeviceGetPowerUsage: a one-second average on Ampere and newer."""
    power_source: str | None
    """Which reading power_w is (POWER_INSTANT or POWER_AVERAGE); None with no power."""
    energy_j: float | None
    gpu_util_pct: float | None
    mem_util_pct: float | None
    memory_used_bytes: int | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    temperature_c: float | None
    power_limit_w: float | None


class GpuReader:
    """Opens NVML once and reads every GPU's power, energy, utilisation, clocks and temperature."""

    def __init__(self, nvml: Any | None = None) -> None:
        self.available = False
        self.reason: str | None = None
        self.error_counts: dict[str, int] = {}
        self.not_supported: set[tuple[int, str]] = set()
        self.processes_problem: str | None = None
        """Why the GPUs' process lists could not be read, where they could not."""
        self._handles: list[Any] = []
        self._identities: list[GpuIdentity] = []
        self._power_used: dict[int, set[str]] = {}
        self._open = False
        self._nvml, self.reason = _load_nvml(nvml)
        if self._nvml is None:
            return
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as err:
            self.reason = _init_reason(err)
            return
        try:
            count = int(self._nvml.nvmlDeviceGetCount())
            self._handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except self._nvml.NVMLError as err:
            self.reason = f"NVML device enumeration failed: {type(err).__name__}: {err}"
            self._nvml.nvmlShutdown()
            return
        if not self._handles:
            self.reason = "NVML initialised but reports no GPUs"
            self._nvml.nvmlShutdown()
            return
        self._identities = [self._identity(i, h) for i, h in enumerate(self._handles)]
        self.available = True
        self._open = True

    def _identity(self, index: int, handle: Any) -> GpuIdentity:
        """A GPU's UUID and name, each None where NVML will not give it."""
        nvml = self._nvml
        assert nvml is not None
        texts: list[str | None] = []
        for read in (nvml.nvmlDeviceGetUUID, nvml.nvmlDeviceGetName):
            try:
                texts.append(_text(read(handle)))
            except nvml.NVMLError:
                texts.append(None)
        return GpuIdentity(index, texts[0], texts[1])

    def identities(self) -> list[GpuIdentity]:
        """Every GPU's index, UUID and name (read once, when NVML opened)."""
        return list(self._identities)

    def running_pids(self, index: int) -> frozenset[int] | None:
        """The pids NVML lists with a compute or graphics context on GPU `index` (host pids:
        inside a container they may not be the container's); None, with `processes_problem`
        saying why, where neither list can be read."""
        if not self._open:
            return None
        nvml = self._nvml
        assert nvml is not None
        handle = self._handles[index]
        pids: set[int] = set()
        problems: list[str] = []
        for name in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            read = getattr(nvml, name, None)
            if read is None:
                problems.append(f"this nvidia-ml-py has no {name}")
                continue
            try:
                pids.update(int(p.pid) for p in read(handle))
            except nvml.NVMLError as err:
                problems.append(f"{name}: {type(err).__name__}: {err}")
        if len(problems) == 2:
            self.processes_problem = f"NVML cannot list GPU {index}'s processes: {problems[0]}"
            return None
        return frozenset(pids)

    def _instant_power(self, index: int, handle: Any) -> float | None:
        """NVML_FI_DEV_POWER_INSTANT in milliwatts; None and remembered where the GPU or the
        driver lacks it (the field's own return, or nvmlDeviceGetFieldValues missing), None
        and counted where the read fails."""
        name = "power_instant_w"
        if (index, name) in self.not_supported:
            return None
        nvml = self._nvml
        assert nvml is not None
        field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        read = getattr(nvml, "nvmlDeviceGetFieldValues", None)
        if field_id is None or read is None:
            self.not_supported.add((index, name))
            return None
        try:
            (value,) = read(handle, [field_id])
        except nvml.NVMLError as err:
            if type(err).__name__ in _NO_FIELD:
                self.not_supported.add((index, name))
            else:
                self.error_counts[name] = self.error_counts.get(name, 0) + 1
            return None
        code = int(value.nvmlReturn)
        if code == nvml.NVML_SUCCESS:
            member = _VALUE_FIELDS.get(int(value.valueType))
            if member is not None:
                return float(getattr(value.value, member))
        if code in (nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_INVALID_ARGUMENT):
            self.not_supported.add((index, name))
        else:
            self.error_counts[name] = self.error_counts.get(name, 0) + 1
        return None

    @property
    def device_count(self) -> int:
        """How many GPUs NVML lists (0 when unavailable; kept after close, for the summary)."""
        return len(self._handles)

    def _field(
        self, index: int, name: str, read: Callable[..., Any], *args: Any, attr: str | None = None
    ) -> float | None:
        """One NVML read: None and remembered if not supported, None and counted if it fails."""
        if (index, name) in self.not_supported:
            return None
        nvml = self._nvml
        assert nvml is not None
        try:
            value = read(*args)
            return float(getattr(value, attr) if attr else value)
        except nvml.NVMLError_NotSupported:
            self.not_supported.add((index, name))
            return None
        except nvml.NVMLError:
            self.error_counts[name] = self.error_counts.get(name, 0) + 1
            return None

    def read(self) -> list[GpuSample]:
        """Every GPU's readings now; an empty list where NVML is unavailable or closed."""
        if not self._open:
            return []
        nvml = self._nvml
        assert nvml is not None
        samples = []
        for i, h in enumerate(self._handles):
            f = self._field
            instant_mw = self._instant_power(i, h)
            average_mw = f(i, "power_avg_w", nvml.nvmlDeviceGetPowerUsage, h)
            power_mw = instant_mw if instant_mw is not None else average_mw
            if power_mw is None:
                source = None
            else:
                source = POWER_INSTANT if instant_mw is not None else POWER_AVERAGE
                self._power_used.setdefault(i, set()).add(source)
            energy_mj = f(i, "energy_j", nvml.nvmlDeviceGetTotalEnergyConsumption, h)
            util = nvml.nvmlDeviceGetUtilizationRates
            gpu_util = f(i, "gpu_util_pct", util, h, attr="gpu")
            mem_util = f(i, "mem_util_pct", util, h, attr="memory")
            mem_used = f(i, "memory_used_bytes", nvml.nvmlDeviceGetMemoryInfo, h, attr="used")
            sm = f(i, "sm_clock_mhz", nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM)
            mem = f(i, "mem_clock_mhz", nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_MEM)
            sensor = nvml.NVML_TEMPERATURE_GPU
            temp = f(i, "temperature_c", nvml.nvmlDeviceGetTemperature, h, sensor)
            limit_mw = f(i, "power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit, h)
            samples.append(
                GpuSample(
                    index=i,
                    power_w=None if power_mw is None else power_mw / 1000.0,
                    power_avg_w=None if average_mw is None else average_mw / 1000.0,
                    power_source=source,
                    energy_j=None if energy_mj is None else energy_mj / 1000.0,
                    gpu_util_pct=gpu_util,
                    mem_util_pct=mem_util,
                    memory_used_bytes=None if mem_used is None else int(mem_used),
                    sm_clock_mhz=sm,
                    mem_clock_mhz=mem,
                    temperature_c=temp,
                    power_limit_w=None if limit_mw is None else limit_mw / 1000.0,
                )
            )
        return samples

    def status(self) -> dict[str, Any]:
        """What the manifest says about GPU sampling: available or why not, and read failures."""
        return {
            "available": self.available,
            "reason": self.reason,
            "devices": self.device_count,
            "read_errors": dict(self.error_counts),
            "not_supported": sorted(f"gpu{i}:{name}" for i, name in self.not_supported),
            "power_sources": self.power_sources(),
        }

    def power_sources(self) -> dict[str, list[str]]:
        """Per GPU (by index), which readings its power_w has been: instantaneous where the
        field exists, else the averaged one (both where the field failed now and then)."""
        return {str(i): sorted(used) for i, used in sorted(self._power_used.items())}

    def close(self) -> None:
        """Shut NVML down once; reading afterwards returns nothing, and the status still says
        what was read (available, devices, failures)."""
        if self._open and self._nvml is not None:
            self._open = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def __enter__(self) -> GpuReader:
        """Use as a context manager so NVML is shut down on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close on exit."""
        self.close()


def gpu_inventory(nvml: Any | None = None) -> dict[str, Any]:
    """`{"available": True, "gpus": [...], "driver": ...}` or `{"available": False, "reason"}`."""
    nvml, reason = _load_nvml(nvml)
    if nvml is None:
        return {"available": False, "reason": reason}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        return {"available": False, "reason": _init_reason(err)}
    try:
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                arch: str | None = architecture_name(nvml.nvmlDeviceGetArchitecture(handle))
            except nvml.NVMLError:
                arch = None
            gpus.append(
                {
                    "index": i,
                    "name": _text(nvml.nvmlDeviceGetName(handle)),
                    "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
                    "architecture": arch,
                    "memory_total_bytes": int(mem.total),
                }
            )
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        return {"available": True, "driver": driver, "gpus": gpus}
    except nvml.NVMLError as err:
        return {"available": False, "reason": f"NVML query failed: {type(err).__name__}: {err}"}
    finally:
        nvml.nvmlShutdown()
