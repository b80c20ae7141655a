"""Service-level objectives: the one SLO model of the workload YAML, goodput, the summary,
capacity.json and fleet profiles."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness.config_files import FiniteFloat
from harness.workload.limits import MAX_DURATION_S

MAX_SLO_MS = MAX_DURATION_S * 1000
"""The largest limit an SLO may set: a request's longest timeout."""


class Slo(BaseModel):
    """Per-request SLOs in ms; a request is good when it meets every one that is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: FiniteFloat | None = Field(default=None, gt=0, le=MAX_SLO_MS)
    tpot_ms: FiniteFloat | None = Field(default=None, gt=0, le=MAX_SLO_MS)
    e2el_ms: FiniteFloat | None = Field(default=None, gt=0, le=MAX_SLO_MS)

    def limits_ms(self) -> dict[str, float]:
        """The limits that are set, by key (`ttft_ms`, `tpot_ms`, `e2el_ms`)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class RecordedSlo(Slo):
    """An SLO read back from a file a harness wrote (capacity.json): the same limits, with
    keys a newer harness may add ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
