"""A transformer's shape and its inference FLOPs per token (Kaplan et al. 2020, §2.1):
2·N for the weights plus 2·n_layer·n_ctx·d_attn for attention over the context."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness.config_files import Count, FiniteFloat


class ModelShape(BaseModel):
    """The figures the FLOPs rule needs; `n_ctx` is the mean context (tokens) a token attends to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    n_params: FiniteFloat = Field(gt=0)
    n_layers: Count = Field(gt=0)
    d_attn: Count = Field(gt=0)
    n_ctx: FiniteFloat = Field(ge=0)


def flops_per_token(shape: ModelShape) -> float:
    """Forward-pass FLOPs per token: 2N + 2·n_layer·n_ctx·d_attn."""
    return 2.0 * shape.n_params + 2.0 * shape.n_layers * shape.n_ctx * shape.d_attn
