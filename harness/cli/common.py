"""Pieces shared by subcommands: resolving a workload argument and the server options."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import ConfigError
from harness.workload.spec import (
    TRACE_FORMATS,
    SourceSpec,
    WorkloadSpec,
    is_workload_file,
    load_workload,
)


def add_workload_args(parser: argparse.ArgumentParser) -> None:
    """The positional workload (YAML or trace file) and `--format`."""
    parser.add_argument("workload", type=Path, help="workload YAML, or a trace file")
    parser.add_argument(
        "--format", choices=TRACE_FORMATS, default=None, help="trace format (default: detected)"
    )
    parser.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer (local dir, tokenizer.json or hub name); default: the server's model",
    )


def resolve_workload(path: Path, fmt: str | None) -> WorkloadSpec:
    """A workload YAML as is, or a trace file wrapped in a default workload."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if is_workload_file(path):
        spec = load_workload(path)
        if fmt is not None:
            if spec.source.trace is None:
                raise ConfigError(
                    f"{path}: --format applies to a trace source, not a synthetic one"
                )
            spec = spec.model_copy(
                update={"source": spec.source.model_copy(update={"format": fmt})}
            )
        return spec
    source = SourceSpec.model_validate({"trace": path.resolve(), "format": fmt})
    return WorkloadSpec(name=path.stem, source=source)
