"""NVIDIA GPU inventory through NVML (`pynvml` from nvidia-ml-py; the only importer of it).

Where NVML is missing or does not initialise, GPUs are reported as unavailable with the
reason, never as an empty measurement."""

from __future__ import annotations

from typing import Any


def _text(value: bytes | str) -> str:
    """NVML returns bytes in older bindings and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def gpu_inventory() -> dict[str, Any]:
    """`{"available": True, "gpus": [...], "driver": ...}` or `{"available": False, "reason"}`."""
    try:
        import pynvml
    except ImportError:
        return {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return {"available": False, "reason": f"NVML did not initialise: {err}"}
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": i,
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                    "memory_total_bytes": int(mem.total),
                }
            )
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        return {"available": True, "driver": driver, "gpus": gpus}
    except pynvml.NVMLError as err:
        return {"available": False, "reason": f"NVML query failed: {err}"}
    finally:
        pynvml.nvmlShutdown()
