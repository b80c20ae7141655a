"""File-write tool kernel: write and edit source files on disk, as a coding agent's Write and
Edit tools do.

Each file of FILE_BYTES is written whole, flushed and fsync'd (a Write), then edited: read
back, one span replaced, written to a temporary name, fsync'd and renamed over the file (an
editor's atomic save). Size unit: kilobytes written (writes and edits together). Files go to
a folder of the tools' scratch folder named after the process (`harness-files-<pid>-*`, the
folder the sandbox's own folders live in), removed when the call ends; their text is a pure
function of (seed, file).
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

from harness.tools import scratch

FILE_BYTES = 8_192
"""Bytes of one file (the last may be shorter): each is written once and edited once."""
_LINE = "    value = compute_{i}(items, limit={j})  # step {j} of the change\n"


def _text(seed: int, index: int) -> str:
    """About FILE_BYTES of pseudo-Python for file `index`."""
    rng = np.random.default_rng([seed, index])
    lines = [f'"""Generated module {index}."""\n', f"def handler_{index}(items, limit):\n"]
    size = sum(len(line) for line in lines)
    while size < FILE_BYTES:
        line = _LINE.format(i=int(rng.integers(1 << 16)), j=int(rng.integers(1000)))
        lines.append(line)
        size += len(line)
    return "".join(lines)[:FILE_BYTES]


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` and force it to disk."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def run_file_write(size: float, seed: int) -> dict[str, float | int | str | None]:
    """Write and edit files until `size` KB have been written; returns counts."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"file_write size must be a finite number >= 0, got {size}")
    left = max(64, round(size * 1024 / 2))  # bytes still to write once (each is edited too)
    files = 0
    folder = scratch.make_dir("files")
    written = 0
    try:
        while left > 0:
            i, files = files, files + 1
            path = folder / f"mod{i:06d}.py"
            data = _text(seed, i).encode()[: min(FILE_BYTES, left)]
            left -= len(data)
            _write(path, data)
            text = path.read_bytes()
            cut = len(text) // 3
            edited = (text[:cut] + b"# edited\n" + text[cut + 9 :])[: len(text)]
            temporary = path.with_suffix(".tmp")
            _write(temporary, edited)
            os.replace(temporary, path)
            written += len(data) + len(edited)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"files_written": files, "bytes_written": written}
