"""`harness run` against several replicas: two real vLLM servers (two configurations of the
tiny model) under session-affinity and round-robin on an agent workload, and faults with the
null server as a replica that can be stopped: one down at the start, one serving another
model, one that dies mid-run."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from null_server_process import NullServer
from run_children import wait_for_records

from harness.cli import main
from harness.results import JOURNAL_FILE, RunReader
from harness.run_summary import read_summary
from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "workloads" / "demo-agent.yaml"
CHATBOT = REPO / "workloads" / "demo-chatbot.yaml"


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


def _hit_rate(summary: dict[str, Any]) -> float:
    counters = summary["server_metrics"]["counters"]
    return float(counters["prefix_cache_hits"] / counters["prefix_cache_queries"])


@pytest.mark.integration
def test_session_affinity_keeps_sessions_on_one_replica_and_hits_the_prefix_cache_more(
    vllm_server: ServerInfo, vllm_server_b: ServerInfo, tmp_path: Path
) -> None:
    urls = [vllm_server.base_url, vllm_server_b.base_url]
    runs: dict[str, dict[str, Any]] = {}
    for policy in ("session-affinity", "round-robin"):
        out = tmp_path / policy
        argv = ["run", str(AGENT), "--server", urls[0], "--server", urls[1]]
        code = main([*argv, "--routing", policy, "--idle-baseline", "0", "--out", str(out)])
        assert code == 0
        summary = runs[policy] = _summary(out)
        servers = summary["servers"]
        assert servers["routing"] == policy and servers["unrouted_requests"] == 0
        replicas = servers["replicas"]
        assert [r["url"] for r in replicas] == urls
        assert sum(r["requests_total"] for r in replicas) == summary["requests_total"]
        assert sum(r["output_tokens"] for r in replicas) == summary["output_tokens"]
        hits = sum(r["server_metrics"]["counters"]["prefix_cache_hits"] for r in replicas)
        assert hits == summary["server_metrics"]["counters"]["prefix_cache_hits"]
        requests = pd.read_parquet(out / "requests.parquet")
        assert set(requests["server"]) == set(urls)
        report = (out / "report.md").read_text()
        assert "## Replicas" in report and f"routing: {policy}" in report
        manifest = json.loads((out / "manifest.json").read_text())
        assert [r["base_url"] for r in manifest["server"]["replicas"]] == urls
        assert manifest["workload"]["routing"] == policy
        if policy == "session-affinity":
            per_session = requests.groupby("session_id")["server"].nunique()
            assert (per_session == 1).all()
            assert servers["sessions_on_several_replicas"] == 0
    assert runs["round-robin"]["servers"]["sessions_on_several_replicas"] > 0
    assert _hit_rate(runs["session-affinity"]) > _hit_rate(runs["round-robin"])


@pytest.mark.integration
def test_a_replica_down_at_the_start_is_named_before_any_run_directory(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    null = NullServer(tmp_path)
    down = null.url
    null.stop()
    out = tmp_path / "run"
    code = main(["run", str(CHATBOT), "--server", vllm_server.base_url, "--server", down])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"replica 2 of 2: cannot reach the server at {down}" in err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.integration
def test_replicas_serving_different_models_are_refused(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    null = NullServer(tmp_path)
    try:
        code = main(["run", str(CHATBOT), "--server", vllm_server.base_url, "--server", null.url])
    finally:
        null.stop()
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"replica 2 of 2 ({null.url}) serves 'null-model'" in err
    assert "'tiny-llama': replicas must serve the same model" in err


def test_a_replica_that_dies_mid_run_is_taken_out_and_its_failures_recorded(
    tmp_path: Path,
) -> None:
    """Two null servers as the workload's `servers:` (one with credentials in its URL),
    round-robin, the demo chatbot's 40 requests at 10 a second: the second is stopped once 8
    requests are journalled (past the 2 warm-up ones); every request is recorded, the ones it
    lost failed and named, the rest went to the first, the run exits 1, and the credentials
    are written nowhere."""
    model = str(REPO / ".vllm" / "model")
    keep = NullServer(tmp_path, "--ttft-ms", "5", "--itl-ms", "2", "--model-root", model)
    dies = NullServer(tmp_path, "--ttft-ms", "5", "--itl-ms", "2", "--model-root", model)
    workload = yaml.safe_load(CHATBOT.read_text())
    workload["source"]["trace"] = str((CHATBOT.parent / workload["source"]["trace"]).resolve())
    workload["servers"] = [keep.url, dies.url.replace("http://", "http://user:s3cret@")]
    workload["routing"] = "round-robin"
    path = tmp_path / "replicas.yaml"
    path.write_text(yaml.safe_dump(workload))
    out = tmp_path / "run"

    def stop_when_under_way() -> None:
        wait_for_records(out / JOURNAL_FILE, 8, timeout_s=60)
        dies.stop()

    timer = threading.Thread(target=stop_when_under_way, daemon=True)
    try:
        timer.start()
        argv = [str(path), "--rate", "10", "--pattern", "constant", "--idle-baseline", "0"]
        code = main(["run", *argv, "--out", str(out)])
    finally:
        timer.join(60)
        keep.stop()
        dies.stop()
    assert code == 1
    requests = pd.read_parquet(out / "requests.parquet").sort_values("scheduled_ns")
    summary = _summary(out)
    assert len(requests) == summary["run"]["requests_planned"] == 40
    failed = requests[~requests["ok"]]
    assert len(failed) >= 1 and set(failed["server"]) == {dies.url}
    last_failure = failed["sent_ns"].max()
    after = requests[requests["sent_ns"] > last_failure + 50_000_000]
    assert len(after) > 0 and set(after["server"]) == {keep.url} and after["ok"].all()
    assert summary["run"]["aborted_reason"] is None  # one replica lost is not the deployment
    by_url = {r["url"]: r for r in summary["servers"]["replicas"]}
    assert by_url[dies.url]["requests_failed"] == len(failed)
    assert by_url[keep.url]["requests_failed"] == 0
    assert summary["requests_failed"] == len(failed)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["workload"]["routing"] == "round-robin"
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".md", ".html")]
    assert written and not [p for p in written if "s3cret" in p.read_text()]
    # Without its summary (a crashed run's directory), the replicas' figures are recovered.
    (out / "summary.json").unlink()
    recovered = read_summary(RunReader(out))
    assert recovered.recovered is not None and recovered.servers is not None
    again = {r.url: r for r in recovered.servers.replicas}
    assert again[dies.url].requests_failed == len(failed)
    assert again[keep.url].requests_total == by_url[keep.url]["requests_total"]
    assert not again[keep.url].server_metrics.available
