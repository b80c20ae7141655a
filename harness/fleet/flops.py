"""The seeds' forecast model as a cross-check: cards from FLOPs,
`tokens_per_day × flops_per_token / (86400 × peak_flops × utilization)`, and the utilisation
(MFU) a profile's capacity implies, `capacity_tok_s × flops_per_token / peak_flops`, so that
forecast models can use a measured efficiency instead of an assumed one.

The FLOPs rule sizes cards for the daily average load; the default model sizes them for the
peak at `headroom`. So that the ratio between them compares like with like, the FLOPs-rule
cards are also given on the default model's basis, × peak_to_average / headroom."""

from __future__ import annotations

from typing import Any

from harness.fleet.catalog import Accelerator
from harness.fleet.figures import S_PER_DAY, Figures
from harness.fleet.profile import HardwareProfile
from harness.fleet.scenario import Scenario
from harness.fleet.shape import flops_per_token

FLOPS_ASSUMPTIONS: tuple[str, ...] = (
    "flops: the seeds' FLOPs rule (flops.gpus) sizes cards for the daily average load; "
    "flops.gpus_peak_basis scales them to the default model's basis, × peak_to_average / "
    "headroom, and flops.gpus_ratio_to_default_model compares that with the default model's "
    "gpus (both for the peak at headroom)",
)


def peak_flop_s(
    profile: HardwareProfile, catalog: dict[str, Accelerator]
) -> tuple[float | None, str]:
    """The profile accelerator's peak dense FLOP/s at its precision, or None and why."""
    if profile.accelerator is None:
        return None, profile.why_missing("accelerator")
    acc = catalog.get(profile.accelerator)
    if acc is None:
        return None, f"accelerator '{profile.accelerator}' is not in the catalog"
    if profile.precision is None:
        return None, profile.why_missing("precision")
    peak = acc.peak_flops(profile.precision)
    if peak is None:
        return None, f"the catalog gives {profile.accelerator} no {profile.precision} peak"
    return peak, ""


def implied_mfu(profile: HardwareProfile, catalog: dict[str, Accelerator]) -> Figures:
    """MFU the profile implies: capacity × its model's FLOPs per token / peak FLOP/s."""
    out = Figures()
    out.put("precision", profile.precision, profile.why_missing("precision"))
    peak, why_peak = peak_flop_s(profile, catalog)
    out.put("peak_flop_s", peak, why_peak)
    fpt = None if profile.model is None else flops_per_token(profile.model)
    out.put("profile_flops_per_token", fpt, profile.why_missing("model"))
    cap = profile.capacity_tok_s
    if cap is None:
        out.missing("implied_mfu", profile.why_missing("capacity_tok_s"))
    elif fpt is None:
        out.missing("implied_mfu", profile.why_missing("model"))
    elif peak is None:
        out.missing("implied_mfu", why_peak)
    else:
        out.put("implied_mfu", cap * fpt / peak)
    return out


def flops_cross_check(
    scenario: Scenario,
    profile: HardwareProfile,
    catalog: dict[str, Accelerator],
    tokens_per_day: float | None,
    gpus: int | None,
) -> dict[str, Any]:
    """Cards by the seeds' FLOPs rule for the scenario's demand on the profile's accelerator
    (`gpus`, for the average load), the same on the default model's basis (`gpus_peak_basis`,
    × peak_to_average / headroom) set against `gpus` from the default model, plus the
    profile's implied MFU."""
    out = implied_mfu(profile, catalog)
    shape, shape_from = (
        (scenario.model, "scenario") if scenario.model is not None else (profile.model, "profile")
    )
    no_shape = "neither the scenario nor the profile gives a model shape"
    out.put("model_from", None if shape is None else shape_from, no_shape)
    out.put("model_name", None if shape is None else shape.name, no_shape)
    fpt = out.put("flops_per_token", None if shape is None else flops_per_token(shape), no_shape)
    util = out.put(
        "flops_utilization", scenario.flops_utilization, "scenario gives no flops_utilization"
    )
    peak = out.values["peak_flop_s"]
    if tokens_per_day is None:
        out.missing("flop_per_day", "scenario states no demand")
    elif fpt is None:
        out.missing("flop_per_day", no_shape)
    else:
        out.put("flop_per_day", tokens_per_day * fpt)
    flop_day = out.values["flop_per_day"]
    if flop_day is None:
        out.missing("gpus", out.reasons["flop_per_day"])
    elif peak is None:
        out.missing("gpus", out.reasons["peak_flop_s"])
    elif util is None:
        out.missing("gpus", out.reasons["flops_utilization"])
    else:
        out.put("gpus", flop_day / (S_PER_DAY * peak * util))
    flops_gpus = out.values["gpus"]
    if flops_gpus is None:
        out.missing("gpus_peak_basis", out.reasons["gpus"])
    else:
        out.put("gpus_peak_basis", flops_gpus * scenario.peak_to_average / scenario.headroom)
    peak_basis = out.values["gpus_peak_basis"]
    if peak_basis is None:
        out.missing("gpus_ratio_to_default_model", out.reasons["gpus_peak_basis"])
    elif not gpus:
        out.missing("gpus_ratio_to_default_model", "the default model gives no card count")
    else:
        out.put("gpus_ratio_to_default_model", peak_basis / gpus)
    return out.as_dict()
