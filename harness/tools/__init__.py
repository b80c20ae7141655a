"""Agent tools: real CPU kernels, the bubblewrap sandbox, replay/execute runners and host
calibration."""

from harness.records import ToolContext, ToolRecord
from harness.tools.calibrate import Calibration, calibrate
from harness.tools.kernels import KERNELS, SIZE_UNITS, kernel, prepare
from harness.tools.runner import TOOL_KINDS, ExecuteTools, ReplayTools
from harness.tools.sandbox import SandboxResult, SandboxUnavailable, require_sandbox, run_sandboxed

__all__ = [
    "KERNELS",
    "SIZE_UNITS",
    "TOOL_KINDS",
    "Calibration",
    "ExecuteTools",
    "ReplayTools",
    "SandboxResult",
    "SandboxUnavailable",
    "ToolContext",
    "ToolRecord",
    "calibrate",
    "kernel",
    "prepare",
    "require_sandbox",
    "run_sandboxed",
]
