"""Pieces shared by subcommands: resolving a workload argument, and naming the command-line
option behind a validation error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from harness.config_files import dotted
from harness.errors import ConfigError
from harness.suggest import close_files, did_you_mean
from harness.workload.limits import MAX_SCALE
from harness.workload.spec import (
    TRACE_FORMATS,
    SourceSpec,
    WorkloadSpec,
    is_workload_file,
    load_workload,
)

WORKLOADS_DIR = Path("workloads")
"""Where the shipped workloads lie (relative to the checkout): a missing workload file's
close names are looked for here too."""


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
    parser.add_argument(
        "--token-scale",
        type=float,
        default=None,
        metavar="F",
        help="multiply every token length (inputs, outputs, appends, block sizes) by F, so a "
        "real trace's shape fits a small server (default: the workload's, 1)",
    )
    parser.add_argument(
        "--repair-tokens",
        action="store_true",
        help="repair recorded rounds whose tokens contradict their session instead of "
        "refusing the trace",
    )


def with_source_flags(spec: WorkloadSpec, args: argparse.Namespace) -> WorkloadSpec:
    """`spec` with `--token-scale` and `--repair-tokens` applied to its trace source."""
    scale = getattr(args, "token_scale", None)
    repair = bool(getattr(args, "repair_tokens", False))
    if scale is None and not repair:
        return spec
    if spec.source.trace is None:
        raise ConfigError("--token-scale and --repair-tokens apply to a trace source")
    update: dict[str, object] = {}
    if scale is not None:
        if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
            raise ConfigError(f"--token-scale must be a number in (0, {MAX_SCALE:g}], got {scale}")
        update["token_scale"] = scale
    if repair:
        update["repair_tokens"] = True
    return spec.model_copy(update={"source": spec.source.model_copy(update=update)})


def resolve_workload(path: Path, fmt: str | None) -> WorkloadSpec:
    """A workload YAML as is, or a trace file wrapped in a default workload."""
    try:
        found = path.exists()
    except OSError as err:  # a name too long, say
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    if not found:
        hint = did_you_mean(close_files(path, [WORKLOADS_DIR]))
        raise ConfigError(f"{path}: no such file{hint}")
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


def option_errors(
    err: ValidationError, options: Mapping[tuple[str, ...], str], args: argparse.Namespace
) -> str:
    """A validation error of a spec built from command-line options, one phrase per problem,
    each naming the option and the value given (`--max-requests -5: Input should be greater
    than 0`). `options` maps a spec key (`("limits", "max_requests")`) to the argparse dest
    that set it; a problem of a whole section names the options given in it."""
    phrases = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        given = [
            f"{_flag(dest)} {getattr(args, dest)}"
            for key, dest in options.items()
            if (key == loc or (len(loc) == 1 and key[:1] == loc))
            and getattr(args, dest, None) is not None
        ]
        where = ", ".join(given) if given else f"workload key '{dotted(e['loc'])}'"
        phrases.append(f"{where}: {msg}")
    return "; ".join(phrases)


def _flag(dest: str) -> str:
    """The option of an argparse dest: `max_requests` → `--max-requests`."""
    return "--" + dest.replace("_", "-")


def number_in(
    low: float, high: float, *, integer: bool = False, low_open: bool = False
) -> Callable[[str], float]:
    """An argparse `type` for a finite number in [low, high] (or (low, high] with
    `low_open`): NaN, infinities and values out of range are one-line usage errors."""
    lower = f"> {low:g}" if low_open else f"≥ {low:g}"
    upper = f"{int(high):,}" if integer else f"{high:g}"
    what = "an integer" if integer else "a finite number"

    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            raise argparse.ArgumentTypeError(f"{text} must be {what} {lower} and ≤ {upper}")
        return value

    return parse


def out_dir(text: str) -> Path:
    """An argparse `type` for an output folder: not empty (`''` would be the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a folder to write to")
    return Path(text)
