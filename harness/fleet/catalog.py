"""The accelerator catalog: peak dense FLOP/s, memory, bandwidth and board power per
accelerator, each with its source. Built in from `accelerators.yaml`; users extend it with a
YAML of the same schema (an entry named like a built-in one replaces it)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.config_files import FiniteFloat, read_yaml, validate
from harness.errors import ConfigError
from harness.suggest import find_name, suggest

Precision = Literal["bf16", "fp8"]
PRECISIONS: tuple[Precision, ...] = ("bf16", "fp8")
FLOPS_PER_TFLOPS = 1e12
BUILTIN_CATALOG = "accelerators.yaml"


class Accelerator(BaseModel):
    """One accelerator's published figures (dense tensor throughput, no sparsity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    board_power_w: FiniteFloat = Field(gt=0)
    hbm_gb: FiniteFloat = Field(gt=0)
    hbm_kind: str | None = None
    hbm_bandwidth_tb_s: FiniteFloat = Field(gt=0)
    bf16_dense_tflops: FiniteFloat | None = Field(gt=0)
    fp8_dense_tflops: FiniteFloat | None = Field(gt=0)
    source: str = Field(min_length=1)
    secondary_source: bool = False
    note: str = ""
    device_names: list[str] = Field(default_factory=list)

    def peak_flops(self, precision: Precision) -> float | None:
        """Peak dense FLOP/s at `precision`, or None where the accelerator has no such mode."""
        tflops = self.bf16_dense_tflops if precision == "bf16" else self.fp8_dense_tflops
        return None if tflops is None else tflops * FLOPS_PER_TFLOPS


class _CatalogFile(BaseModel):
    """A catalog file: `accelerators: {NAME: {...}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accelerators: dict[str, Accelerator]


def _read(path: Path) -> dict[str, Accelerator]:
    data = read_yaml(path, "accelerator catalog")
    return dict(validate(_CatalogFile, data, path).accelerators)


def builtin_catalog_path() -> Path:
    """Where the packaged catalog lies (shipped as package data)."""
    return Path(str(resources.files("harness.fleet").joinpath(BUILTIN_CATALOG)))


def load_catalog(extra: Path | None = None) -> dict[str, Accelerator]:
    """The built-in catalog, extended (or overridden, name by name) by `extra`."""
    catalog = _read(builtin_catalog_path())
    if extra is not None:
        if not extra.is_file():
            raise ConfigError(f"{extra}: no such catalog file")
        catalog.update(_read(extra))
    return catalog


def match_accelerator(device_name: str, catalog: dict[str, Accelerator]) -> str | None:
    """The catalog name whose `device_names` holds `device_name` (case-insensitive), else None."""
    wanted = device_name.strip().casefold()
    for name, acc in catalog.items():
        if name.casefold() == wanted or any(d.casefold() == wanted for d in acc.device_names):
            return name
    return catalog_name(device_name, catalog)


def catalog_name(name: str, catalog: dict[str, Accelerator]) -> str | None:
    """The catalog's own name for an accelerator written `name`, matched ignoring case,
    spaces, hyphens and underscores (`H100 SXM` is `H100-SXM`); None where none matches."""
    return find_name(name, catalog)


def unknown_accelerator(name: str, catalog: dict[str, Accelerator]) -> str:
    """Why `name` is no catalog accelerator, with the closest names and every known one."""
    hint = suggest(name, catalog, loose=True)
    return f"'{name}' is not in the catalog{hint}; known: {', '.join(sorted(catalog))}"
