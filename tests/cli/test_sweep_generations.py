"""`harness sweep --generation NAME=URL ...`: bad input is one line naming the flag, before any
server or child process; each generation's sweep is a real `harness sweep` child, at once on
the real loopback Ray cluster against the two real vLLM servers, then compared."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from run_children import wait_for_records

from harness.cli import main
from harness.cli.sweep_generations import sweep_args
from harness.errors import ConfigError
from harness.run.generations import (
    ClusterShare,
    Generation,
    GenerationsPlan,
    child_argv,
    split_cluster,
)
from harness.run.plan import RayChoice, ServerChoice
from harness.server import Server, ServerInfo

REPO = Path(__file__).resolve().parents[2]
TRACE = REPO / "workloads" / "traces" / "azure2023_AzureLLMInferenceTrace_conv.csv"


@pytest.fixture(autouse=True)
def _no_server(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Bad input fails before a server is made (the integration test's children make theirs)."""
    if request.node.get_closest_marker("integration") is not None:
        return

    def refuse(self: ServerChoice, *_: object, **__: object) -> Server:
        raise AssertionError("a server was made: bad input must fail before a server")

    monkeypatch.setattr(ServerChoice, "server", refuse)


def _workload(tmp_path: Path) -> Path:
    """The sweep workload with its trace found from anywhere."""
    text = (REPO / "workloads" / "sweep-chatbot.yaml").read_text()
    path = tmp_path / "sweep-chatbot.yaml"
    path.write_text(text.replace("trace: traces/", f"trace: {TRACE.parent}/"))
    return path


def _exit_code(argv: list[str]) -> int:
    """main's exit code, argparse's own errors (SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _generations(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """stderr of a sweep over --generation options that must fail with exit 2; no output."""
    out = tmp_path / "gens"
    argv = ["sweep", str(_workload(tmp_path)), "--rates", "1", "--out", str(out), *extra]
    assert _exit_code(argv) == 2
    assert not out.exists()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return " ".join(captured.err.split())


A = "a=http://127.0.0.1:18000"
B = "b=http://127.0.0.1:18001"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("h100", "'h100': expected NAME=URL"),
        ("=http://127.0.0.1:1", "expected NAME=URL"),
        ("h100=", "expected NAME=URL"),
        ("h100=http://127.0.0.1:1,", "expected NAME=URL or NAME=URL,URL,... (replicas)"),
        ("a=http://127.0.0.1:1,ftp://host", "a: not a server URL: 'ftp://host'"),
        ("a/b=http://127.0.0.1:1", "'a/b' is not a generation name"),
        ("..=http://127.0.0.1:1", "'..' is not a generation name"),
        ("comparison=http://127.0.0.1:1", "'comparison' is not a generation name"),
        ("a=ftp://host", "a: not a server URL: 'ftp://host'"),
    ],
)
def test_a_bad_generation_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, needle: str
) -> None:
    err = _generations(tmp_path, capsys, "--generation", value)
    assert "argument --generation" in err and needle in err


def test_a_name_or_a_server_given_twice_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _generations(tmp_path, capsys, "--generation", A, "--generation", A + "1")
    assert "--generation a is given twice" in err
    err = _generations(tmp_path, capsys, "--generation", A, "--generation", "b=127.0.0.1:18000/v1")
    assert "--generation b names the server http://127.0.0.1:18000 as a does" in err
    twice = "a=http://127.0.0.1:18000,http://127.0.0.1:18000/"
    err = _generations(tmp_path, capsys, "--generation", twice, "--generation", B)
    assert "--generation a names the server http://127.0.0.1:18000 itself twice" in err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--server", "http://127.0.0.1:18000"), "--generation and --server exclude each other"),
        (("--model", "m"), "--generation and --model exclude each other"),
        (("--server-pid", "7"), "--server-pid describes one server's"),
        (("--gpus", "0", "--accelerator", "H100"), "--gpus, --accelerator describe one server's"),
        (("--ray-placement", "per-node"), "--ray-placement places Ray actors: give --ray too"),
        (("--rates", "2,1"), "--rates: loads must rise"),
    ],
)
def test_options_that_cannot_go_with_generations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], needle: str
) -> None:
    assert needle in _generations(tmp_path, capsys, "--generation", A, "--generation", B, *extra)


def test_a_generation_that_already_has_a_sweep_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gens" / "b").mkdir(parents=True)
    (tmp_path / "gens" / "b" / "capacity.json").write_text("{}")
    argv = ["sweep", str(_workload(tmp_path)), "--rates", "1", "--out", str(tmp_path / "gens")]
    assert main([*argv, "--generation", A, "--generation", B]) == 2
    assert "gens/b: a sweep is already there; pass --overwrite" in capsys.readouterr().err


def test_each_child_gets_its_own_out_ray_and_workers_and_the_rest_as_given() -> None:
    given = [
        "sweep",
        "w.yaml",
        "--gen",
        A,
        "--generation=" + B,
        "--rates",
        "1,2",
        "--ou",
        "o",
        "--ray",
        "--ray-placement",
        "spread",
        "--work=4",
        "--vllm-arg",
        "--out",
        "--overwrite",
    ]
    kept = sweep_args(given)
    assert kept == (
        "w.yaml",
        "--rates",
        "1,2",
        "--ray-placement",
        "spread",
        "--vllm-arg=--out",
        "--overwrite",
    )
    assert sweep_args(["sweep", "w.yaml", "--ray", "h:6379", "--rates", "1"]) == (
        "w.yaml",
        "--rates",
        "1",
    )
    plan = GenerationsPlan(
        (
            Generation("a", ("http://u:p@h:1",), ("http://h:1",)),
            Generation("r", ("http://h:1", "http://h:2"), ("http://h:1", "http://h:2")),
        ),
        Path("o"),
        kept,
        RayChoice("local"),
        None,
        python="py",
    )
    share = ClusterShare(3, 4, "")
    argv = child_argv(plan, plan.generations[0], share, "10.0.0.1:6379")
    assert argv[:4] == ["py", "-m", "harness", "sweep"]
    assert argv[-8:] == [
        *("--server", "http://u:p@h:1", "--out", str(Path("o") / "a")),
        *("--ray", "10.0.0.1:6379", "--workers", "3"),
    ]
    # A generation of two replicas: each is a --server of its sweep (routed by its --routing).
    argv = child_argv(plan, plan.generations[1], None, None)
    assert argv[-6:] == [
        *("--server", "http://h:1", "--server", "http://h:2", "--out", str(Path("o") / "r"))
    ]


def _nodes(*cpus: int) -> list[dict[str, Any]]:
    return [{"node_id": f"n{k}", "ip": "127.0.0.1", "cpus": c} for k, c in enumerate(cpus)]


def test_the_cluster_cpus_are_split_between_the_sweeps() -> None:
    spread = RayChoice("local")
    shares = split_cluster(_nodes(4, 3), 2, spread, "auto")
    assert [(s.workers, s.cpus) for s in shares] == [(2, 4), (2, 3)]  # one per node each
    shares = split_cluster(_nodes(4, 3), 2, spread, 8)
    assert [(s.workers, s.cpus) for s in shares] == [(4, 4), (3, 3)]
    assert "--workers 8, lowered to its 3 CPUs" in shares[1].note
    shares = split_cluster(_nodes(1, 1), 2, spread, None)
    assert [(s.workers, s.cpus) for s in shares] == [(1, 1), (1, 1)]
    per_node = RayChoice("local", placement="per-node")
    assert [s.workers for s in split_cluster(_nodes(2, 2), 2, per_node, None)] == [2, 2]
    with pytest.raises(ConfigError, match="per-node with 2 --generation sweeps at once needs 2"):
        split_cluster(_nodes(2, 1), 2, per_node, None)
    with pytest.raises(ConfigError, match="per-cores:2 gives one sweep every CPU"):
        split_cluster(_nodes(8), 2, RayChoice("local", placement="per-cores", cores=2), None)
    with pytest.raises(ConfigError, match="the cluster has 1 CPUs, too few for 2"):
        split_cluster(_nodes(1), 2, spread, None)


def test_a_generation_that_fails_is_named_and_the_others_still_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --ray, one after the other: a's unreachable server fails a's sweep, b's still
    runs (and fails the same way); the exit code is the worst, and nothing is compared."""
    out = tmp_path / "gens"
    argv = ["sweep", str(_workload(tmp_path)), "--rates", "1", "--out", str(out)]
    gens = ["--generation", "a=http://127.0.0.1:9", "--generation", "b=http://127.0.0.1:9/x"]
    assert main([*argv, *gens, "--no-report"]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert "[a] error: cannot reach the server at http://127.0.0.1:9" in printed
    assert "a: exit 2" in printed and "b: exit 2" in printed and "no comparison" in printed
    record = json.loads((out / "generations.json").read_text())
    assert record["parallel"] is False and record["status"] == "finished"
    assert record["schema_version"] == 2
    assert [g["servers"] for g in record["generations"]] == [
        ["http://127.0.0.1:9"],
        ["http://127.0.0.1:9/x"],
    ]
    assert [g["exit_code"] for g in record["generations"]] == [2, 2]
    assert record["comparison"] is None and record["wall_s"] > 0


@pytest.mark.integration
@pytest.mark.ray
def test_two_generations_sweep_at_once_on_the_ray_cluster_and_are_compared(
    vllm_server: ServerInfo,
    vllm_server_b: ServerInfo,
    ray_cluster: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "gens"
    servers = {"a": vllm_server.base_url, "b": vllm_server_b.base_url}
    code = main(
        [
            "sweep",
            str(_workload(tmp_path)),
            *("--generation", f"a={servers['a']}", "--generation", f"b={servers['b']}"),
            *("--ray", ray_cluster, "--rates", "1", "--duration", "2", "--refine", "0"),
            *("--idle-baseline", "0", "--no-report", "--out", str(out)),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    record = json.loads((out / "generations.json").read_text())
    assert record["parallel"] is True and record["status"] == "finished"
    assert record["ray"]["cluster_address"] == ray_cluster and record["ray"]["cpus"] == 2
    for g in record["generations"]:
        assert g["exit_code"] == 0 and g["wall_s"] > 0
        assert g["ray_workers"] == 1 and g["ray_cpus"] == 1  # the two CPUs split
        sweep_dir = out / g["name"]
        capacity = json.loads((sweep_dir / "capacity.json").read_text())
        assert capacity["status"] == "finished" and capacity["name"] == g["name"]
        manifest = json.loads((sweep_dir / "points" / "rate-1" / "manifest.json").read_text())
        assert [manifest["server"]["base_url"]] == [servers[g["name"]]] == g["servers"]
        assert manifest["ray"]["address"] == ray_cluster  # the one cluster both used
    # Both ran at once: each started before the other ended.
    walls = [g["wall_s"] for g in record["generations"]]
    assert record["wall_s"] < sum(walls)
    assert "[a] capacity:" in printed and "[b] capacity:" in printed
    compared = json.loads((out / "comparison" / "compare.json").read_text())
    assert [r["name"] for r in compared["runs"]] == ["a", "b"]
    assert record["comparison"]["exit_code"] == 0


@pytest.mark.integration
def test_sigterm_reaches_the_running_sweep_and_what_it_measured_is_kept(
    vllm_server: ServerInfo, vllm_server_b: ServerInfo, tmp_path: Path
) -> None:
    """One after the other: SIGTERM to the parent while a's first point runs stops a's sweep
    as its own SIGTERM would (its points kept, capacity.json interrupted); b never starts."""
    out = tmp_path / "gens"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "harness", "sweep", str(_workload(tmp_path))),
            *("--generation", f"a={vllm_server.base_url}"),
            *("--generation", f"b={vllm_server_b.base_url}"),
            *("--rates", "1,2", "--duration", "60", "--idle-baseline", "0", "--no-report"),
            *("--out", str(out)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_records(out / "a" / "points" / "rate-1" / "requests.partial.jsonl", 1)
        proc.send_signal(signal.SIGTERM)
        printed, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, printed[-3000:]
    assert "[generations] SIGTERM: passed on to the sweeps (a)" in printed
    record = json.loads((out / "generations.json").read_text())
    assert record["status"] == "interrupted"
    assert [g["exit_code"] for g in record["generations"]] == [143, None]
    capacity = json.loads((out / "a" / "capacity.json").read_text())
    assert capacity["status"] == "interrupted" and len(capacity["points"]) == 1
    assert not (out / "b").exists()
