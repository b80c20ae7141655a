"""Headless Chromium as a render check for the HTML reports: load the page from disk, dump the
DOM after load, and read the marks html_report's inline script sets. The network is not switched
off: the page's own Content-Security-Policy blocks every load from outside it (images must be
data: URLs), and the --disable-background-networking, --disable-component-update and
--disable-sync flags stop Chromium's own connections.

Chromium is Debian's `chromium` package (/usr/bin/chromium), or $HARNESS_CHROMIUM.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.html_report import IMAGES_LOADED_ATTR, RENDERED_ATTR

CHROMIUM_ENV = "HARNESS_CHROMIUM"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
DEFAULT_TIMEOUT_S = 60.0
_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserError(HarnessError):
    """Chromium is missing, failed, timed out, or the page did not render."""


def find_chromium() -> Path | None:
    """The Chromium binary: $HARNESS_CHROMIUM if set, else /usr/bin/chromium or one on PATH."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    if DEFAULT_CHROMIUM.is_file() and os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def dump_dom(page: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """The DOM of a local HTML file after it loaded in headless Chromium (fresh profile,
    Chromium's background connections off; the page's CSP blocks outside loads)."""
    chromium = find_chromium()
    if chromium is None:
        where = os.environ.get(CHROMIUM_ENV) or f"{DEFAULT_CHROMIUM} or PATH"
        raise BrowserError(f"Chromium not found ({where}); install Debian's `chromium` package")
    page = Path(page).resolve()
    if not page.is_file():
        raise BrowserError(f"{page}: no such HTML file")
    with tempfile.TemporaryDirectory(prefix="harness-chromium-") as profile:
        cmd = [
            str(chromium),
            *_FLAGS,
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrowserError(f"Chromium timed out after {timeout_s:g} s on {page}") from exc
        except OSError as exc:
            raise BrowserError(f"Chromium could not be started ({chromium}): {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise BrowserError(f"Chromium exited with {proc.returncode} on {page}: {tail}")
    if "<body" not in proc.stdout:
        raise BrowserError(f"Chromium dumped no DOM for {page}")
    return proc.stdout


class _ImgCounter(html.parser.HTMLParser):
    """Counts <img> elements of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Count one tag if it is an image."""
        if tag == "img":
            self.images += 1


def count_images(document: str) -> int:
    """How many <img> elements an HTML document holds."""
    counter = _ImgCounter()
    counter.feed(document)
    counter.close()
    return counter.images


def _body_attr(dom: str, name: str) -> str | None:
    """An attribute of the dumped DOM's <body>, or None."""
    body = re.search(r"<body\b[^>]*>", dom)
    if body is None:
        return None
    found = re.search(rf'\s{re.escape(name)}="([^"]*)"', body.group(0))
    return None if found is None else found.group(1)


@dataclass(frozen=True, slots=True)
class RenderCheck:
    """What headless Chromium made of one page."""

    path: Path
    rendered: str | None
    """The body's data-rendered mark: "ok", "broken-images", or None (script did not run)."""
    images_expected: int
    images_loaded: int | None
    dom: str

    @property
    def ok(self) -> bool:
        """Rendered, and every image in the file decoded."""
        return self.rendered == "ok" and self.images_loaded == self.images_expected

    def describe(self) -> str:
        """One line for a console: the verdict and the image count."""
        verdict = "ok" if self.ok else f"NOT RENDERED ({self.rendered or 'no mark'})"
        loaded = "?" if self.images_loaded is None else str(self.images_loaded)
        return f"{self.path}: {verdict}, images {loaded}/{self.images_expected}"


def check_rendered(page: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> RenderCheck:
    """Render a page made by html_report in headless Chromium and read its render marks."""
    expected = count_images(Path(page).read_text(encoding="utf-8"))
    dom = dump_dom(page, timeout_s)
    loaded = _body_attr(dom, IMAGES_LOADED_ATTR)
    return RenderCheck(
        path=Path(page),
        rendered=_body_attr(dom, RENDERED_ATTR),
        images_expected=expected,
        images_loaded=int(loaded) if loaded is not None and loaded.isdigit() else None,
        dom=dom,
    )
