"""The console's live progress: a plain line of live figures every few seconds and one at the
end where the console is not a terminal, a bar with the figures on a terminal, and the lines
`harness run` prints against the real server (integration)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import main, run_view
from harness.cli.run_view import LIVE_LABEL, ConsoleView, figures_line
from harness.records import RequestRecord
from harness.run.live import LiveBounds, LiveStats
from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _record(i: int, ok: bool = True) -> RequestRecord:
    sent = 10**9 + i
    record = RequestRecord(
        request_id=f"r{i:07d}",
        session_id=f"s{i}",
        step_index=0,
        api="completions",
        prompt_tokens_expected=10,
        output_tokens_expected=50,
        scheduled_ns=sent,
        sent_ns=sent,
    )
    if ok:
        record.http_status = 200
        record.first_token_ns = sent + 20_000_000
        record.chunk_ns = [sent + 20_000_000 + k * 4_000_000 for k in range(50)]
        record.last_token_ns = record.done_ns = record.chunk_ns[-1]
        record.output_tokens = 50
    else:
        record.error = "http 500"
        record.done_ns = sent
    return record


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=300, markup=False), out


def _live_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if LIVE_LABEL in line]


def test_a_console_that_is_not_a_terminal_gets_periodic_lines_and_one_at_the_end() -> None:
    console, out = _console(terminal=False)
    clock = FakeClock()
    view = ConsoleView(console, plain_interval_s=0.02, now_s=clock)
    with view.progress("w", LiveBounds(requests=10, duration_s=None, sessions=10)) as feed:
        clock.t = 2.0
        feed.record(_record(0))
        feed.record(_record(1, ok=False))
        feed.sessions_ended(2)
        deadline = time.monotonic() + 20.0  # ends as soon as two lines are seen
        while len(_live_lines(out.getvalue())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        periodic = len(_live_lines(out.getvalue()))
        clock.t = 4.0
        feed.record(_record(2))
    lines = _live_lines(out.getvalue())
    assert periodic >= 2  # the ticker printed while the run went on
    assert len(lines) >= periodic + 1  # and once more at the end
    last = lines[-1]
    assert "3/10 requests (1 failed)" in last
    assert "sessions 3/10 with a first request done, 2 ended" in last
    assert "7 requests left, ~9 s left" in last  # 7 left at 0.75 requests per second
    assert "output 25 tok/s (last 5 s), 25 tok/s overall (warm-up included)" in last
    assert "TTFT p50 20.0 ms, ITL p50 4.00 ms" in last
    assert "\x1b[" not in out.getvalue()  # plain text: no terminal control codes


def test_the_labels_say_what_is_counted() -> None:
    """A session counts once its first request is done (the feed hears of it then, not as it
    starts), and the overall tok/s includes warm-up tokens: the labels say so."""
    clock = FakeClock()
    stats = LiveStats(LiveBounds(requests=4, sessions=4), now_s=clock)
    warm = _record(0)
    warm.warmup = True
    stats.record(warm)
    later = _record(1)
    later.step_index = 1  # a later step of a session: no session is counted for it
    stats.record(later)
    clock.t = 2.0
    line = figures_line(stats.figures())
    assert "sessions 1/4 with a first request done, 0 ended" in line
    assert "50 tok/s overall (warm-up included)" in line  # 100 tokens, 50 of them warm-up
    assert "started" not in line


def test_no_line_before_the_interval_but_one_at_the_end() -> None:
    console, out = _console(terminal=False)
    view = ConsoleView(console, plain_interval_s=60.0, now_s=FakeClock())
    with view.progress("w", LiveBounds(requests=2)) as feed:
        feed.record(_record(0))
        time.sleep(0.05)
        assert _live_lines(out.getvalue()) == []
    (line,) = _live_lines(out.getvalue())
    assert "1/2 requests (0 failed)" in line


def test_a_terminal_shows_a_bar_against_the_duration_with_the_figures() -> None:
    console, out = _console(terminal=True)
    clock = FakeClock()
    view = ConsoleView(console, now_s=clock)
    with view.progress("[bold]w", LiveBounds(requests=400, duration_s=60.0)) as feed:
        clock.t = 15.0
        for i in range(9):
            feed.record(_record(i))
    text = out.getvalue()
    assert "[bold]w" in text  # the name is literal, never markup
    assert "15 s/1 min 00 s" in text  # the bar follows the duration that bounds the run
    assert "45 s left of 1 min 00 s" in text
    assert "9/400 requests" in text
    assert "━" in text  # the bar itself
    assert LIVE_LABEL in text and "tok/s" in text


def test_the_figures_line_says_what_is_unavailable() -> None:
    stats = LiveStats(LiveBounds(requests=5, duration_s=30.0), now_s=FakeClock())
    line = figures_line(stats.figures())
    assert line.startswith(f"[{LIVE_LABEL}] 0/5 requests (0 failed)")
    assert "output n/a (last 5 s), n/a overall (warm-up included)" in line
    assert "TTFT p50 n/a, ITL p50 n/a" in line
    assert "0 s elapsed, 30 s left of 30 s" in line


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_harness_run_prints_live_lines_with_tok_s(
    vllm_server: ServerInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    """Output captured (not a terminal): `harness run` prints plain live lines with tok/s,
    the last with every request and session done, in this process or from load workers."""
    monkeypatch.setattr(run_view, "PLAIN_INTERVAL_S", 0.5)
    out = tmp_path / "live"
    args = [str(AZURE), "--server", vllm_server.base_url, "--max-requests", "12"]
    args += ["--workers", str(workers)]
    code = main(["run", *args, "--time-scale", "0", "--max-concurrency", "2", "--out", str(out)])
    assert code == 0
    lines = _live_lines(capsys.readouterr().out)
    assert lines, "no live line printed"
    assert all("tok/s" in line for line in lines)
    assert "12/12 requests (0 failed)" in lines[-1]
    assert "sessions 12/12 with a first request done, 12 ended" in lines[-1]  # one each
    assert "output n/a" not in lines[-1].split("(last 5 s)")[1]  # an overall rate was measured
