"""`harness sweep --generation NAME=URL ...`: the command line of a sweep per hardware
generation turned into a GenerationsPlan (harness.run.generations runs it), and what it did
printed at the end: each generation's exit and wall time, the whole wall time, the
comparison."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.capacity import CAPACITY_FILE
from harness.cli.console import literal_printer, make_console
from harness.cli.dash_values import attach_dash_values
from harness.cli.run_cmd import ray_choice, safe_name
from harness.errors import ConfigError, ServerError
from harness.redact import split_credentials
from harness.run.generations import (
    COMPARISON_DIR,
    GENERATIONS_FILE,
    Generation,
    GenerationsPlan,
    run_comparison,
    run_generations,
)
from harness.server import normalize_base_url
from harness.workload.spec import WorkloadSpec

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
RESERVED_NAMES = (COMPARISON_DIR,)
"""Folder names of OUT that a generation may not take."""

CHILD_OWN_OPTIONS: dict[str, bool] = {
    "--generation": True,
    "--out": True,
    "--ray": False,
    "--workers": True,
}
"""The options each generation's sweep gets its own value of (the parent's are left out of
its command line), and whether each always takes a value (--ray's is optional)."""

PER_SERVER_OPTIONS = ("server_pid", "gpus", "gpu_metrics", "accelerator")
"""Options that describe one server's processes or hardware: they can't apply to several."""


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """`--generation NAME=URL[,URL...]` (repeatable)."""
    p.add_argument(
        "--generation",
        type=generation_pair,
        action="append",
        default=[],
        metavar="NAME=URL[,URL...]",
        help="a hardware generation's attached server, or its replicas comma-separated (routed "
        "by --routing; a comma in a URL's password is written %%2C) (repeatable, instead of "
        "--server): each "
        "gets its own sweep in OUT/NAME, at the same time on the --ray cluster (its CPUs "
        "split between them) or one after the other without --ray, then harness compare of "
        "them in OUT/comparison",
    )


def generation_pair(text: str) -> tuple[str, tuple[str, ...]]:
    """An argparse `type` for `--generation`: NAME=URL[,URL...], NAME a plain folder name,
    several URLs the replicas of the generation's deployment."""
    name, sep, given = text.partition("=")
    name = name.strip()
    urls = tuple(u.strip() for u in given.split(","))
    if not sep or not name or not all(urls):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=URL or NAME=URL,URL,... (replicas), e.g. h100=http://h:8000"
        )
    if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise argparse.ArgumentTypeError(
            f"{name!r} is not a generation name: letters, digits, '.', '_' and '-', at most 64, "
            f"starting with a letter or digit, not {', '.join(RESERVED_NAMES)} (it names a folder)"
        )
    try:
        for url in urls:
            normalize_base_url(url)
    except ServerError as err:
        raise argparse.ArgumentTypeError(f"{name}: {err}") from None
    return name, urls


def _option(token: str) -> str | None:
    """The child's own option a command-line token names (argparse takes a unique prefix
    of a long option; the command line parsed, so a prefix here is unambiguous), or None."""
    if not token.startswith("--") or token == "--":
        return None
    name = token.split("=", 1)[0]
    for option in CHILD_OWN_OPTIONS:
        if name == option or (len(name) > 3 and option.startswith(name)):
            return option
    return None


def sweep_args(argv: Sequence[str]) -> tuple[str, ...]:
    """The sweep's command line after `sweep` without the options each generation's sweep
    gets its own value of (--generation, --out, --ray, --workers), everything else as given."""
    words = attach_dash_values(argv)
    start = words.index("sweep") + 1 if "sweep" in words else 0
    kept: list[str] = []
    i = start
    while i < len(words):
        word = words[i]
        if word == "--":
            kept.extend(words[i:])
            break
        option = _option(word)
        if option is None:
            kept.append(word)
            i += 1
            continue
        i += 1
        if "=" not in word and i < len(words):
            takes = CHILD_OWN_OPTIONS[option] or not words[i].startswith("-")
            i += 1 if takes else 0
    return tuple(kept)


def _generations(args: argparse.Namespace) -> tuple[Generation, ...]:
    """The --generation servers, each name and each server once."""
    generations: list[Generation] = []
    seen: dict[str, str] = {}
    for name, urls in args.generation:
        if any(g.name == name for g in generations):
            raise ConfigError(f"--generation {name} is given twice: each name is one folder")
        shown_urls = tuple(split_credentials(normalize_base_url(url))[0] for url in urls)
        for shown in shown_urls:
            if shown in seen:
                where = "itself twice" if seen[shown] == name else f"as {seen[shown]} does"
                raise ConfigError(
                    f"--generation {name} names the server {shown} {where}: each generation "
                    "needs servers of its own"
                )
            seen[shown] = name
        generations.append(Generation(name, urls, shown_urls))
    return tuple(generations)


def generation_plan(
    args: argparse.Namespace, workload: Callable[[], WorkloadSpec]
) -> GenerationsPlan:
    """The plan `--generation` describes; `workload` checks the sweep's own inputs (loads,
    SLO, workload) before any child starts, so a mistake is said once."""
    if args.server or args.model:
        flag = "--server" if args.server else "--model"
        raise ConfigError(
            f"--generation and {flag} exclude each other: each --generation NAME=URL names "
            "its own attached server"
        )
    given = [
        "--" + dest.replace("_", "-") for dest in PER_SERVER_OPTIONS if getattr(args, dest, None)
    ]
    if given:
        raise ConfigError(
            f"{', '.join(given)} {'describes' if len(given) == 1 else 'describe'} one server's "
            "processes or hardware, not every "
            "--generation's: sweep that generation on its own with --server"
        )
    generations = _generations(args)
    choice = ray_choice(args)  # --ray-placement without --ray, Ray's install hint
    base = workload()
    out: Path = args.out or Path("results") / f"generations-{safe_name(base.name)}"
    for g in generations:
        if (out / g.name / CAPACITY_FILE).exists() and not args.overwrite:
            raise ConfigError(
                f"{out / g.name}: a sweep is already there; pass --overwrite or another --out"
            )
    return GenerationsPlan(
        generations=generations,
        out=out,
        sweep_args=sweep_args(getattr(args, "argv", None) or []),
        ray=choice,
        workers=args.workers,
        command=tuple(["harness", *(getattr(args, "argv", None) or [])]),
    )


def generations_sweep(args: argparse.Namespace, workload: Callable[[], WorkloadSpec]) -> int:
    """Handler of `harness sweep --generation ...`: the sweeps, then their comparison; the
    exit code is the worst sweep's."""
    plan = generation_plan(args, workload)
    console = make_console()
    say = literal_printer(console)
    how = "at the same time on the Ray cluster" if plan.ray else "one after the other"
    say(f"sweeps of {len(plan.generations)} generations {how}, into {plan.out}")
    outcome = run_generations(plan, say)
    record = outcome.record
    for g in record["generations"]:
        ended = "not started" if g["exit_code"] is None else f"exit {g['exit_code']}"
        wall = "" if g["wall_s"] is None else f", {g['wall_s']:.1f} s"
        workers = "" if g["ray_workers"] is None else f", {g['ray_workers']} Ray load workers"
        say(f"  {g['name']}: {ended}{wall}{workers}: {g['dir']}")
    say(f"wall time: {record['wall_s']:.1f} s for {len(plan.generations)} sweeps {how}")
    say(f"generations: {plan.out / GENERATIONS_FILE}")
    if not outcome.compare_command:
        say("no comparison: fewer than two generations measured a load (capacity.json points)")
        return outcome.exit_code
    code = run_comparison(plan, outcome, say)
    command = shlex.join(outcome.compare_command)
    if code == 0:
        say(f"comparison: {plan.out / COMPARISON_DIR / 'compare.md'} (again: {command})")
    else:
        say(f"warning: the comparison exited {code}; the sweeps are kept: {command}")
    return outcome.exit_code
