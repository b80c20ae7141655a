"""Hardware profiles: the calibration of one hardware generation, either measured (a sweep's
run directory holding `capacity.json`) or taken from a publication (a YAML naming its source).
A figure that is unavailable stays null with the reason, never 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.capacity import CAPACITY_FILE
from harness.config_files import Count, FiniteFloat, read_json, read_yaml, validate
from harness.errors import ConfigError
from harness.figures import slo_text
from harness.fleet.catalog import Precision
from harness.fleet.shape import ModelShape
from harness.workload.slo import RecordedSlo


class HardwareProfile(BaseModel):
    """Per-device capacity at the SLO (input+output tokens/s) and power, with its source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    source: str = Field(min_length=1)
    accelerator: str | None
    precision: Precision | None = None
    capacity_tok_s: FiniteFloat | None = Field(gt=0)
    busy_w: FiniteFloat | None = Field(gt=0)
    idle_w: FiniteFloat | None = Field(ge=0)
    capacity_output_tok_s: FiniteFloat | None = Field(default=None, gt=0)
    capacity_requests_s: FiniteFloat | None = Field(default=None, gt=0)
    capacity_sessions_s: FiniteFloat | None = Field(default=None, gt=0)
    tool_cpu_s_per_session: FiniteFloat | None = Field(default=None, ge=0)
    model: ModelShape | None = None
    assumptions: list[str] = Field(default_factory=list)
    origin: Literal["published", "measured"] = "published"
    device_kind: Literal["gpu", "cpu"] | None = None
    devices: Count | None = Field(default=None, ge=1)
    busy_w_source: str | None = None
    unavailable: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _idle_below_busy(self) -> HardwareProfile:
        if self.idle_w is not None and self.busy_w is not None and self.idle_w > self.busy_w:
            raise ValueError(f"idle_w ({self.idle_w:g}) is above busy_w ({self.busy_w:g})")
        return self

    def why_missing(self, key: str) -> str:
        """Why figure `key` of this profile is null (its recorded reason, or that none is given)."""
        return self.unavailable.get(key, f"profile '{self.name}' gives no {key}")


class _Loose(BaseModel):
    """capacity.json sections: written by `harness sweep`; newer extra keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class _Capacity(_Loose):
    load: FiniteFloat | None
    run_dir: str | None
    devices: Count = Field(ge=1)
    device_kind: Literal["gpu", "cpu"]
    accelerator: str | None
    capacity_tok_s: FiniteFloat | None = Field(gt=0)
    capacity_output_tok_s: FiniteFloat | None = Field(gt=0)
    capacity_requests_s: FiniteFloat | None = Field(gt=0)
    capacity_sessions_s: FiniteFloat | None = Field(gt=0)
    busy_w: FiniteFloat | None = Field(gt=0)
    busy_w_source: Literal[
        "nvml-counter", "nvml-power", "dcgm-counter", "dcgm-power", "unavailable"
    ]
    idle_w: FiniteFloat | None = Field(ge=0)
    tool_cpu_s_per_session: FiniteFloat | None = Field(ge=0)


class _Model(_Loose):
    name: str
    n_params: FiniteFloat | None = Field(default=None, gt=0)
    n_params_non_embedding: FiniteFloat | None = Field(default=None, gt=0)
    n_layers: Count | None = Field(default=None, gt=0)
    d_model: Count | None = Field(default=None, gt=0)
    d_attn: Count | None = Field(default=None, gt=0)
    mean_context_tok: FiniteFloat | None = Field(default=None, ge=0)


class _CapacityFile(_Loose):
    kind: Literal["harness-capacity"]
    schema_version: Literal[1, 2]
    name: str = Field(min_length=1)
    workload: str
    load_kind: Literal["rate", "concurrency"]
    slo: RecordedSlo
    slo_target_attainment: FiniteFloat = Field(ge=0, le=1)
    capacity: _Capacity
    model: _Model


def _n_params(model: _Model, assumptions: list[str]) -> float | None:
    """N for the FLOPs rule: the weights without the input-embedding table (a lookup that costs
    no FLOPs; the output head stays in, it is a matmul per token), else all weights, listed."""
    if model.n_params_non_embedding is not None:
        assumptions.append(
            f"model N = {model.n_params_non_embedding:.4g} parameters without the input-embedding "
            "table (a lookup costing no FLOPs; the output head is counted, a matmul per token)"
            + ("" if model.n_params is None else f"; {model.n_params:.4g} with it")
        )
        return model.n_params_non_embedding
    if model.n_params is not None:
        assumptions.append(
            f"model N = {model.n_params:.4g}, every weight including the input-embedding table: "
            "capacity.json gives no n_params_non_embedding, so FLOPs per token and the implied "
            "MFU are slightly high (the table is a lookup costing no FLOPs)"
        )
    return model.n_params


def _shape(model: _Model, assumptions: list[str], unavailable: dict[str, str]) -> ModelShape | None:
    """The model shape for FLOPs from capacity.json's model block, or None with the reason."""
    n_params = _n_params(model, assumptions)
    d_attn = model.d_attn
    if d_attn is None and model.d_model is not None:
        d_attn = model.d_model
        assumptions.append(
            f"d_attn taken as d_model ({model.d_model}): capacity.json gives no d_attn, and "
            "Kaplan et al.'s FLOPs rule uses d_attn = d_model for a standard transformer"
        )
    given = {
        "n_params": n_params,
        "n_layers": model.n_layers,
        "d_attn": d_attn,
        "mean_context_tok": model.mean_context_tok,
    }
    missing = [k for k, v in given.items() if v is None]
    if missing:
        unavailable["model"] = f"capacity.json's model block lacks {', '.join(missing)}"
        return None
    assert n_params is not None and model.n_layers is not None and d_attn is not None
    assert model.mean_context_tok is not None
    return ModelShape(
        name=model.name,
        n_params=n_params,
        n_layers=model.n_layers,
        d_attn=d_attn,
        n_ctx=model.mean_context_tok,
    )


def profile_from_capacity(data: Any, sweep_dir: Path, path: Path) -> HardwareProfile:
    """A measured profile from a parsed capacity.json (`path`) of the sweep `sweep_dir`."""
    cap_file = validate(_CapacityFile, data, path)
    cap = cap_file.capacity
    assumptions: list[str] = []
    unavailable: dict[str, str] = {}
    where = f"{cap_file.load_kind} {cap.load:g}" if cap.load is not None else "no load"
    slo = slo_text(cap_file.slo, number="{:g}".format, at_most="≤", none="no SLO set")
    source = (
        f"measured: harness sweep {sweep_dir} (workload {cap_file.workload}, capacity at "
        f"{where}, SLO {slo}, attainment ≥ {cap_file.slo_target_attainment:g})"
    )
    if cap.capacity_tok_s is None:
        unavailable["capacity_tok_s"] = (
            "no load point of the sweep met the SLO"
            if cap.load is None
            else "capacity.json gives no capacity_tok_s"
        )
    if cap.busy_w is None:
        unavailable["busy_w"] = (
            f"GPU power unavailable in the sweep (device_kind {cap.device_kind}, "
            f"busy_w_source {cap.busy_w_source})"
        )
    if cap.idle_w is None:
        unavailable["idle_w"] = (
            f"no idle power baseline in the sweep (device_kind {cap.device_kind})"
        )
    if cap.accelerator is None:
        unavailable["accelerator"] = (
            f"the sweep's {cap.device_kind} device matched no catalog accelerator"
        )
    unavailable["precision"] = "capacity.json does not state the precision the model ran at"
    if cap.devices > 1:
        assumptions.append(
            f"per-device figures: the server used {cap.devices} devices and the sweep divided "
            "its throughput and power by that count"
        )
    if cap.device_kind == "cpu":
        assumptions.append(
            "measured on a CPU server standing in for a hardware generation: capacity is that "
            "host's, per host, not an accelerator's"
        )
    return HardwareProfile(
        name=cap_file.name,
        source=source,
        accelerator=cap.accelerator,
        capacity_tok_s=cap.capacity_tok_s,
        busy_w=cap.busy_w,
        idle_w=cap.idle_w,
        capacity_output_tok_s=cap.capacity_output_tok_s,
        capacity_requests_s=cap.capacity_requests_s,
        capacity_sessions_s=cap.capacity_sessions_s,
        tool_cpu_s_per_session=cap.tool_cpu_s_per_session,
        model=_shape(cap_file.model, assumptions, unavailable),
        assumptions=assumptions,
        origin="measured",
        device_kind=cap.device_kind,
        devices=cap.devices,
        busy_w_source=cap.busy_w_source,
        unavailable=unavailable,
    )


def load_profile(path: Path) -> HardwareProfile:
    """A profile YAML, or a sweep run directory holding capacity.json (a measured profile)."""
    if path.is_dir():
        cap_path = path / CAPACITY_FILE
        if not cap_path.is_file():
            raise ConfigError(f"{path}: no {CAPACITY_FILE} (not a sweep run directory)")
        return profile_from_capacity(read_json(cap_path, "capacity"), path, cap_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such profile file or sweep directory")
    data = read_yaml(path, "hardware profile")
    if isinstance(data, dict) and data.get("origin", "published") != "published":
        raise ConfigError(
            f"{path}: key 'origin': a profile YAML is published; measured profiles are "
            "read from a sweep's run directory"
        )
    return validate(HardwareProfile, data, path)
