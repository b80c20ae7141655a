"""Energy from telemetry rows (pure functions): GPU energy from counter deltas (this host's NVML,
or GPU nodes' DCGM exporters) or, where the counter is missing, trapezoid-integrated power;
idle baseline, power, per-token/request/session energy, GPU energy while tools run, and RAPL
CPU energy. Unmeasured is None, never 0."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

Window = tuple[int, int]
"""[start_ns, end_ns) on the run clock."""

Points = list[tuple[int, float]]
"""(t_ns, cumulative joules) — piecewise linear between samples."""

NS = 1e9

GpuRows = Literal["gpu", "dcgm"]
"""Which rows are the server's GPUs: this host's NVML ('gpu', keyed by index) or the DCGM
exporters' ('dcgm', keyed by UUID, unique across nodes); the two are never added."""

GPU_SOURCES: dict[str, tuple[str, str]] = {
    "gpu": ("nvml-counter", "nvml-power"),
    "dcgm": ("dcgm-counter", "dcgm-power"),
}
"""Each kind of GPU row → the names of its energy from the counter and from power."""

HELD_COUNTERS: frozenset[str] = frozenset({"dcgm"})
"""Rows whose counter holds its last reading between the exporter's refreshes (seconds
apart): no change over a window is no reading there, not 0 J (a powered GPU always draws)."""

DeviceKey = int | str


def _device_key(row: Mapping[str, Any], source: str) -> DeviceKey:
    """A row's device: its UUID for DCGM rows, its index otherwise."""
    if source == "dcgm":
        return str(row.get("uuid"))
    return int(row.get("device") or 0)


def _rows_by_device(rows: Iterable[Mapping[str, Any]], source: str) -> dict[DeviceKey, list[Any]]:
    """One source's rows per device, sorted by time."""
    out: dict[DeviceKey, list[Any]] = defaultdict(list)
    for row in rows:
        if row.get("source") == source:
            out[_device_key(row, source)].append(row)
    for series in out.values():
        series.sort(key=lambda r: r["t_ns"])
    return dict(out)


def _trapezoid_j(p0: float, p1: float, t0_ns: int, t1_ns: int) -> float:
    """Energy of a linear power ramp between two samples."""
    return (p0 + p1) / 2.0 * (t1_ns - t0_ns) / NS


def counter_points(rows: Sequence[Mapping[str, Any]], key: str = "energy_j") -> tuple[Points, int]:
    """Cumulative energy from a counter, a decrease (reset/wrap) starting a new segment.

    The gap across a reset is filled with the trapezoid of the two power samples where both
    exist (else it counts nothing); returns the points and how many resets were seen."""
    points: Points = []
    prev: Mapping[str, Any] | None = None
    total, resets = 0.0, 0
    for row in rows:
        value = row.get(key)
        if value is None:
            continue
        if prev is not None:
            delta = float(value) - float(prev[key])
            if delta >= 0:
                total += delta
            else:
                resets += 1
                p0, p1 = prev.get("power_w"), row.get("power_w")
                if p0 is not None and p1 is not None:
                    total += _trapezoid_j(float(p0), float(p1), prev["t_ns"], row["t_ns"])
        points.append((int(row["t_ns"]), total))
        prev = row
    return points, resets


def power_points(rows: Sequence[Mapping[str, Any]]) -> Points:
    """Cumulative energy by trapezoid integration of the power samples."""
    points: Points = []
    prev: Mapping[str, Any] | None = None
    total = 0.0
    for row in rows:
        if row.get("power_w") is None:
            continue
        if prev is not None:
            p0, p1 = float(prev["power_w"]), float(row["power_w"])
            total += _trapezoid_j(p0, p1, prev["t_ns"], row["t_ns"])
        points.append((int(row["t_ns"]), total))
        prev = row
    return points


def _value_at(points: Points, t_ns: int) -> float:
    """Cumulative energy at t by linear interpolation, clamped to the sampled range."""
    if t_ns <= points[0][0]:
        return points[0][1]
    if t_ns >= points[-1][0]:
        return points[-1][1]
    lo, hi = 0, len(points) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if points[mid][0] <= t_ns:
            lo = mid
        else:
            hi = mid
    (t0, e0), (t1, e1) = points[lo], points[hi]
    return e0 + (e1 - e0) * (t_ns - t0) / (t1 - t0)


def delta_j(points: Points, window: Window) -> float | None:
    """Energy over the part of `window` the samples cover; None if they don't cover any of it."""
    lo, hi = window
    if len(points) < 2 or hi <= points[0][0] or lo >= points[-1][0] or hi <= lo:
        return None
    return _value_at(points, hi) - _value_at(points, lo)


def _covered_s(points: Points, window: Window) -> float:
    """Seconds of `window` covered by the samples."""
    lo, hi = max(window[0], points[0][0]), min(window[1], points[-1][0])
    return max(0.0, (hi - lo) / NS)


def _window_j(points: Points, window: Window, gpus: str) -> float | None:
    """delta_j, except that a held counter that did not move over the window is unmeasured."""
    energy = delta_j(points, window)
    if energy is not None and energy <= 0 and gpus in HELD_COUNTERS:
        return None
    return energy


def gpu_series(
    rows: Iterable[Mapping[str, Any]], gpus: GpuRows = "gpu"
) -> dict[DeviceKey, tuple[Points, str, int]]:
    """Per GPU: cumulative-energy points, their source ('nvml-counter'|'nvml-power', or the
    'dcgm-' pair for DCGM rows), resets.

    The counter is used where a GPU has at least two counter readings, else its power."""
    counter, power = GPU_SOURCES[gpus]
    out: dict[DeviceKey, tuple[Points, str, int]] = {}
    for device, series in _rows_by_device(rows, gpus).items():
        points, resets = counter_points(series)
        if len(points) >= 2:
            out[device] = (points, counter, resets)
            continue
        points = power_points(series)
        if len(points) >= 2:
            out[device] = (points, power, 0)
    return out


def gpu_energy_j(
    rows: Iterable[Mapping[str, Any]], window: Window, gpus: GpuRows = "gpu"
) -> tuple[float | None, str, dict[DeviceKey, float]]:
    """Total GPU energy over a window, its source, and per-GPU joules; (None, 'unavailable', {})."""
    per_device: dict[DeviceKey, float] = {}
    sources: set[str] = set()
    for device, (points, source, _) in gpu_series(rows, gpus).items():
        energy = _window_j(points, window, gpus)
        if energy is not None:
            per_device[device] = energy
            sources.add(source)
    if not per_device:
        return None, "unavailable", {}
    counter, power = GPU_SOURCES[gpus]
    source = power if power in sources else counter
    return sum(per_device.values()), source, per_device


def gpu_coverage_frac(
    rows: Iterable[Mapping[str, Any]], window: Window, gpus: GpuRows = "gpu"
) -> float | None:
    """The least share of the window any GPU's readings cover (1.0: all of it), e.g. less where
    a metric stopped mid-run, 0 for a GPU not measured over it; None where no GPU was read or
    the window is empty."""
    span_s = (window[1] - window[0]) / NS
    series = gpu_series(rows, gpus)
    if not series or span_s <= 0:
        return None
    covered = [
        _covered_s(points, window) if _window_j(points, window, gpus) is not None else 0.0
        for points, _, _ in series.values()
    ]
    return min(covered) / span_s


def mean_power_w(
    rows: Iterable[Mapping[str, Any]], window: Window, gpus: GpuRows = "gpu"
) -> float | None:
    """Time-averaged GPU power over a window (summed over GPUs), e.g. the idle baseline; for
    held counters (DCGM) only where every GPU's counter moved in it, else None."""
    total, any_device = 0.0, False
    for points, _, _ in gpu_series(rows, gpus).values():
        energy = _window_j(points, window, gpus)
        covered = _covered_s(points, window) if len(points) >= 2 else 0.0
        if energy is not None and covered > 0:
            total += energy / covered
            any_device = True
        elif gpus in HELD_COUNTERS:
            return None
    return total if any_device else None


def peak_power_w(
    rows: Iterable[Mapping[str, Any]], window: Window, gpus: GpuRows = "gpu"
) -> float | None:
    """Highest GPU power sample in the window, summed over the GPUs read at that instant."""
    by_t: dict[int, float] = defaultdict(float)
    for row in rows:
        in_window = window[0] <= row["t_ns"] <= window[1]
        if row.get("source") == gpus and row.get("power_w") is not None and in_window:
            by_t[int(row["t_ns"])] += float(row["power_w"])
    return max(by_t.values()) if by_t else None


def merge_intervals(intervals: Iterable[Window], clip: Window | None = None) -> list[Window]:
    """The union of intervals as disjoint sorted intervals, optionally clipped to a window."""
    spans = sorted((max(a, clip[0]), min(b, clip[1])) if clip else (a, b) for a, b in intervals)
    merged: list[Window] = []
    for a, b in spans:
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def energy_over_intervals_j(
    rows: Iterable[Mapping[str, Any]],
    intervals: Iterable[Window],
    clip: Window | None = None,
    gpus: GpuRows = "gpu",
) -> float | None:
    """GPU energy over the union of intervals (each moment counted once); None if unmeasured.

    No intervals at all is 0 J where the GPU was measured: no tool ran, so none was spent."""
    series = gpu_series(rows, gpus)
    if not series:
        return None
    spans = merge_intervals(intervals, clip)
    if not spans:
        return 0.0
    total, measured = 0.0, False
    for span in spans:
        for points, _, _ in series.values():
            energy = delta_j(points, span)
            if energy is not None:
                total += energy
                measured = True
    return total if measured else None


def cpu_energy_j(rows: Iterable[Mapping[str, Any]], window: Window) -> float | None:
    """RAPL package energy over a window summed over zones; None where RAPL gave nothing."""
    total, measured = 0.0, False
    for series in _rows_by_device(rows, "rapl").values():
        points, _ = counter_points(series)
        energy = delta_j(points, window)
        if energy is not None:
            total += energy
            measured = True
    return total if measured else None


def _per(energy: float | None, count: int | None) -> float | None:
    """Energy per unit; None where either is unknown or the count is 0."""
    return energy / count if energy is not None and count else None


def summarize_energy(
    rows: Sequence[Mapping[str, Any]],
    window: Window,
    idle_window: Window | None = None,
    output_tokens: int | None = None,
    requests: int | None = None,
    sessions: int | None = None,
    tool_windows: Iterable[Window] = (),
    gpus: GpuRows = "gpu",
) -> dict[str, Any]:
    """The run's energy report over `window`; every unmeasured figure None with its source.
    `gpus` names the rows that are the server's GPUs (DCGM exporters' where given)."""
    energy, source, per_device = gpu_energy_j(rows, window, gpus)
    duration_s = (window[1] - window[0]) / NS
    idle = mean_power_w(rows, idle_window, gpus) if idle_window is not None else None
    tools = list(tool_windows)
    tool_energy = (
        energy_over_intervals_j(rows, tools, clip=window, gpus=gpus) if energy is not None else None
    )
    cpu = cpu_energy_j(rows, window)
    resets = {d: r for d, (_, _, r) in gpu_series(rows, gpus).items() if r}
    return {
        "window_ns": list(window),
        "gpu_energy_j": energy,
        "gpu_source": source,
        "gpu_energy_per_device_j": {str(d): e for d, e in per_device.items()},
        "gpu_counter_resets": {str(d): r for d, r in resets.items()},
        "idle_power_w": idle,
        "avg_power_w": energy / duration_s if energy is not None and duration_s > 0 else None,
        "peak_power_w": peak_power_w(rows, window, gpus) if energy is not None else None,
        "gpu_dynamic_energy_j": (
            energy - idle * duration_s if energy is not None and idle is not None else None
        ),
        "j_per_output_token": _per(energy, output_tokens),
        "j_per_request": _per(energy, requests),
        "j_per_session": _per(energy, sessions),
        "gpu_energy_while_tools_j": tool_energy,
        "tool_time_s": sum(b - a for a, b in merge_intervals(tools, window)) / NS,
        "cpu_energy_j": cpu,
        "cpu_source": "rapl" if cpu is not None else "unavailable",
        "gpu_coverage_frac": gpu_coverage_frac(rows, window, gpus) if energy is not None else None,
    }


def split_gpu_rows(
    rows: Iterable[Mapping[str, Any]], devices: Iterable[int]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(rows of every source but the GPUs not in `devices`, rows of those other GPUs): the
    server's figures are computed from the first, "other GPUs on this host" from the second."""
    keep = set(devices)
    ours: list[Mapping[str, Any]] = []
    others: list[Mapping[str, Any]] = []
    for row in rows:
        is_other = row.get("source") == "gpu" and int(row.get("device") or 0) not in keep
        (others if is_other else ours).append(row)
    return ours, others


def other_gpus_energy(
    rows: Sequence[Mapping[str, Any]], window: Window, idle_window: Window | None = None
) -> dict[str, Any]:
    """The GPUs that are not the server's, over the same window: their energy, its source,
    per-GPU joules, idle, average and peak power (summed over them); None where unmeasured."""
    energy, source, per_device = gpu_energy_j(rows, window)
    duration_s = (window[1] - window[0]) / NS
    return {
        "gpu_energy_j": energy,
        "gpu_source": source,
        "gpu_energy_per_device_j": {str(d): e for d, e in per_device.items()},
        "idle_power_w": mean_power_w(rows, idle_window) if idle_window is not None else None,
        "avg_power_w": energy / duration_s if energy is not None and duration_s > 0 else None,
        "peak_power_w": peak_power_w(rows, window) if energy is not None else None,
    }
