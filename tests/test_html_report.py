"""Unit tests for harness.html_report: escaping, embedded figures, no external resources."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from harness.figures import Section
from harness.html_report import render_html
from harness.plots import ratio_bars_chart

_PNG = ratio_bars_chart(["a", "b"], [("x", [1.0, 2.0]), ("y", [1.0, None])], "t")


class _Collector(HTMLParser):
    """Collects every tag's attributes and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def _page() -> str:
    section = Section(
        "Latency <ms> & more",
        ("metric", "run <b>"),
        [("<script>alert(1)</script>", "1,234.50"), ("quote \" and ' here", "n/a")],
    )
    return render_html(
        "Report <of> A & B",
        [section],
        figures=[("caption <i>", _PNG)],
        notes=["note with <tag> & http://example.com/x as text"],
    )


def test_every_text_is_escaped() -> None:
    page = _page()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Report &lt;of&gt; A &amp; B</title>" in page
    assert "<h2>Latency &lt;ms&gt; &amp; more</h2>" in page
    assert "run &lt;b&gt;" in page
    assert "quote &quot; and &#x27; here" in page
    assert "<tag>" not in page and "<i>" not in page
    parsed = _parse(page)
    # Exactly one script: the page's own render check; text round-trips unescaped.
    assert parsed.tags.count("script") == 1
    text = "".join(parsed.text)
    assert "<script>alert(1)</script>" in text
    assert "Report <of> A & B" in text


def test_no_external_resources() -> None:
    page = _page()
    for tag, key, value in _parse(page).attrs:
        if key in {"src", "href", "action", "srcset", "poster", "data"}:
            assert not re.match(r"\s*(https?:)?//", value, re.I), (tag, key, value)
            assert value.startswith("data:"), (tag, key, value)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "@import" not in page and "url(" not in page
    csp = [v for tag, k, v in _parse(page).attrs if tag == "meta" and k == "content"]
    assert any(v.startswith("default-src 'none'; img-src data:;") for v in csp)


def test_figures_are_embedded_as_base64_png() -> None:
    page = _page()
    images = [v for tag, k, v in _parse(page).attrs if tag == "img" and k == "src"]
    assert len(images) == 1
    prefix = "data:image/png;base64,"
    assert images[0].startswith(prefix)
    assert base64.b64decode(images[0][len(prefix) :]) == _PNG
    assert "<figcaption>caption &lt;i&gt;</figcaption>" in page


def test_render_mark_script_and_numeric_cells() -> None:
    page = _page()
    assert "data-rendered" in page and "naturalWidth > 0" in page and "broken-images" in page
    assert '<td class="num">1,234.50</td>' in page
    assert "<td>n/a</td>" in page
    assert page.startswith("<!DOCTYPE html>")


def test_page_without_figures_or_notes() -> None:
    page = render_html("Empty", [])
    assert "<img" not in page and 'class="notes"' not in page
    assert "<h1>Empty</h1>" in page


def test_headline_comes_before_figures_and_a_note_stands_for_an_empty_section() -> None:
    sections = [Section("Energy", ("figure", "value"), note="not measured: GPU (no NVML)")]
    png = _PNG if isinstance(_PNG, bytes) else b""
    page = render_html("T", sections, [("GPUs per profile", png)], headline=[("TTFT", "3 ms")])
    assert page.index('<dl class="headline">') < page.index("<figure>") < page.index("Energy")
    assert '<p class="section-note">not measured: GPU (no NVML)</p>' in page
    assert "<table>" not in page  # the empty section draws no table
    assert "<figcaption>GPUs per profile</figcaption>" in page
