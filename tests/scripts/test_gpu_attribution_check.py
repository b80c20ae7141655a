"""scripts/gpu_attribution_check.py: without NVML it says so and exits 2; on a fake host (the
fake NVML at the vendor boundary, on a clock that follows real time) it picks the GPU a real
process holds, and the counter agrees with integrated instantaneous power."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fake_nvml as fake
import pytest
from run_children import server_tree
from script_modules import load_script

from harness.telemetry.gpu import GpuReader

check = load_script("gpu_attribution_check")


def test_without_nvml_it_says_so_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    reader = GpuReader()
    reader.close()
    if reader.available:
        pytest.skip("NVML reads here")
    code = check.main(["--pid", str(os.getpid()), "--seconds", "0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot run: no usable NVIDIA GPU (NVML)" in err and "NVML" in err


def test_the_gpu_a_process_holds_is_chosen_and_the_energy_agrees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = fake.RealTimeClock()
    with server_tree(1) as (pid, (worker,)):
        nvml = fake.eight_gpu_host(clock, gpu6={"compute_pids": [worker]})
        out = tmp_path / "check.json"
        argv = ["--pid", str(pid), "--seconds", "1.0", "--rate-hz", "20", "--json", str(out)]
        code = check.main(argv, nvml=nvml, now_ns=lambda: clock.t_ns)
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"server pid {pid}: GPUs 6 by processes" in printed
    result = json.loads(out.read_text())
    assert result["attribution"]["server_pids_on_gpus"] == [worker]
    gpus = {g["device"]: g for g in result["gpus"]}
    six = gpus[6]
    assert six["server"] is True and not any(g["server"] for d, g in gpus.items() if d != 6)
    # 160 W throughout (GPU 5 draws 150 W, GPU 7 170 W): the counter and integrated power
    # agree but for the moments between a sample's time stamp and its NVML reads
    seconds = (result["window_ns"][1] - result["window_ns"][0]) / 1e9
    assert six["instant_integrated_j"] == pytest.approx(160.0 * seconds, rel=1e-9)
    assert six["counter_j"] == pytest.approx(six["instant_integrated_j"], rel=0.02)
    assert six["instant_samples"] == six["samples"] >= 10
    assert result["server_energy"]["gpu_energy_per_device_j"].keys() == {"6"}
    assert result["other_gpus_energy"]["gpu_energy_per_device_j"].keys() == {
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "7",
    }


def test_a_process_on_no_gpu_cannot_be_told_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = fake.RealTimeClock()
    with server_tree(1) as (pid, _):
        code = check.main(
            ["--pid", str(pid), "--seconds", "0.3"],
            nvml=fake.eight_gpu_host(clock),
            now_ns=lambda: clock.t_ns,
        )
    assert code == 1
    assert f"server pid {pid}: GPUs none by unknown" in capsys.readouterr().out
