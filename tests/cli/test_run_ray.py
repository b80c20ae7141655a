"""`harness run --ray` against the real vLLM CPU server with its load workers as actors on a
real Ray cluster (integration): the loopback cluster of the test session (two nodes) or one
the run starts itself (`--ray local`). Never a mock of Ray."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from loopback_ray import join_node, named_actors, stop_node, wait_alive
from ports import free_port
from run_children import start_run, wait_for_records

from harness.cli import main
from harness.run.ray_pool import INSTALL_HINT
from harness.server import ServerInfo

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())  # type: ignore[no-any-return]


def _trace_sums(rows: int) -> tuple[int, int]:
    with AZURE.open() as f:
        head = list(csv.DictReader(f))[:rows]
    return sum(int(r["ContextTokens"]) for r in head), sum(int(r["GeneratedTokens"]) for r in head)


def _azure30(server: ServerInfo, out: Path, *ray: str) -> int:
    return main(
        [
            "run",
            str(AZURE),
            "--server",
            server.base_url,
            "--max-requests",
            "30",
            "--time-scale",
            "0",
            "--no-report",
            "--out",
            str(out),
            *ray,
        ]
    )


def _check_azure30(out: Path) -> dict[str, Any]:
    """The run's token totals equal the trace's sums; its records' times are on one clock."""
    want_in, want_out = _trace_sums(30)
    summary = _summary(out)
    assert summary["requests_completed"] == 30
    assert summary["input_tokens"] == want_in
    assert summary["output_tokens"] == want_out
    assert summary["workers"]["used"] == 2 and "Ray actors" in summary["workers"]["reason"]
    assert len(summary["client"]["workers"]) == 2
    df = pd.read_parquet(out / "requests.parquet")
    assert len(df) == 30 and df["request_id"].is_unique
    assert (df["sent_ns"] >= df["scheduled_ns"]).all()
    assert (df["first_token_ns"] > df["sent_ns"]).all()
    # the driver's run clock: the load starts after the manifest's anchor, within the run
    assert (df["scheduled_ns"] > 0).all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    return manifest


@pytest.mark.integration
@pytest.mark.ray
def test_azure_first_30_on_two_nodes_token_totals_exact(
    vllm_server: ServerInfo, ray_cluster: str, tmp_path: Path
) -> None:
    """One actor on each node of the loopback cluster: the totals are the trace's, and the
    manifest lists both nodes with their inventory and a measured clock anchor. The nodes
    share this host's monotonic clock, so the measured offset must lie within its stated
    uncertainty of zero."""
    out = tmp_path / "ray-nodes"
    code = _azure30(vllm_server, out, "--ray", ray_cluster, "--ray-placement", "per-node")
    assert code == 0
    manifest = _check_azure30(out)
    ray = manifest["ray"]
    assert ray["address"] == ray_cluster and ray["placement"] == "per-node"
    assert ray["nodes_alive"] == 2 and ray["gcs_address"].endswith(ray_cluster.split(":")[1])
    nodes = ray["nodes"]
    assert len(nodes) == 2 and len({n["node_id"] for n in nodes}) == 2
    assert sorted(w for n in nodes for w in n["workers"]) == [0, 1]
    for node in nodes:
        assert node["host"]["cpu_logical_cores"] >= 1 and node["host"]["hostname"]
        assert node["gpu"]["available"] is False
        clock = node["clock"]
        assert clock["round_trips"] == 8
        assert 0 < clock["uncertainty_ns"] < 1_000_000_000
        assert abs(clock["monotonic_offset_ns"]) <= clock["uncertainty_ns"]


@pytest.mark.integration
@pytest.mark.ray
def test_azure_first_30_with_ray_local_two_actors(vllm_server: ServerInfo, tmp_path: Path) -> None:
    """`--ray local` starts a cluster for the run and stops it after: two actors give the
    trace's token totals."""
    out = tmp_path / "ray-local"
    assert _azure30(vllm_server, out, "--ray", "local", "--workers", "2") == 0
    manifest = _check_azure30(out)
    assert manifest["ray"]["address"] == "local"
    assert sum(len(n["workers"]) for n in manifest["ray"]["nodes"]) == 2


@pytest.mark.integration
@pytest.mark.ray
def test_an_actor_killed_mid_run_leaves_its_requests_failed_and_the_rest_go_on(
    vllm_server: ServerInfo, ray_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "ray-killed"
    proc = start_run(
        vllm_server,
        out,
        "--ray",
        ray_cluster,
        "--ray-placement",
        "per-node",
        "--no-report",
        requests=24,
        in_flight=4,
    )
    try:
        wait_for_records(out / "requests.partial.jsonl", 2, timeout_s=240)
        kept = (out / "requests.partial.jsonl").read_text().count("\n")
        manifest = json.loads((out / "manifest.json").read_text())
        victim = next(n for n in manifest["ray"]["nodes"] if 1 in n["workers"])
        # Its process killed at once (the cluster is on this host): a driver of its own to
        # ray.kill it takes seconds, and a short run may be over by then.
        os.kill(victim["actor_pids"][victim["workers"].index(1)], signal.SIGKILL)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = output.decode()
    assert proc.returncode == 1, text[-3000:]
    assert "Traceback" not in text
    summary = _summary(out)
    errors = summary["run"]["worker_errors"]
    assert len(errors) == 1 and "load worker 1" in errors[0] and "Ray actor" in errors[0], errors
    requests = pd.read_parquet(out / "requests.parquet")
    lost = requests[requests["error"].fillna("").str.contains("load worker 1 .* lost", regex=True)]
    assert len(lost) >= 1, requests["error"].value_counts()  # two of the four slots were its
    assert lost["error"].str.contains("ActorDiedError|RayActorError", regex=True).all()
    assert len(requests) >= kept  # nothing already received was lost
    assert requests["ok"].sum() > kept  # the other actor went on
    assert json.loads((out / "manifest.json").read_text())["status"] == "aborted"


def _ancestors(pid: int) -> set[int]:
    """The process ids of `pid`'s ancestors."""
    return {p.pid for p in psutil.Process(pid).parents()}


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.integration
@pytest.mark.ray
def test_a_node_lost_mid_run_leaves_its_worker_failed_and_the_rest_go_on(
    vllm_server: ServerInfo, ray_cluster: str, tmp_path: Path
) -> None:
    """A third node joins the session's cluster; its process group (raylet and all) is killed
    mid-run. Its load worker is failed with the reason, the others finish, exit 1; the cluster
    is left with its two nodes for the tests after this one."""
    node = join_node(ray_cluster, tmp_path / "node-lost.log")
    out = tmp_path / "ray-node-lost"
    proc: subprocess.Popen[bytes] | None = None
    lost: dict[str, Any] | None = None
    try:
        wait_alive(ray_cluster, 3)
        proc = start_run(
            vllm_server,
            out,
            *("--ray", ray_cluster, "--ray-placement", "per-node", "--no-report"),
            requests=30,
            in_flight=6,
        )
        wait_for_records(out / "requests.partial.jsonl", 3, timeout_s=240)
        kept = (out / "requests.partial.jsonl").read_text().count("\n")
        nodes = json.loads((out / "manifest.json").read_text())["ray"]["nodes"]
        assert len(nodes) == 3, nodes
        # The joined node's actor is the one whose process descends from that node's.
        lost = next((n for n in nodes if node.pid in _ancestors(n["actor_pids"][0])), None)
        assert lost is not None, (node.pid, nodes)
        stop_node(node)
        output, _ = proc.communicate(timeout=300)
    finally:
        stop_node(node)
        if lost is not None:
            _kill(lost["actor_pids"])  # an actor that outlived its raylet leaks no process
        if proc is not None and proc.poll() is None:
            proc.kill()
    wait_alive(ray_cluster, 2)
    assert lost is not None
    text = output.decode()
    assert proc.returncode == 1, text[-3000:]
    assert "Traceback" not in text
    worker = lost["workers"][0]
    # Whichever saw the loss first: the actor, its raylet gone (it stops itself), or the
    # driver, Ray's ActorDiedError.
    (error,) = _summary(out)["run"]["worker_errors"]
    assert error.startswith(
        (f"load worker {worker} failed: its Ray node's raylet", f"load worker {worker} (")
    ), error
    requests = pd.read_parquet(out / "requests.parquet")
    # Its requests in flight at the loss, with that reason.
    gone = requests[requests["error"].notna()]
    assert len(gone) >= 1, requests["error"].value_counts()
    assert gone["error"].str.contains("raylet|ActorDiedError|RayActorError", regex=True).all()
    assert len(requests) >= kept  # nothing already received was lost
    assert requests["ok"].sum() > kept  # the other nodes' actors went on
    assert json.loads((out / "manifest.json").read_text())["status"] == "aborted"


@pytest.mark.integration
@pytest.mark.ray
def test_ctrl_c_stops_every_actor_and_keeps_what_arrived(
    vllm_server: ServerInfo, ray_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "ray-interrupted"
    proc = start_run(
        vllm_server,
        out,
        "--ray",
        ray_cluster,
        "--ray-placement",
        "per-node",
        "--no-report",
        in_flight=4,
    )
    try:
        wait_for_records(out / "requests.partial.jsonl", 2, timeout_s=240)
        kept = (out / "requests.partial.jsonl").read_text().count("\n")
        actors = [
            a
            for n in json.loads((out / "manifest.json").read_text())["ray"]["nodes"]
            for a in n["actors"]
        ]
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output.decode()[-3000:]
    assert b"Traceback" not in output
    summary = _summary(out)
    assert summary["run"]["interrupted"] is True
    assert summary["run"]["worker_errors"] == []
    assert len(pd.read_parquet(out / "requests.parquet")) >= kept
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    assert len(actors) == 2 and not set(actors) & set(named_actors(ray_cluster, "harness"))


@pytest.mark.integration
@pytest.mark.ray
def test_an_unreachable_cluster_fails_before_any_run_directory(
    vllm_server: ServerInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ray-unreachable"
    started = time.monotonic()
    code = _azure30(vllm_server, out, "--ray", f"127.0.0.1:{free_port()}")
    assert code == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "Ray cluster unreachable" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_without_ray_installed_says_how_to_install_it(tmp_path: Path) -> None:
    """Ray hidden from the import system (as where it is not installed): `--ray` exits 2 with
    the install hint, no traceback, no run directory."""
    out = tmp_path / "no-ray"
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from harness.cli import main\n"
        f"sys.exit(main(['run', {str(AZURE)!r}, '--server', 'http://127.0.0.1:9', "
        "'--max-requests', '3', '--ray', 'local', "
        f"'--out', {str(out)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert INSTALL_HINT in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (["--ray", "trace.csv"], "is not a Ray address"),
        (["--ray", "host:0"], "is not a Ray address"),
        (["--ray", "local", "--ray-placement", "per-cores:0"], "per-cores:N"),
        (["--ray-placement", "per-node"], "give --ray too"),
    ],
)
def test_bad_ray_options_are_named(
    given: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad"
    args = ["run", str(AZURE), "--server", "http://127.0.0.1:9", *given, "--out", str(out)]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    assert problem in capsys.readouterr().err
    assert not out.exists()
