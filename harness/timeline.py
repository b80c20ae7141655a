"""One run's time series on its own clock: power, utilisation, and request and tool activity,
so the report can show them in one figure and a reader can see the GPU idle while tools run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.summary import Summary
from harness.units import NS_PER_S


@dataclass(slots=True)
class Series:
    """One line of the figure: seconds since the axis' zero, and values in the panel's unit."""

    label: str
    t_s: list[float]
    values: list[float]


@dataclass(slots=True)
class Timeline:
    """The three panels of the timeline figure; a source that was not measured is named in
    `unavailable` instead of being drawn as zero."""

    power_w: list[Series] = field(default_factory=list)
    utilization_pct: list[Series] = field(default_factory=list)
    activity: list[Series] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)


def _device(value: Any) -> str:
    """A device index as written in a label (the column may be float where others are null)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _seconds(values: Iterable[int], t0_ns: int) -> list[float]:
    return [(int(v) - t0_ns) / NS_PER_S for v in values]


def in_flight(intervals: Iterable[tuple[int, int]], t0_ns: int) -> tuple[list[float], list[float]]:
    """How many intervals are open over time, as step points (t_s, count) at every change."""
    events: list[tuple[int, int]] = []
    for start, end in intervals:
        events.append((int(start), 1))
        events.append((int(end), -1))
    events.sort(key=lambda e: (e[0], e[1]))  # a close before an open at the same instant
    t_s: list[float] = []
    counts: list[float] = []
    level = 0
    for t, step in events:
        level += step
        if t_s and t_s[-1] == (t - t0_ns) / NS_PER_S:
            counts[-1] = float(level)
        else:
            t_s.append((t - t0_ns) / NS_PER_S)
            counts.append(float(level))
    return t_s, counts


def _intervals(frame: pd.DataFrame | None, start: str, end: str) -> list[tuple[int, int]]:
    """(start, end) pairs of the rows where both are present."""
    if frame is None or frame.empty or start not in frame or end not in frame:
        return []
    both = frame[[start, end]].dropna()
    return [(int(a), int(b)) for a, b in both.itertuples(index=False) if int(b) >= int(a)]


def _column(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows where `column` was measured, sorted by time."""
    if column not in rows:
        return rows.iloc[0:0]
    return rows[rows[column].notna()].sort_values("t_ns")


def _series(label: str, rows: pd.DataFrame, column: str, t0_ns: int) -> Series | None:
    """`column` of the rows where it was measured, as a series; None if it never was."""
    measured = _column(rows, column)
    if measured.empty:
        return None
    return Series(label, _seconds(measured["t_ns"], t0_ns), measured[column].astype(float).tolist())


def _add(panel: list[Series], series: Series | None) -> None:
    if series is not None:
        panel.append(series)


def _rapl_power(rapl: pd.DataFrame, t0_ns: int) -> list[Series]:
    """CPU package power per RAPL zone from successive energy readings (W)."""
    out: list[Series] = []
    for zone, rows in rapl.groupby("device", dropna=False):
        rows = _column(rows, "energy_j")
        t = rows["t_ns"].astype("int64").tolist()
        e = rows["energy_j"].astype(float).tolist()
        t_s: list[float] = []
        watts: list[float] = []
        for i in range(1, len(t)):
            dt_s = (t[i] - t[i - 1]) / NS_PER_S
            if dt_s > 0 and e[i] >= e[i - 1]:
                t_s.append((t[i] - t0_ns) / NS_PER_S)
                watts.append((e[i] - e[i - 1]) / dt_s)
        zones = rows["zone"].dropna() if "zone" in rows else rows.iloc[0:0]
        name = str(zones.iloc[0]) if not zones.empty else _device(zone)
        if t_s:
            out.append(Series(f"CPU {name} (RAPL)", t_s, watts))
    return out


def build_timeline(
    telemetry: pd.DataFrame | None,
    requests: pd.DataFrame,
    tools: pd.DataFrame | None = None,
    unavailable: Iterable[str] = (),
    other_gpus: Iterable[int] = (),
) -> Timeline:
    """The run's series, all on one axis whose zero is the first request sent (else the first
    sample). `unavailable` names sources the run could not read (from summary.telemetry);
    `other_gpus` are GPUs that are not the server's (labelled so)."""
    others = {str(int(i)) for i in other_gpus}
    timeline = Timeline(unavailable=list(unavailable))
    sent = requests["sent_ns"].dropna() if "sent_ns" in requests else pd.Series(dtype="int64")
    if not sent.empty:
        t0_ns = int(sent.min())
    elif telemetry is not None and not telemetry.empty:
        t0_ns = int(telemetry["t_ns"].min())
    else:
        t0_ns = 0
    samples = telemetry if telemetry is not None else pd.DataFrame({"t_ns": [], "source": []})
    by_source = {str(s): rows for s, rows in samples.groupby("source")}

    gpu = by_source.get("gpu")
    dcgm = by_source.get("dcgm")
    if dcgm is not None:  # the GPU nodes' GPUs, by UUID: the server's
        for _, rows in dcgm.groupby("uuid", sort=False):
            first = rows.iloc[0]
            index = first.get("device")
            name = first.get("uuid") if pd.isna(index) else _device(index)
            label = f"GPU {name} on {first.get('host')} (DCGM)"
            _add(timeline.power_w, _series(label, rows, "power_w", t0_ns))
            _add(timeline.utilization_pct, _series(label, rows, "gpu_util_pct", t0_ns))
    if gpu is not None:
        local = " (this host)" if dcgm is not None else ""
        for device, rows in gpu.groupby("device"):
            label = f"GPU {_device(device)}{local}"
            if _device(device) in others:
                label += " (not the server's)"
            _add(timeline.power_w, _series(label, rows, "power_w", t0_ns))
            _add(timeline.utilization_pct, _series(label, rows, "gpu_util_pct", t0_ns))
    if not timeline.power_w and not any(u.startswith("GPU") for u in timeline.unavailable):
        timeline.unavailable.append("GPU power: not measured")
    rapl = by_source.get("rapl")
    if rapl is not None:
        timeline.power_w.extend(_rapl_power(rapl, t0_ns))
    cpu = by_source.get("cpu")
    if cpu is not None:
        host = _series("host CPU (all cores)", cpu, "system_cpu_pct", t0_ns)
        _add(timeline.utilization_pct, host)

    t_s, counts = in_flight(_intervals(requests, "sent_ns", "done_ns"), t0_ns)
    if t_s:
        timeline.activity.append(Series("requests in flight (client)", t_s, counts))
    t_s, counts = in_flight(_intervals(tools, "start_ns", "end_ns"), t0_ns)
    if t_s:
        timeline.activity.append(Series("tool calls running", t_s, counts))
    server = by_source.get("server")
    if server is not None:
        for column, label in (
            ("requests_running", "server: running"),
            ("requests_waiting", "server: waiting"),
        ):
            _add(timeline.activity, _series(label, server, column, t0_ns))
    return timeline


def other_gpus(summary: Summary) -> list[int]:
    """The GPUs of the run's host that were told not to be the server's."""
    found = summary.telemetry.gpu_attribution if summary.telemetry is not None else None
    return [g.index for g in found.other_gpus] if found is not None else []


def unavailable_sources(summary: Summary) -> list[str]:
    """The telemetry sources a run could not read, with the reason it recorded."""
    if summary.telemetry is None:
        return []
    labels = {"gpu": "GPU", "rapl": "CPU energy (RAPL)"}
    return [f"{labels[s]}: {reason}" for s, reason in summary.telemetry.unavailable_sources()]
