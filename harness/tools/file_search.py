"""File-search tool kernel: grep a seeded source tree with os.walk and re.

Like a coding agent searching its repository: walk the tree in sorted order, read each
source file, and for files that match the pattern collect the matching lines with their
numbers. Size unit: files searched. The tree (pseudo-Python modules of about 1-4 KB, 64 per
package folder) is a pure function of (seed, file), written once per process into a
temporary folder named after the process (`harness-files-<pid>-*`, removed at exit, and by
`scratch.remove_dead` once the process is gone), grown on demand up to TREE_CAP_FILES; a size
beyond the cap searches the tree again (the agent's next grep). The pattern is an
alternation of symbol and comment patterns (`grep -E 'a|b|c'`), the same for every pass so
that work is linear in size.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing.util
import os
import re
import shutil
from pathlib import Path

import numpy as np

from harness.tools import scratch

TREE_CAP_FILES = 2_000
FILES_PER_DIR = 64
PATTERNS = (
    r"def\s+handle_\w+\(",
    r"TODO|FIXME",
    r"class\s+\w+Error\b",
    r"^import\s+(os|sys|re)\b",
    r"return\s+None\b",
    r"\bself\.\w+_cache\b",
)
_NAMES = ("request", "session", "token", "cache", "config", "parser", "record", "sample")
_root: Path | None = None
_trees: dict[int, int] = {}


def cleanup() -> None:
    """Remove this process's generated trees (also runs at exit)."""
    global _root
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)
    _root = None
    _trees.clear()


def _root_dir() -> Path:
    """This process's folder of generated trees, created on first use."""
    global _root
    if _root is None:
        _root = scratch.make_dir("files")
        atexit.register(cleanup)
        multiprocessing.util.Finalize(None, cleanup, exitpriority=10)
    return _root


def _source(rng: np.random.Generator, index: int) -> str:
    """One pseudo-Python module with functions, classes, imports and comments."""
    lines = [f'"""Module {index}."""', "import os" if index % 3 else "import re", ""]
    for j in range(int(rng.integers(4, 16))):
        name = _NAMES[int(rng.integers(len(_NAMES)))]
        kind = int(rng.integers(6))
        if kind == 0:
            lines += [f"class {name.title()}{j}Error(Exception):", "    pass", ""]
        elif kind == 1:
            lines += [f"# TODO: simplify {name} {j}"]
        lines += [
            f"def {'handle' if kind == 2 else 'get'}_{name}_{j}(self, value, limit={j}):",
            f"    if value is None or limit > {int(rng.integers(100))}:",
            "        return None",
            f"    self.{name}_cache[value] = value * {j}",
            f"    return [v for v in range(limit) if v % {j + 2} == 0]",
            "",
        ]
    return "\n".join(lines) + "\n"


def _path(tree: Path, index: int) -> Path:
    """Where file `index` of a tree lives."""
    return tree / f"pkg{index // FILES_PER_DIR:04d}" / f"mod{index:06d}.py"


def tree_for(seed: int, files: int) -> Path:
    """The cached tree for `seed`, holding at least min(files, TREE_CAP_FILES) files."""
    want = min(max(files, 1), TREE_CAP_FILES)
    tree = _root_dir() / f"seed-{seed}"
    have = _trees.get(seed, 0)
    for i in range(have, want):
        path = _path(tree, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_source(np.random.default_rng([seed, i]), i), encoding="utf-8")
    _trees[seed] = max(have, want)
    return tree


def grep(tree: Path, pattern: re.Pattern[str], limit: int) -> tuple[int, int, int]:
    """Search up to `limit` .py files under `tree`: (files searched, files matched, lines)."""
    searched = matched = lines = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        for name in sorted(filenames):
            if searched >= limit:
                return searched, matched, lines
            if not name.endswith(".py"):
                continue
            with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                text = f.read()
            searched += 1
            if pattern.search(text) is None:
                continue
            matched += 1
            lines += sum(1 for line in text.splitlines() if pattern.search(line))
    return searched, matched, lines


def run_file_search(size: float, seed: int) -> dict[str, float | int | str | None]:
    """Grep `size` files of the seeded tree; returns counts."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"file_search size must be a finite number >= 0, got {size}")
    files = max(1, round(size))
    tree = tree_for(seed, files)
    pattern = re.compile("|".join(f"(?:{p})" for p in PATTERNS), re.MULTILINE)
    remaining, passes, matched, lines = files, 0, 0, 0
    while remaining > 0:
        s, m, n = grep(tree, pattern, min(remaining, TREE_CAP_FILES))
        if s == 0:
            raise RuntimeError(f"file_search tree {tree} holds no files")
        remaining -= s
        matched, lines, passes = matched + m, lines + n, passes + 1
    return {"files_searched": files, "passes": passes, "files_matched": matched, "lines": lines}
