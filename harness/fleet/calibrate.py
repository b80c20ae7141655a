"""Forecast-model parameters implied by hardware profiles: MFU, J per token, tokens/s per GPU,
busy and idle W, so that FLOPs-based forecasts can use a measured efficiency."""

from __future__ import annotations

from typing import Any

from harness.fleet.catalog import Accelerator
from harness.fleet.flops import implied_mfu
from harness.fleet.profile import HardwareProfile

CALIBRATION_KIND = "harness-fleet-calibration"


def calibration(profile: HardwareProfile, catalog: dict[str, Accelerator]) -> dict[str, Any]:
    """One profile's parameters; null figures carry their reason in `reasons`."""
    out = implied_mfu(profile, catalog)
    cap, cap_out, busy = profile.capacity_tok_s, profile.capacity_output_tok_s, profile.busy_w
    out.put("capacity_tok_s", cap, profile.why_missing("capacity_tok_s"))
    out.put("capacity_output_tok_s", cap_out, profile.why_missing("capacity_output_tok_s"))
    out.put("busy_w", busy, profile.why_missing("busy_w"))
    out.put("idle_w", profile.idle_w, profile.why_missing("idle_w"))
    no_busy = profile.why_missing("busy_w")
    if busy is None or cap is None:
        out.missing(
            "j_per_token_at_capacity", no_busy if busy is None else out.reasons["capacity_tok_s"]
        )
    else:
        out.put("j_per_token_at_capacity", busy / cap)
    if busy is None or cap_out is None:
        reason = no_busy if busy is None else out.reasons["capacity_output_tok_s"]
        out.missing("j_per_output_token_at_capacity", reason)
    else:
        out.put("j_per_output_token_at_capacity", busy / cap_out)
    return {
        "profile": profile.name,
        "origin": profile.origin,
        "source": profile.source,
        "accelerator": profile.accelerator,
        "device_kind": profile.device_kind,
        "model_name": None if profile.model is None else profile.model.name,
        **out.as_dict(),
        "assumptions": list(profile.assumptions),
    }


def calibration_document(
    profiles: list[HardwareProfile], catalog: dict[str, Accelerator]
) -> dict[str, Any]:
    """`{"kind": ..., "profiles": {NAME: parameters}}`; J/token counts GPU power only, at
    capacity, per input+output token (and per output token)."""
    return {
        "kind": CALIBRATION_KIND,
        "schema_version": 1,
        "token_basis": "capacity_tok_s and j_per_token_at_capacity count input + output tokens",
        "profiles": {p.name: calibration(p, catalog) for p in profiles},
    }
