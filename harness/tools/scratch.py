"""Temporary folders of the tools, named after the process that owns them
(`harness-<kind>-<pid>-<random>`), so that what a killed process left behind is found by
its dead pid and removed: by the next run, or by the run whose worker died."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import psutil

_NAME = re.compile(r"^harness-(?:tools|files|sandbox)-(\d+)-")


def make_dir(kind: str, parent: Path | str | None = None) -> Path:
    """A new folder `harness-<kind>-<pid>-*` under `parent` (default: the temp folder)."""
    return Path(tempfile.mkdtemp(prefix=f"harness-{kind}-{os.getpid()}-", dir=parent))


def owner_alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def remove_dead(parent: Path | str | None = None) -> list[Path]:
    """Remove the folders under `parent` (default: the temp folder) that belong to processes
    of this user that are gone; returns what was removed."""
    where = Path(parent if parent is not None else tempfile.gettempdir())
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in where.iterdir():
            match = _NAME.match(entry.name)
            if match is None or owner_alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
    return removed
