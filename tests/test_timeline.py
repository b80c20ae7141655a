"""The run timeline: in-flight counts, power series, and unavailable sources named, not zeroed."""

from __future__ import annotations

import pandas as pd
import pytest
from summary_builders import summary, telemetry_block

from harness.plots import timeline_chart
from harness.timeline import build_timeline, in_flight, unavailable_sources

S = 1_000_000_000


def test_in_flight_counts_overlaps_and_closes_before_opens() -> None:
    # [0,2] and [1,3] overlap on [1,2]; [3,4] opens as [1,3] closes: the level stays 1.
    t_s, counts = in_flight([(0, 2 * S), (1 * S, 3 * S), (3 * S, 4 * S)], t0_ns=0)
    assert t_s == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert counts == [1.0, 2.0, 1.0, 1.0, 0.0]


def _telemetry() -> pd.DataFrame:
    rows = [
        {"t_ns": 10 * S, "source": "gpu", "device": 0, "power_w": 100.0, "gpu_util_pct": 0.0},
        {"t_ns": 11 * S, "source": "gpu", "device": 0, "power_w": 300.0, "gpu_util_pct": 90.0},
        {"t_ns": 10 * S, "source": "rapl", "device": 0, "zone": "package-0", "energy_j": 50.0},
        {"t_ns": 12 * S, "source": "rapl", "device": 0, "zone": "package-0", "energy_j": 150.0},
        {"t_ns": 10 * S, "source": "cpu", "device": None, "system_cpu_pct": 40.0},
        {"t_ns": 11 * S, "source": "server", "device": None, "requests_running": 3.0},
    ]
    return pd.DataFrame(rows)


def test_series_share_the_first_send_as_zero() -> None:
    requests = pd.DataFrame({"sent_ns": [10 * S, 11 * S], "done_ns": [12 * S, 13 * S]})
    tools = pd.DataFrame({"start_ns": [12 * S], "end_ns": [14 * S]})
    tl = build_timeline(_telemetry(), requests, tools)
    power = {s.label: s for s in tl.power_w}
    assert power["GPU 0"].t_s == [0.0, 1.0] and power["GPU 0"].values == [100.0, 300.0]
    # RAPL: 100 J over 2 s = 50 W, stamped at the second reading.
    assert power["CPU package-0 (RAPL)"].t_s == [2.0]
    assert power["CPU package-0 (RAPL)"].values == [pytest.approx(50.0)]
    util = {s.label: s.values for s in tl.utilization_pct}
    assert util == {"GPU 0": [0.0, 90.0], "host CPU (all cores)": [40.0]}
    activity = {s.label: (s.t_s, s.values) for s in tl.activity}
    assert activity["requests in flight (client)"] == ([0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 1.0, 0.0])
    assert activity["tool calls running"] == ([2.0, 4.0], [1.0, 0.0])
    assert activity["server: running"] == ([1.0], [3.0])
    assert tl.unavailable == []


def test_missing_gpu_is_named_not_drawn_as_zero() -> None:
    rapl = {"available": True, "reason": None, "zones": ["package-0"], "problems": []}
    run = summary(telemetry=telemetry_block(rapl=rapl))
    cpu_only = pd.DataFrame([{"t_ns": 0, "source": "cpu", "device": None, "system_cpu_pct": 5.0}])
    requests = pd.DataFrame({"sent_ns": [0], "done_ns": [S]})
    tl = build_timeline(cpu_only, requests, None, unavailable_sources(run))
    assert tl.power_w == []
    assert tl.unavailable == ["GPU: NVML did not initialise"]
    png = timeline_chart(tl, "run")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")


def test_no_gpu_rows_and_no_reason_says_not_measured() -> None:
    requests = pd.DataFrame({"sent_ns": [0], "done_ns": [S]})
    tl = build_timeline(None, requests)
    assert tl.unavailable == ["GPU power: not measured"]


def test_gpu_node_gpus_are_drawn_by_uuid_apart_from_this_hosts() -> None:
    uuid = "GPU-22dbdd79-f55a-92a8-aa39-322198e72ed6"
    dcgm = {"source": "dcgm", "device": 3, "uuid": uuid, "host": "node-a"}
    rows = [
        {"t_ns": 10 * S, **dcgm, "power_w": 312.5, "gpu_util_pct": 87.0},
        {"t_ns": 11 * S, **dcgm, "power_w": 320.0, "gpu_util_pct": 90.0},
        {"t_ns": 10 * S, "source": "gpu", "device": 0, "power_w": 40.0, "gpu_util_pct": 0.0},
    ]
    requests = pd.DataFrame({"sent_ns": [10 * S], "done_ns": [11 * S]})
    tl = build_timeline(pd.DataFrame(rows), requests)
    power = {s.label: s.values for s in tl.power_w}
    assert power == {"GPU 3 on node-a (DCGM)": [312.5, 320.0], "GPU 0 (this host)": [40.0]}
    assert tl.utilization_pct[0].label == "GPU 3 on node-a (DCGM)"


def test_unreadable_gpu_nodes_are_named_by_their_reason() -> None:
    dcgm = {
        "urls": ["http://node-a:9400/metrics"],
        "every_s": 1.0,
        "available": False,
        "reason": "no GPU read from http://node-a:9400/metrics",
        "gpus": [],
        "scrapes": 3,
        "scrape_errors": {"http://node-a:9400/metrics": 3},
        "refresh_s": None,
        "problems": [],
    }
    run = summary(telemetry=telemetry_block(dcgm=dcgm))
    assert unavailable_sources(run)[0] == "GPU: no GPU read from http://node-a:9400/metrics"


def test_gpus_that_are_not_the_servers_are_labelled_so() -> None:
    rows = [
        {"t_ns": t * S, "source": "gpu", "device": d, "power_w": 100.0, "gpu_util_pct": 5.0}
        for t in (0, 1)
        for d in (0, 1)
    ]
    requests = pd.DataFrame({"sent_ns": [0], "done_ns": [S]})
    tl = build_timeline(pd.DataFrame(rows), requests, None, (), other_gpus=[1])
    assert [s.label for s in tl.power_w] == ["GPU 0", "GPU 1 (not the server's)"]
    assert [s.label for s in tl.utilization_pct] == ["GPU 0", "GPU 1 (not the server's)"]
