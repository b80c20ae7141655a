"""The documented KubeRay RayJob (scripts/kuberay/rayjob-sweep.yaml) stays runnable: its
entrypoint is a harness command this harness parses, on the Ray cluster the job makes."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from harness.cli import _parser

RAYJOB = Path(__file__).resolve().parents[2] / "scripts" / "kuberay" / "rayjob-sweep.yaml"


def test_the_rayjob_entrypoint_is_a_harness_sweep_on_the_jobs_cluster() -> None:
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] >= 1
    words = shlex.split(spec["entrypoint"])
    assert words[0] == "harness"
    args = _parser(words[1:]).parse_args(words[1:])
    assert args.command == "sweep"
    assert args.ray == "auto"  # the job's RAY_ADDRESS: the cluster KubeRay made
    assert args.ray_placement == ("per-node", 1)
    assert str(args.out).startswith("/results")  # the mounted volume
