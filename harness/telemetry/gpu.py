"""NVIDIA GPU inventory and sampling through NVML (`pynvml` from nvidia-ml-py; the only importer).

Where NVML is missing or does not initialise, GPUs are reported as unavailable with the
reason, never as an empty measurement; a read that fails is None plus an error count, never 0."""

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


@dataclass(slots=True, frozen=True)
class GpuSample:
    """One GPU's readings at one instant; a field NVML could not give is None, never 0."""

    index: int
    power_w: float | None
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
        self._handles: list[Any] = []
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
        self.available = True

    @property
    def device_count(self) -> int:
        """How many GPUs are read (0 when unavailable)."""
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
        """Every GPU's readings now; an empty list where NVML is unavailable."""
        if not self.available:
            return []
        nvml = self._nvml
        assert nvml is not None
        samples = []
        for i, h in enumerate(self._handles):
            f = self._field
            power_mw = f(i, "power_w", nvml.nvmlDeviceGetPowerUsage, h)
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
        }

    def close(self) -> None:
        """Shut NVML down once; reading afterwards returns nothing."""
        if self.available and self._nvml is not None:
            self.available = False
            self._handles = []
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
