"""`harness run` end to end against the real vLLM CPU server (integration)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fake_nvml
import pandas as pd
import pytest
from run_children import HARNESS_RUN, start_run, wait_for_records

from harness.cli import main
from harness.server import ServerInfo
from harness.telemetry.gpu import GpuReader

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"
MOONCAKE = REPO / "workloads" / "traces" / "mooncake_conversation_trace.jsonl"


def _run(args: list[str]) -> int:
    return main(["run", *args])


def _summary(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.integration
def test_azure_first_30_token_totals_exact(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """Input and output totals of the run equal the trace's sums exactly."""
    with AZURE.open() as f:
        rows = list(csv.DictReader(f))[:30]
    want_in = sum(int(r["ContextTokens"]) for r in rows)
    want_out = sum(int(r["GeneratedTokens"]) for r in rows)
    out = tmp_path / "azure30"
    pid = vllm_server.launch.get("pid")
    code = _run(
        [
            str(AZURE),
            *(["--server-pid", str(pid)] if isinstance(pid, int) else []),
            "--server",
            vllm_server.base_url,
            "--max-requests",
            "30",
            "--time-scale",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = _summary(out)
    assert summary["requests_completed"] == 30
    assert summary["input_tokens"] == want_in
    assert summary["output_tokens"] == want_out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["server"]["model"] == vllm_server.model
    assert manifest["host"]["cpu_logical_cores"] >= 1
    assert manifest["gpu"]["available"] is False
    energy = summary["energy"]
    assert energy["gpu_source"] == "unavailable" and energy["gpu_energy_j"] is None  # type: ignore[index]
    samples = pd.read_parquet(out / "telemetry.parquet")
    cpu = samples[samples["source"] == "cpu"]
    # the first sample only sets the CPU-percent baseline; a sample taken within one kernel
    # tick (10 ms) of the one before has no time to measure over: unknown, never 0
    gaps_ms = cpu["t_ns"].diff() / 1e6
    unknown = cpu["system_cpu_pct"].isna()
    assert len(cpu) >= 2 and unknown.sum() < len(cpu) / 2
    assert ((gaps_ms[unknown].isna()) | (gaps_ms[unknown] < 20)).all(), cpu[unknown]
    if isinstance(pid, int):  # the server's process tree was sampled
        assert (cpu["server_rss_bytes"] > 1_000_000_000).any()
    server = summary["server_metrics"]
    assert server["available"] is True  # type: ignore[index]
    assert server["phases"]["prefill"]["requests"] == 30  # type: ignore[index]
    assert server["counters"]["generation_tokens"] == want_out  # type: ignore[index]
    df = pd.read_parquet(out / "requests.parquet")
    assert len(df) == 30
    assert (df["prompt_tokens"] == df["prompt_tokens_expected"]).all()
    assert (df["sent_ns"] >= df["scheduled_ns"]).all()
    assert (df["first_token_ns"] > df["sent_ns"]).all()
    assert (df["done_ns"] >= df["last_token_ns"]).all()


@pytest.mark.integration
def test_mooncake_shared_hash_ids_hit_prefix_cache(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """Requests whose hash_ids share leading blocks share token prefixes: the server's prefix
    cache reports cached prompt tokens; requests over the context window are skipped, counted."""
    trace = tmp_path / "mc.jsonl"
    h = time.time_ns() % 10**9 * 100  # fresh block ids: the server's cache outlives a test
    lines = [
        {"timestamp": 0, "input_length": 1100, "output_length": 4, "hash_ids": [h, h + 1, h + 2]},
        {"timestamp": 10, "input_length": 1300, "output_length": 4, "hash_ids": [h, h + 1, h + 3]},
        {
            "timestamp": 20,
            "input_length": 9000,
            "output_length": 4,
            "hash_ids": list(range(h + 10, h + 28)),
        },
    ]
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "mc"
    base = [str(trace), "--server", vllm_server.base_url, "--max-concurrency", "1"]
    assert _run([*base, "--out", str(out)]) == 2  # overlength refused before the run
    assert not (out / "summary.json").exists()
    assert _run([*base, "--overlength", "skip", "--out", str(out)]) == 0
    summary = _summary(out)
    assert summary["run"]["requests_skipped_overlength"] == 1  # type: ignore[index]
    df = pd.read_parquet(out / "requests.parquet").sort_values("scheduled_ns")
    assert list(df["prompt_tokens"]) == [1100, 1300]
    cached = df["cached_prompt_tokens"].iloc[1]
    assert cached is not None and 1024 - 16 <= cached <= 1024 + 16


@pytest.mark.integration
def test_agent_sessions_grow_context(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """Native session steps: prompt = previous prompt + output + new input, in order."""
    trace = tmp_path / "agent.jsonl"
    sessions = [
        {
            "session_id": f"a{i}",
            "start_ms": 0,
            "steps": [
                {
                    "new_input_tokens": 300,
                    "output_tokens": 20,
                    "tools": [{"kind": "retrieval", "duration_ms": 50}],
                },
                {"new_input_tokens": 200, "output_tokens": 10},
                {"new_input_tokens": 100, "output_tokens": 5},
            ],
        }
        for i in range(2)
    ]
    trace.write_text("".join(json.dumps(s) + "\n" for s in sessions))
    out = tmp_path / "agent"
    assert _run([str(trace), "--server", vllm_server.base_url, "--out", str(out)]) == 0
    df = pd.read_parquet(out / "requests.parquet")
    for _, g in df.groupby("session_id"):
        g = g.sort_values("step_index")
        assert list(g["prompt_tokens"]) == [300, 520, 630]
        assert list(g["output_tokens"]) == [20, 10, 5]
        sent = list(g["sent_ns"])
        done = list(g["done_ns"])
        assert sent[1] - done[0] >= 50_000_000  # the tool wait sat between the steps
        assert sent[2] >= done[1]
        assert g["cached_prompt_tokens"].iloc[2] >= 512  # the grown context was reused


@pytest.mark.integration
@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT,), (signal.SIGTERM,), (signal.SIGINT, signal.SIGINT)],
    ids=["sigint", "sigterm", "sigint-twice"],
)
def test_stop_signals_write_what_was_measured(
    vllm_server: ServerInfo, tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    """SIGINT, SIGTERM or a second SIGINT mid-run: exit 128 + the first signal, summary and
    requests written, manifest says interrupted, no journal left."""
    out = tmp_path / "interrupted"
    proc = start_run(vllm_server, out)
    journal = out / "requests.partial.jsonl"
    wait_for_records(journal, 1)
    time.sleep(1.0)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signals[0], output.decode()[-2000:]
    assert b"Traceback" not in output
    summary = _summary(out)
    assert summary["run"]["interrupted"] is True  # type: ignore[index]
    assert 0 < summary["requests_completed"] < 400  # type: ignore[operator]
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert (out / "requests.parquet").exists()
    assert not journal.exists()


@pytest.mark.integration
def test_a_killed_run_is_read_back_by_report(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL mid-run leaves journals only; `harness report` recovers the figures from them
    and says the run was recovered."""
    out = tmp_path / "killed"
    proc = start_run(vllm_server, out)
    wait_for_records(out / "requests.partial.jsonl", 3)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (out / "summary.json").exists()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recovered from its journals" in printed
    report = (out / "report.md").read_text()
    assert "did not finish (status 'running')" in report
    assert main(["compare", str(out), str(out), "--out", str(tmp_path / "cmp")]) == 0


def test_unreachable_server_fails_before_the_run(tmp_path: Path) -> None:
    """No run directory is created when the server can't be reached."""
    out = tmp_path / "never"
    code = _run([str(AZURE), "--server", "http://127.0.0.1:9", "--out", str(out)])
    assert code == 2
    assert not out.exists()


def test_an_unbuildable_prompt_fails_before_any_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Mooncake line with a negative block id fails at once, naming it; no server is asked
    for (the unreachable URL is never tried) and no run directory is made."""
    trace = tmp_path / "neg.jsonl"
    trace.write_text(
        '{"timestamp": 0, "input_length": 1000, "output_length": 5, "hash_ids": [5, -1]}\n'
    )
    out = tmp_path / "never"
    code = _run([str(trace), "--server", "http://127.0.0.1:9", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "hash" in err and "-1" in err
    assert "cannot reach" not in err
    assert not out.exists()


def test_malformed_trace_names_file_line_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad trace line is reported with file, line and field before any server is used."""
    trace = tmp_path / "bad.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:47.0000000,abc,44\n"
    )
    code = main(["workload", "inspect", str(trace)])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.csv:3" in err and "ContextTokens" in err


@pytest.mark.integration
def test_server_dying_mid_run_keeps_results(tmp_path: Path) -> None:
    """A second real server is stopped mid-run: failed requests are recorded with their
    errors, what was measured is kept, the run stops early and exits non-zero."""
    from harness.server_process import EmbeddedServer

    server = EmbeddedServer(REPO, log_path=tmp_path / "dying-server.log", kv_cache_gib=1)
    info = server.start()
    out = tmp_path / "dying"
    try:
        proc = subprocess.Popen(
            [
                *HARNESS_RUN,
                str(AZURE),
                "--server",
                info.base_url,
                "--time-scale",
                "0",
                "--max-concurrency",
                "2",
                "--max-requests",
                "2000",
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_for_records(out / "requests.partial.jsonl", 5)
    finally:
        server.stop()
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output.decode()[-2000:]
    summary = _summary(out)
    assert summary["requests_completed"] >= 5  # type: ignore[operator]
    assert summary["requests_failed"] >= 1  # type: ignore[operator]
    assert summary["run"]["aborted_reason"].startswith("server unreachable")  # type: ignore[index]
    assert summary["run"]["requests_sent"] < 2000  # type: ignore[index]
    df = pd.read_parquet(out / "requests.parquet")
    failed = df[~df["ok"].astype(bool)]
    assert len(failed) == summary["requests_failed"]
    assert failed["error"].notna().all()
    assert json.loads((out / "manifest.json").read_text())["status"] == "aborted"


@pytest.mark.integration
def test_model_launches_vllm_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model` launches the real `vllm serve MODEL` from PATH, runs, and stops it again."""
    venv_bin = REPO / ".vllm" / "venv" / "bin"
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CACHE_ROOT": str(REPO / ".vllm" / "cache"),
        "VLLM_NO_USAGE_STATS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "launched"
    model = str(REPO / ".vllm" / "model")
    code = _run(
        [
            str(AZURE),
            "--model",
            model,
            "--max-requests",
            "5",
            "--time-scale",
            "0",
            "--vllm-arg=--max-model-len=8192",
            "--vllm-arg=--enforce-eager",
            "--vllm-arg=--dtype=bfloat16",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["server"]["launch"]["kind"] == "launched"
    assert manifest["server"]["model"] == model
    assert _summary(out)["requests_completed"] == 5
    pid = manifest["server"]["launch"]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the launched server is gone


@pytest.mark.integration
def test_chat_api_prompts_are_token_exact(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """Chat prompts hit the trace's input lengths exactly, template included."""
    out = tmp_path / "chat"
    code = _run(
        [
            str(AZURE),
            "--server",
            vllm_server.base_url,
            "--api",
            "chat",
            "--max-requests",
            "8",
            "--time-scale",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    df = pd.read_parquet(out / "requests.parquet")
    with AZURE.open() as f:
        rows = list(csv.DictReader(f))[:8]
    assert sorted(df["prompt_tokens"]) == sorted(int(r["ContextTokens"]) for r in rows)
    assert sorted(df["output_tokens"]) == sorted(int(r["GeneratedTokens"]) for r in rows)
    assert _summary(out)["run"]["prompt_token_mismatches"] == 0  # type: ignore[index]


@pytest.mark.integration
def test_credentials_in_the_server_url_are_never_written_or_printed(
    vllm_server: ServerInfo, tmp_path: Path
) -> None:
    """`http://user:secret@host`: the run works (credentials sent as HTTP Basic) and the
    secret appears in no file of the run directory and nowhere in the output."""
    secret = "s3cret-Key-42"
    url = vllm_server.base_url.replace("http://", f"http://harness:{secret}@")
    out = tmp_path / "creds"
    proc = subprocess.run(
        [*HARNESS_RUN, str(AZURE), "--server", url, "--max-requests", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert secret not in proc.stdout + proc.stderr
    for path in out.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name
    manifest = json.loads((out / "manifest.json").read_text())
    assert "***@" in " ".join(manifest["command"])


@pytest.mark.parametrize(
    ("name", "part"),
    [("../../etc/x\nnew", "etc-x-new"), ("a b/c", "a-b-c"), ("..", "run"), ("ok.v1_2", "ok.v1_2")],
)
def test_a_workload_name_becomes_one_safe_path_part(name: str, part: str) -> None:
    from harness.cli.run_cmd import safe_name

    assert safe_name(name) == part


def test_an_empty_out_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", str(AZURE), "--out", ""])
    assert exited.value.code == 2
    assert "empty path" in capsys.readouterr().err


def test_a_missing_calibration_fails_before_any_server_or_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    code = _run(
        [
            str(REPO / "workloads" / "demo-agent.yaml"),
            "--server",
            "http://127.0.0.1:9",
            "--tools",
            "execute",
            "--calibration",
            str(tmp_path / "none.json"),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no tool calibration" in err and "cannot reach" not in err
    assert not out.exists()


def test_gpus_this_host_lacks_fail_before_any_server_or_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a (fake) host of 8 GPUs, `--gpus 2,9` fails at once naming the option and the
    GPU; the unreachable server is never tried and no run directory is made."""
    fake = fake_nvml
    monkeypatch.setitem(sys.modules, "pynvml", fake.eight_gpu_host(fake.FakeClock()))
    out = tmp_path / "never"
    code = _run([str(AZURE), "--server", "http://127.0.0.1:9", "--gpus", "2,9", "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2, err
    assert "--gpus 2,9: no GPU 9 on this host (NVML lists 8: 0-7)" in err
    assert "cannot reach" not in err
    assert not out.exists()


def test_gpus_where_nvml_is_unavailable_fail_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reader = GpuReader()
    reader.close()
    if reader.available:
        pytest.skip("NVML reads here")
    out = tmp_path / "never"
    code = _run([str(AZURE), "--server", "http://127.0.0.1:9", "--gpus", "0", "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--gpus 0: NVML is unavailable on this host" in err
    assert not out.exists()


@pytest.mark.integration
def test_a_run_on_a_gpu_host_counts_the_servers_gpus_and_shows_the_others_apart(
    vllm_server: ServerInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole run path on a (fake, real-time) 8-GPU host whose GPUs 2 and 5 hold the
    processes of the pid given as the server's: the summary fits the schema, names them as
    the server's by processes, counts only them in the energy block and shows the other six
    apart; the report says which GPUs were counted."""
    from run_children import server_tree

    fake = fake_nvml
    out = tmp_path / "gpus"
    with server_tree(2) as (pid, (worker_a, worker_b)):
        nvml = fake.eight_gpu_host(
            fake.RealTimeClock(),
            gpu2={"compute_pids": [worker_a]},
            gpu5={"compute_pids": [worker_b]},
        )
        monkeypatch.setitem(sys.modules, "pynvml", nvml)
        code = _run(
            [
                str(AZURE),
                "--server",
                vllm_server.base_url,
                "--server-pid",
                str(pid),
                "--max-requests",
                "4",
                "--time-scale",
                "0",
                "--idle-baseline",
                "0.5",
                "--out",
                str(out),
            ]
        )
    assert code == 0
    summary = _summary(out)
    attribution = summary["telemetry"]["gpu_attribution"]  # type: ignore[index]
    assert attribution["method"] == "processes"
    assert [g["index"] for g in attribution["server_gpus"]] == [2, 5]
    energy: Any = summary["energy"]
    assert energy["gpu_devices"] == [2, 5]
    assert set(energy["gpu_energy_per_device_j"]) == {"2", "5"}
    assert energy["other_gpus"]["devices"] == [0, 1, 3, 4, 6, 7]
    # GPU 2 draws 120 W and GPU 5 150 W throughout
    assert energy["avg_power_w"] == pytest.approx(270.0, rel=0.02)
    assert energy["other_gpus"]["avg_power_w"] == pytest.approx(810.0, rel=0.02)
    assert energy["idle_power_w"] == pytest.approx(270.0, rel=0.02)
    samples = pd.read_parquet(out / "telemetry.parquet")
    gpu = samples[samples["source"] == "gpu"]
    assert set(gpu["device"].astype(int)) == set(range(8))  # every GPU still sampled
    assert set(gpu["power_source"]) == {"nvml-instant"} and gpu["power_avg_w"].notna().all()
    counted = (
        "GPUs 2, 5 of the 8 on this host, the server's (by processes); the others are shown apart"
    )
    assert energy["gpu_source_note"] == counted
    report = (out / "report.md").read_text()
    assert f"| GPUs counted | {counted} |" in report
    assert "| Other GPUs on this host (0, 1, 3, 4, 6, 7): energy (J) |" in report
