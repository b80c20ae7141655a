#!/usr/bin/env python3
"""Check that HTML reports render in real headless Chromium: every page must load, run its
render script (body data-rendered="ok") and decode every embedded image.

Prints one line per file; exits 0 when all rendered, 1 when one did not, 2 when Chromium is
missing or failed.

    .venv/bin/python scripts/check_html.py results/agents/rag-agent/report.html
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.browser import DEFAULT_TIMEOUT_S, BrowserError, check_rendered


def main(argv: list[str] | None = None) -> int:
    """Check each file; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", type=Path, nargs="+", help="HTML files to render")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        if not path.is_file():
            print(f"{path}: no such file")
            failed = True
            continue
        try:
            result = check_rendered(path, args.timeout_s)
        except BrowserError as exc:
            print(f"{path}: error: {exc}")
            return 2
        print(result.describe())
        failed = failed or not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
