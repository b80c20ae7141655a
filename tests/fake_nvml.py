"""A fake NVML module at the vendor boundary: nvidia-ml-py's real error classes, structs and
constants, real function signatures, driven by a fake clock (its numbers never reach results/)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pynvml
from pynvml import (
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_SUPPORTED,
    NVML_FI_DEV_POWER_AVERAGE,
    NVML_FI_DEV_POWER_INSTANT,
    NVML_SUCCESS,
    NVML_TEMPERATURE_GPU,
    NVML_VALUE_TYPE_UNSIGNED_INT,
    NVMLError,
    NVMLError_DriverNotLoaded,
    NVMLError_FunctionNotFound,
    NVMLError_GpuIsLost,
    NVMLError_LibraryNotFound,
    NVMLError_LibRmVersionMismatch,
    NVMLError_NoPermission,
    NVMLError_NotSupported,
    NVMLError_Uninitialized,
    c_nvmlFieldValue_t,
    c_nvmlMemory_t,
    c_nvmlProcessInfo_t,
    c_nvmlUtilization_t,
    nvmlFriendlyObject,
    nvmlStructToFriendlyObject,
)

__all__ = [
    "NVML_CLOCK_MEM",
    "NVML_CLOCK_SM",
    "NVML_TEMPERATURE_GPU",
    "FakeClock",
    "FakeGpu",
    "FakeNvml",
    "NVMLError",
    "NVMLError_DriverNotLoaded",
    "NVMLError_FunctionNotFound",
    "NVMLError_GpuIsLost",
    "NVMLError_LibRmVersionMismatch",
    "NVMLError_LibraryNotFound",
    "NVMLError_NoPermission",
    "NVMLError_NotSupported",
    "RealTimeClock",
    "eight_gpu_host",
]


class FakeClock:
    """A settable run clock in integer nanoseconds, shared by the fake GPUs and the sampler."""

    def __init__(self, t_ns: int = 0) -> None:
        self.t_ns = t_ns

    def now_ns(self) -> int:
        """The current fake time."""
        return self.t_ns

    def advance_s(self, seconds: float) -> None:
        """Move time forward."""
        self.t_ns += round(seconds * 1e9)


class RealTimeClock(FakeClock):
    """The fake GPUs' clock following real time (since it was made), for runs whose sampler
    thread reads the GPUs on its own schedule."""

    def __init__(self) -> None:
        self._start = time.perf_counter_ns()

    @property  # type: ignore[override]
    def t_ns(self) -> int:
        """Nanoseconds since the clock was made."""
        return time.perf_counter_ns() - self._start

    @t_ns.setter
    def t_ns(self, value: int) -> None:
        raise AttributeError("a real-time clock is not set")


@dataclass
class FakeGpu:
    """One fake GPU: a piecewise-constant power trace [(start_s, watts)] and its energy counter."""

    power_trace: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 100.0)])
    has_energy_counter: bool = True
    energy_offset_mj: int = 0
    counter_reset_at_s: float | None = None
    name: bytes | str = b"NVIDIA H100 80GB HBM3"
    uuid: bytes | str = b"GPU-00000000-0000-0000-0000-000000000000"
    architecture: int = pynvml.NVML_DEVICE_ARCH_HOPPER
    power_limit_mw: int = 700_000
    memory_total: int = 80 * 2**30
    memory_used: int = 10 * 2**30
    failing: dict[str, type[Exception]] = field(default_factory=dict)
    """NVML function name → the error class it raises on every call."""
    has_instant_power: bool = True
    """Whether NVML_FI_DEV_POWER_INSTANT reads (older GPUs and drivers: NotSupported)."""
    power_average_s: float = 1.0
    """nvmlDeviceGetPowerUsage's window: the trailing mean of the trace (Ampere and newer)."""
    compute_pids: list[int] = field(default_factory=list)
    """Processes holding a compute context on this GPU (host pids, as NVML lists them)."""
    graphics_pids: list[int] = field(default_factory=list)
    process_memory_bytes: int | None = 2**30
    """usedGpuMemory of each listed process (None: not available, as under WDDM)."""

    def power_w(self, t_s: float) -> float:
        """The trace's power at time t."""
        watts = self.power_trace[0][1]
        for start, w in self.power_trace:
            if t_s >= start:
                watts = w
        return watts

    def energy_j(self, t0_s: float, t1_s: float) -> float:
        """Exact integral of the piecewise-constant trace from t0 to t1."""
        total = 0.0
        bounds = [s for s, _ in self.power_trace[1:]] + [float("inf")]
        for (start, w), end in zip(self.power_trace, bounds, strict=True):
            lo, hi = max(start, t0_s), min(end, t1_s)
            if hi > lo:
                total += w * (hi - lo)
        return total

    def average_power_w(self, t_s: float) -> float:
        """The trace's mean over the trailing averaging window (the trace's value at 0)."""
        start = max(0.0, t_s - self.power_average_s)
        return self.power_w(t_s) if t_s <= start else self.energy_j(start, t_s) / (t_s - start)


class FakeNvml:
    """Stands in for the `pynvml` module: the functions GpuReader and gpu_inventory call."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_FI_DEV_POWER_INSTANT = NVML_FI_DEV_POWER_INSTANT
    NVML_FI_DEV_POWER_AVERAGE = NVML_FI_DEV_POWER_AVERAGE
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT

    def __init__(
        self,
        gpus: list[FakeGpu],
        clock: FakeClock,
        init_error: type[Exception] | None = None,
        driver: bytes | str = b"550.54.15",
    ) -> None:
        self.gpus = gpus
        self.clock = clock
        self.init_error = init_error
        self.driver = driver
        self.initialised = 0
        self.calls: dict[str, int] = {}

    def _gpu(self, handle: Any, fn: str) -> FakeGpu:
        """The GPU behind a handle, raising what a real NVML would for this call."""
        self.calls[fn] = self.calls.get(fn, 0) + 1
        if self.initialised <= 0:
            raise NVMLError_Uninitialized()
        gpu = self.gpus[int(handle)]
        if fn in gpu.failing:
            raise gpu.failing[fn]()
        return gpu

    def _t_s(self) -> float:
        """Fake time in seconds."""
        return self.clock.t_ns / 1e9

    def nvmlInit(self) -> None:
        """Initialise, or raise the configured error (library missing, driver mismatch...)."""
        if self.init_error is not None:
            raise self.init_error()
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        """Shut down one init."""
        if self.initialised <= 0:
            raise NVMLError_Uninitialized()
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> bytes | str:
        """Driver version, as bytes like older bindings."""
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        """How many fake GPUs."""
        if self.initialised <= 0:
            raise NVMLError_Uninitialized()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        """A handle (the index itself)."""
        self._gpu(index, "nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetName(self, handle: Any) -> bytes | str:
        """Device name."""
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: Any) -> bytes | str:
        """Device UUID."""
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetArchitecture(self, device: Any) -> int:
        """NVML_DEVICE_ARCH_* code."""
        return self._gpu(device, "nvmlDeviceGetArchitecture").architecture

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> c_nvmlMemory_t:
        """Memory totals in the real ctypes struct."""
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return c_nvmlMemory_t(
            total=gpu.memory_total, free=gpu.memory_total - gpu.memory_used, used=gpu.memory_used
        )

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        """Power in milliwatts (an int, like NVML), averaged over the GPU's window."""
        gpu = self._gpu(handle, "nvmlDeviceGetPowerUsage")
        return round(gpu.average_power_w(self._t_s()) * 1000)

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: list[Any]) -> Any:
        """The real ctypes array of c_nvmlFieldValue_t, one per field id (or (id, scope)),
        each with its own nvmlReturn: the instantaneous and averaged power in milliwatts as
        unsigned ints; NotSupported where the GPU lacks the instantaneous field, and
        InvalidArgument for an id this fake does not know, as a driver that predates it."""
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        values = (c_nvmlFieldValue_t * len(fieldIds))()
        t = self._t_s()
        for i, field_id in enumerate(fieldIds):
            fid, scope = field_id if isinstance(field_id, tuple) else (field_id, 0)
            value = values[i]
            value.fieldId, value.scopeId = fid, scope
            value.timestamp = round(t * 1e6)
            value.valueType = NVML_VALUE_TYPE_UNSIGNED_INT
            if fid == NVML_FI_DEV_POWER_INSTANT and gpu.has_instant_power:
                value.nvmlReturn = NVML_SUCCESS
                value.value.uiVal = round(gpu.power_w(t) * 1000)
            elif fid == NVML_FI_DEV_POWER_AVERAGE:
                value.nvmlReturn = NVML_SUCCESS
                value.value.uiVal = round(gpu.average_power_w(t) * 1000)
            elif fid == NVML_FI_DEV_POWER_INSTANT:
                value.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            else:
                value.nvmlReturn = NVML_ERROR_INVALID_ARGUMENT
        return values

    def _processes(self, pids: list[int], gpu: FakeGpu) -> list[nvmlFriendlyObject]:
        """Process entries as the bindings return them: friendly objects made from the real
        c_nvmlProcessInfo_t (pid, usedGpuMemory, gpuInstanceId, computeInstanceId)."""
        out = []
        for pid in pids:
            info = c_nvmlProcessInfo_t(
                pid=pid,
                usedGpuMemory=gpu.process_memory_bytes or 0,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            obj = nvmlStructToFriendlyObject(info)
            if gpu.process_memory_bytes is None:
                obj.usedGpuMemory = None
            out.append(obj)
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[nvmlFriendlyObject]:
        """Processes with a compute context on the GPU."""
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        return self._processes(gpu.compute_pids, gpu)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[nvmlFriendlyObject]:
        """Processes with a graphics context on the GPU."""
        gpu = self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return self._processes(gpu.graphics_pids, gpu)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """Energy since the counter's start (or its last reset) in millijoules."""
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
        if not gpu.has_energy_counter:
            raise NVMLError_NotSupported()
        t = self._t_s()
        start, offset = 0.0, gpu.energy_offset_mj
        if gpu.counter_reset_at_s is not None and t >= gpu.counter_reset_at_s:
            start, offset = gpu.counter_reset_at_s, 0
        return offset + round(gpu.energy_j(start, t) * 1000)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> c_nvmlUtilization_t:
        """Utilisation in the real ctypes struct (rises with power, to look plausible)."""
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        pct = min(100, round(gpu.power_w(self._t_s()) / gpu.power_limit_mw * 100_000))
        return c_nvmlUtilization_t(gpu=pct, memory=pct // 2)

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        """SM or memory clock in MHz."""
        self._gpu(handle, "nvmlDeviceGetClockInfo")
        return {NVML_CLOCK_SM: 1980, NVML_CLOCK_MEM: 2619}[type]

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        """GPU temperature in °C."""
        self._gpu(handle, "nvmlDeviceGetTemperature")
        return 45

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        """Enforced power limit in milliwatts."""
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw


def eight_gpu_host(clock: FakeClock, **per_gpu: dict[str, Any]) -> FakeNvml:
    """A fake host of eight H100s with distinct UUIDs, GPU i drawing 100 + 10·i W; `gpuN`
    keyword arguments set GPU N's fields (its processes, a power trace)."""
    gpus = []
    for i in range(8):
        fields: dict[str, Any] = {
            "uuid": f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}",
            "power_trace": [(0.0, 100.0 + 10 * i)],
            **per_gpu.get(f"gpu{i}", {}),
        }
        gpus.append(FakeGpu(**fields))
    return FakeNvml(gpus, clock)
