"""Render generated HTML reports in real headless Chromium (Debian's `chromium`): the page's
script marks data-rendered="ok" only when every embedded figure decoded.

Skipped only where Chromium is absent and $CI is unset; in CI a missing Chromium fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from summary_builders import split_block, stats, summary_dict, sweep_point, tool_kind

from harness.browser import BrowserError, check_rendered, count_images, dump_dom, find_chromium
from harness.capacity import CAPACITY_FILE, capacity_document
from harness.cli import main
from harness.figures import Section
from harness.html_report import render_html
from harness.sweep_report import SWEEP_HTML_FILE, write_sweep_report
from harness.workload.slo import Slo

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        find_chromium() is None and not os.environ.get("CI"),
        reason="Chromium not installed (apt-get install chromium); required when CI is set",
    ),
]

_SUMMARY = summary_dict(
    requests_completed=3,
    requests_failed=0,
    duration_s=2.0,
    output_throughput_tok_s=123.45,
    ttft_ms=stats(20.0, 28.0, 29.8, count=3, mean=20.0, std=8.2),
    latency_split=split_block(
        llm_s=2.0,
        tool_s=6.0,
        orchestration_s=0.5,
        tool_cpu_s=5.5,
        sessions=2,
        per_tool_kind={"retrieval": tool_kind(calls=4, tool_s=6.0, share=0.7)},
    ),
)


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "agent-run <&>"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"run_name": "agent-run <&>", "model": "m"}))
    (run / "summary.json").write_text(json.dumps(_SUMMARY))
    return run


def _visible_text(dom: str) -> str:
    """The dumped DOM's text, tags stripped and whitespace collapsed (entities kept)."""
    return " ".join(re.sub(r"<[^>]+>", " ", dom).split())


def test_run_report_renders_with_its_figure(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    assert main(["report", str(run), "--html"]) == 0
    page = run / "report.html"
    result = check_rendered(page)
    assert result.rendered == "ok", result.describe()
    assert result.images_expected == 1 and result.images_loaded == 1
    assert result.ok
    text = _visible_text(result.dom)
    assert "Benchmark report: agent-run &lt;&amp;&gt;" in text
    assert "Output throughput (tok/s) 123.45" in text
    assert "GPU share (LLM)" in text and "23.5 %" in text
    # The Markdown report shows the same sections.
    md = (run / "report.md").read_text()
    assert "| Output throughput (tok/s) | 123.45 |" in md


def test_broken_image_is_detected(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(render_html("Broken", [Section("S", ("a",), [("x",)])], [("bad", b"nope")]))
    result = check_rendered(page)
    assert result.rendered == "broken-images"
    assert result.images_loaded == 0 and result.images_expected == 1
    assert not result.ok


def test_comparison_page_renders(tmp_path: Path) -> None:
    a = _run_dir(tmp_path)
    b = tmp_path / "b"
    b.mkdir()
    (b / "manifest.json").write_text("{}")
    (b / "summary.json").write_text(json.dumps({**_SUMMARY, "output_throughput_tok_s": 246.9}))
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    page = out / "compare.html"
    result = check_rendered(page)
    assert result.ok, result.describe()
    assert result.images_expected == count_images(page.read_text()) == 1
    assert "246.90 2.00×" in _visible_text(result.dom)


def test_sweep_report_page_renders_with_its_curves(tmp_path: Path) -> None:
    """A sweep's own report.html (write_sweep_report): it renders, its curves decode, and
    it shows the ladder's verdicts with the digits that decide them."""
    doc = capacity_document(
        name="sweep <&>",
        workload="chat",
        load_kind="rate",
        slo=Slo(ttft_ms=100.0),
        target_attainment=0.9,
        points=[sweep_point(1, 0.99, 900.0), sweep_point(2, 0.897, 1800.0)],
        status="finished",
        stopped="saturated",
        devices=1,
        device_kind="cpu",
        accelerator=None,
        model={"name": "tiny"},
        host={},
    )
    (tmp_path / CAPACITY_FILE).write_text(json.dumps(doc))
    write_sweep_report(tmp_path)
    page = tmp_path / SWEEP_HTML_FILE
    result = check_rendered(page)
    assert result.ok, result.describe()
    assert result.images_expected == result.images_loaded == 1
    text = _visible_text(result.dom)
    assert "Sweep sweep &lt;&amp;&gt;: chat" in text
    assert "89.7 % missed" in text and "met (capacity)" in text
    assert "the star the capacity point" in text
    assert "named at the top of a panel instead where it lies far above the points" in text


def test_missing_page_is_a_browser_error(tmp_path: Path) -> None:
    with pytest.raises(BrowserError, match="no such HTML file"):
        dump_dom(tmp_path / "absent.html")


def test_missing_chromium_is_a_browser_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "p.html"
    page.write_text(render_html("P", []))
    monkeypatch.setenv("HARNESS_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(BrowserError, match="Chromium not found"):
        dump_dom(page)


def test_check_html_script_exit_codes(tmp_path: Path, repo_root: Path) -> None:
    good = tmp_path / "good.html"
    good.write_text(render_html("Good", [Section("S", ("a", "b"), [("x", "1")])]))
    bad = tmp_path / "bad.html"
    bad.write_text(render_html("Bad", [], [("bad", b"nope")]))
    script = [sys.executable, str(repo_root / "scripts" / "check_html.py")]
    ok = subprocess.run([*script, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == f"{good}: ok, images 0/0"
    both = subprocess.run(
        [*script, str(good), str(bad)], capture_output=True, text=True, check=False
    )
    assert both.returncode == 1
    assert f"{bad}: NOT RENDERED (broken-images), images 0/1" in both.stdout
