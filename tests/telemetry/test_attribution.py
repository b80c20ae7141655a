"""Telling the server's GPUs: NVML's running processes (the fake NVML, real structs) matched
against a real process tree, CUDA_VISIBLE_DEVICES by UUID and by index, and `--gpus` names;
where it cannot be told, unknown with the reason."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from fake_nvml import FakeClock, FakeGpu, FakeNvml, NVMLError_NoPermission, eight_gpu_host
from run_children import server_tree

from harness.telemetry.attribution import (
    CudaEnv,
    GpuAttributor,
    host_gpus,
    resolve_gpu_names,
    visible_devices,
)
from harness.telemetry.cpu import process_tree
from harness.telemetry.gpu import GpuIdentity, GpuReader
from harness.telemetry.sampler import Sampler

H100 = "NVIDIA H100 80GB HBM3"
IDS = [GpuIdentity(i, f"GPU-{i:08x}-aaaa-bbbb-cccc-{i:012x}", H100) for i in range(8)]


@pytest.fixture
def server() -> Iterator[tuple[int, list[int]]]:
    """A real process tree standing in for vLLM: a parent and two worker children."""
    with server_tree(2) as tree:
        yield tree


class Clock:
    """A settable monotonic clock for the attributor's re-check interval."""

    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s


def test_the_gpus_holding_the_servers_workers_are_the_servers(
    server: tuple[int, list[int]],
) -> None:
    pid, (worker_a, worker_b) = server
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        nvml = eight_gpu_host(
            FakeClock(),
            gpu2={"compute_pids": [worker_a]},
            gpu5={"compute_pids": [worker_b]},
            gpu6={"compute_pids": [stranger.pid]},  # another user's job on this host
        )
        with GpuReader(nvml) as reader:
            attributor = GpuAttributor(reader, pid)
            attributor.check(123)
            found = attributor.result()
            assert (found.method, found.devices, found.reason) == ("processes", (2, 5), None)
            summary = attributor.to_dict()
            assert [g["index"] for g in summary["server_gpus"]] == [2, 5]
            assert summary["server_gpus"][0]["uuid"] == IDS[2].uuid
            assert summary["server_gpus"][0]["name"] == H100
            assert [g["index"] for g in summary["other_gpus"]] == [0, 1, 3, 4, 6, 7]
            assert summary["server_pids_on_gpus"] == sorted([worker_a, worker_b])
            assert summary["first_seen_ns"] == {"2": 123, "5": 123}
    finally:
        stranger.kill()
        stranger.wait()


def test_processes_appearing_after_model_load_are_found_on_a_later_check() -> None:
    clock = Clock()
    nvml = eight_gpu_host(FakeClock())
    tree = frozenset({100, 101, 102})
    with GpuReader(nvml) as reader:
        attributor = GpuAttributor(reader, 100, tree=lambda pid: tree, monotonic=clock)
        attributor.check(0)
        first = attributor.result()
        assert first.method == "unknown" and first.devices == ()
        assert first.reason is not None and "3 processes" in first.reason
        assert "1 checks" in first.reason and "--gpus" in first.reason
        nvml.gpus[3].compute_pids = [102]  # the model loaded onto GPU 3
        calls = nvml.calls["nvmlDeviceGetComputeRunningProcesses"]
        clock.s = 1.0
        attributor.check(1_000)  # too soon: the lists are not read again
        assert nvml.calls["nvmlDeviceGetComputeRunningProcesses"] == calls
        assert not attributor.result().known
        clock.s = 2.5
        attributor.check(2_500)
        assert attributor.result().devices == (3,)
        assert attributor.to_dict()["first_seen_ns"] == {"3": 2_500}
        assert attributor.checks == 2


def test_the_sampler_re_checks_on_its_ticks_and_reports_a_failing_check_once() -> None:
    clock = FakeClock()
    nvml = eight_gpu_host(clock)
    with GpuReader(nvml) as reader:
        attributor = GpuAttributor(reader, 7, tree=lambda pid: frozenset({7}), recheck_s=0.0)
        sampler = Sampler(reader, None, None, clock.now_ns, attribution=attributor)
        sampler.sample_once()
        nvml.gpus[1].graphics_pids = [7]
        clock.advance_s(0.1)
        sampler.sample_once()
        assert attributor.result().devices == (1,)
        assert attributor.to_dict()["first_seen_ns"] == {"1": 100_000_000}

        def broken(pid: int) -> frozenset[int]:
            raise OSError("proc unreadable")

        attributor._tree = broken
        sampler.sample_once()
        sampler.sample_once()
        assert sampler.problems == ["gpu attribution read failed: OSError: proc unreadable"]
        assert len([r for r in sampler.rows() if r["source"] == "gpu"]) == 4 * 8


def test_no_server_pid_is_unknown_with_the_reason() -> None:
    with GpuReader(eight_gpu_host(FakeClock())) as reader:
        attributor = GpuAttributor(reader, None, no_pid_reason="attached by URL")
        attributor.check(0)
        assert attributor.checks == 0
        assert attributor.result().method == "unknown"
        assert attributor.result().reason == "attached by URL"
        assert attributor.to_dict()["server_gpus"] == []


def test_a_server_process_that_is_gone_is_said() -> None:
    with GpuReader(eight_gpu_host(FakeClock())) as reader:
        attributor = GpuAttributor(reader, 4242, tree=lambda pid: None)
        attributor.check(0)
        found = attributor.result()
        assert found.method == "unknown" and "4242 is gone" in str(found.reason)


def test_nvml_that_cannot_list_processes_is_unknown_with_its_error() -> None:
    failing = {
        "nvmlDeviceGetComputeRunningProcesses": NVMLError_NoPermission,
        "nvmlDeviceGetGraphicsRunningProcesses": NVMLError_NoPermission,
    }
    nvml = FakeNvml([FakeGpu(failing=failing), FakeGpu(failing=failing)], FakeClock())
    with GpuReader(nvml) as reader:
        attributor = GpuAttributor(reader, 5, tree=lambda pid: frozenset({5}))
        attributor.check(0)
        found = attributor.result()
        assert found.method == "unknown"
        assert "cannot list" in str(found.reason) and "NoPermission" in str(found.reason)


# --- CUDA_VISIBLE_DEVICES ------------------------------------------------------------------


def test_cuda_visible_devices_by_uuid_match_whatever_the_order() -> None:
    env = CudaEnv(f"{IDS[5].uuid},{IDS[2].uuid}", None, "launch")
    assert visible_devices(env, IDS) == ((5, 2), None)
    # CUDA takes a unique UUID prefix too
    assert visible_devices(CudaEnv("GPU-00000005", None, "launch"), IDS) == ((5,), None)


def test_cuda_visible_devices_by_index_on_a_host_of_one_model_with_a_note() -> None:
    devices, note = visible_devices(CudaEnv("2,5", None, "launch"), IDS)
    assert devices == (2, 5)
    assert note is not None and "PCI order" in note and H100 in note
    assert visible_devices(CudaEnv("2,5", "PCI_BUS_ID", "launch"), IDS) == ((2, 5), None)


def test_cuda_visible_devices_by_index_on_mixed_models_is_not_guessed() -> None:
    mixed = [*IDS[:4], *(GpuIdentity(i, f"GPU-{i}", "NVIDIA A100-SXM4-80GB") for i in range(4, 8))]
    devices, why = visible_devices(CudaEnv("2,5", None, "launch"), mixed)
    assert devices is None and why is not None and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in why
    assert visible_devices(CudaEnv("2,5", "PCI_BUS_ID", "launch"), mixed) == ((2, 5), None)


def test_cuda_visible_devices_ends_at_its_first_bad_entry_as_cuda_does() -> None:
    env = CudaEnv("3,abc,5", "PCI_BUS_ID", "launch")
    assert visible_devices(env, IDS) == ((3,), None)
    assert visible_devices(CudaEnv("9", "PCI_BUS_ID", "launch"), IDS)[0] is None
    assert visible_devices(CudaEnv("", None, "launch"), IDS)[0] == ()
    assert visible_devices(CudaEnv("MIG-1234", None, "launch"), IDS)[0] is None


def test_attribution_from_cuda_visible_devices_where_no_process_is_seen_yet() -> None:
    with GpuReader(eight_gpu_host(FakeClock())) as reader:
        env = CudaEnv(f"{IDS[5].uuid},{IDS[2].uuid}", None, "launch")
        attributor = GpuAttributor(reader, 9, cuda_env=env, tree=lambda pid: frozenset({9}))
        attributor.check(0)
        found = attributor.result()
        assert found.method == "CUDA_VISIBLE_DEVICES" and found.devices == (2, 5)
        assert "CUDA_VISIBLE_DEVICES" in str(found.reason)


def test_processes_seen_win_over_cuda_visible_devices() -> None:
    nvml = eight_gpu_host(FakeClock(), gpu4={"compute_pids": [9]})
    with GpuReader(nvml) as reader:
        env = CudaEnv("2,5", "PCI_BUS_ID", "launch")
        attributor = GpuAttributor(reader, 9, cuda_env=env, tree=lambda pid: frozenset({9}))
        attributor.check(0)
        assert attributor.result().method == "processes"
        assert attributor.result().devices == (4,)


# --- --gpus --------------------------------------------------------------------------------


def test_gpus_named_by_index_and_uuid() -> None:
    assert resolve_gpu_names(["5", IDS[2].uuid or ""], IDS) == (5, 2)  # in the order given
    assert resolve_gpu_names([(IDS[7].uuid or "").upper()], IDS) == (7,)
    with GpuReader(eight_gpu_host(FakeClock())) as reader:
        attributor = GpuAttributor(reader, None, named=["5", "2"])
        assert attributor.result().method == "--gpus"
        assert attributor.result().devices == (2, 5)
        assert attributor.result().reason is None


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["8"], "no GPU 8 on this host (NVML lists 8: 0-7)"),
        (["GPU-ffff"], "no GPU with UUID GPU-ffff on this host"),
        (["GPU-0000000"], "matches 8 GPUs"),
        (["2", IDS[2].uuid], "GPU 2 is named twice"),
        (["MIG-0"], "a MIG instance"),
        (["gpu2"], "neither a GPU index nor a UUID"),
    ],
)
def test_bad_gpu_names_say_what_is_wrong(names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_gpu_names(names, IDS)


def test_host_gpus_checks_against_this_hosts_nvml() -> None:
    assert host_gpus(["1"], eight_gpu_host(FakeClock())) == (1,)
    with pytest.raises(ValueError, match="no GPU 8"):
        host_gpus(["8"], eight_gpu_host(FakeClock()))
    reader = GpuReader()
    if not reader.available:  # this CI machine: no driver
        with pytest.raises(ValueError, match="NVML is unavailable on this host"):
            host_gpus(["0"])
    reader.close()


def test_a_real_process_tree_holds_the_parent_and_its_children(
    server: tuple[int, list[int]],
) -> None:
    pid, kids = server
    tree = process_tree(pid)
    assert tree is not None and tree >= {pid, *kids}
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    time.sleep(0.05)
    assert process_tree(gone.pid) is None
