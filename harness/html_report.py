"""Self-contained HTML pages from report sections: inline CSS, figures as base64 data URIs,
no external resource of any kind, so a report reads offline, prints, and can be mailed as one file.

A tiny inline script marks `<body data-rendered="ok">` once every image has decoded (else
`"broken-images"`), so a headless browser's dumped DOM proves the page rendered.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from harness.figures import Section, is_numeric_cell

RENDERED_ATTR = "data-rendered"
"""Body attribute the inline script sets: "ok" or "broken-images"."""
IMAGES_LOADED_ATTR = "data-images-loaded"
"""Body attribute the inline script sets: how many images decoded (naturalWidth > 0)."""

# Nothing may load from anywhere but the page itself: images only as data: URIs.
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1a1a1a; background: #fff;
  line-height: 1.4; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { font-size: 1.15rem; margin-top: 1.8rem; }
ul.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: .6rem 1.6rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1rem 0; page-break-inside: avoid; break-inside: avoid; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .9rem; color: #333; margin-top: .3rem; }
dl.headline { display: flex; flex-wrap: wrap; gap: .6rem; margin: 1rem 0; }
dl.headline div { border: 1px solid #ccc; border-radius: 4px; padding: .4rem .8rem;
  background: #f7f9fc; }
dl.headline dt { font-size: .8rem; color: #555; }
dl.headline dd { margin: 0; font-size: 1.1rem; font-weight: 600;
  font-variant-numeric: tabular-nums; }
p.section-note { font-size: .9rem; color: #444; margin: .2rem 0 1rem; }
footer { margin-top: 2rem; font-size: .8rem; color: #777; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  table, figure { page-break-inside: avoid; break-inside: avoid; }
  h2 { page-break-after: avoid; break-after: avoid; }
}
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var loaded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("IMAGES_ATTR", String(loaded.length));
  var ok = loaded.length === imgs.length;
  document.body.setAttribute("RENDERED_ATTR", ok ? "ok" : "broken-images");
});
""".replace("IMAGES_ATTR", IMAGES_LOADED_ATTR).replace("RENDERED_ATTR", RENDERED_ATTR)


def _esc(text: str) -> str:
    """Escape text for HTML element content and attribute values (quotes included)."""
    return html.escape(text, quote=True)


def _is_numeric(cell: str) -> bool:
    """Whether a formatted cell reads as a number (right-aligned), e.g. "1,234.5", "12.0 %"."""
    return is_numeric_cell(cell)


def _section_html(section: Section) -> list[str]:
    """One section as a heading and a table (figures right-aligned, text left), its note
    under it; a section without rows is its note alone."""
    out = [f"<section><h2>{_esc(section.title)}</h2>"]
    if section.rows:
        out.extend(["<table>", "<thead><tr>"])
        out.extend(f'<th scope="col">{_esc(h)}</th>' for h in section.headers)
        out.append("</tr></thead>")
        out.append("<tbody>")
        for row in section.rows:
            cells = []
            for i, cell in enumerate(row):
                if i == 0:
                    cells.append(f'<th scope="row">{_esc(cell)}</th>')
                elif _is_numeric(cell):
                    cells.append(f'<td class="num">{_esc(cell)}</td>')
                else:
                    cells.append(f"<td>{_esc(cell)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
    if section.note:
        out.append(f'<p class="section-note">{_esc(section.note)}</p>')
    out.append("</section>")
    return out


def _figure_html(caption: str, png: bytes) -> str:
    """A PNG embedded as a base64 data URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_esc(caption)}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _headline_html(headline: Sequence[tuple[str, str]]) -> list[str]:
    """The headline figures as a row of labelled values."""
    out = ['<dl class="headline">']
    for label, value in headline:
        out.append(f"<div><dt>{_esc(label)}</dt><dd>{_esc(value)}</dd></div>")
    out.append("</dl>")
    return out


def render_html(
    title: str,
    sections: Sequence[Section],
    figures: Sequence[tuple[str, bytes]] = (),
    notes: Sequence[str] = (),
    headline: Sequence[tuple[str, str]] = (),
) -> str:
    """One self-contained HTML page: `title`, the `headline` figures (label, value), `notes`
    as a list, `figures` (caption, PNG bytes) embedded, then each section as a table. Every
    text is escaped."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_esc(_CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script>{_SCRIPT}</script>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if headline:
        parts.extend(_headline_html(headline))
    if notes:
        parts.append('<ul class="notes">')
        parts.extend(f"<li>{_esc(note)}</li>" for note in notes)
        parts.append("</ul>")
    parts.extend(_figure_html(caption, png) for caption, png in figures)
    for section in sections:
        parts.extend(_section_html(section))
    parts.append("<footer>Generated by harness; self-contained, no external resources.</footer>")
    parts.append("</body>")
    parts.append("</html>")
    return "\n".join(parts) + "\n"
