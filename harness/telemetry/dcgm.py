"""The GPUs of GPU nodes the harness does not run on, read from NVIDIA's DCGM exporter
(Prometheus text at `http://node:9400/metrics`, parsed with prometheus_client's parser; the
only importer here): power, the total-energy counter, utilisation and memory per GPU, each
keyed by its UUID (unique across nodes) with its node's hostname.

An exporter that is down, a metric it lacks or one that disappears mid-run is reported once
and the other readings go on; a figure not read is None, never 0."""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

from harness.errors import ConfigError
from harness.redact import split_credentials
from harness.telemetry.server_metrics import ScrapeLoop

POWER = "DCGM_FI_DEV_POWER_USAGE"
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"

METRICS: dict[str, tuple[str, float]] = {
    POWER: ("power_w", 1.0),
    ENERGY: ("energy_j", 1e-3),
    GPU_UTIL: ("gpu_util_pct", 1.0),
    FB_USED: ("memory_used_bytes", float(2**20)),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1.0),
    "DCGM_FI_DEV_MEM_CLOCK": ("mem_clock_mhz", 1.0),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature_c", 1.0),
}
"""DCGM field → (reading, factor to its unit): power in W, energy in mJ since boot → J,
utilisation in %, framebuffer used in MiB → bytes, clocks in MHz, temperature in °C."""

REQUIRED: tuple[str, ...] = (POWER, ENERGY, GPU_UTIL, FB_USED)
"""The fields whose absence is reported (the others are extras a default exporter serves)."""

BLANK_AT = 140737488355328.0
"""DCGM_FP64_BLANK (2**47): DCGM's 'no value' sentinels are at or above it (the int64
ones, 0x7ffffffffffffff0 and up, are larger), so such a value is no reading, not a figure."""

DEFAULT_PORT = 9400
"""The exporter's default listening port."""

_CONSEQUENCE: dict[str, str] = {
    ENERGY: "its energy comes from integrated power (dcgm-power) where power is read",
    POWER: "no power timeline for it",
}


def exporter_url(text: str) -> str:
    """A `--gpu-metrics` value as the URL of an exporter's metrics page: `node`, `node:9400`
    or `http://node:9400` mean `http://node:9400/metrics` (a URL with its scheme keeps its
    port, or the scheme's); ValueError if it is not one."""
    raw = text.strip()
    if not raw:
        raise ValueError("an empty URL")
    bare = "://" not in raw
    if bare:
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r}: not an http(s) URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r}: the port is not a number") from None
    if not parts.hostname:
        raise ValueError(f"{text!r}: no host")
    netloc = f"{parts.netloc}:{DEFAULT_PORT}" if bare and port is None else parts.netloc
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


@dataclass(slots=True, frozen=True)
class DcgmSample:
    """One GPU's readings in one scrape of its node's exporter; a field not exported is None."""

    url: str
    uuid: str
    gpu: int | None
    """The `gpu` label: the GPU's index on its node."""
    host: str | None
    """The `Hostname` label, else the exporter URL's host."""
    model_name: str | None
    pod: str | None
    namespace: str | None
    power_w: float | None
    energy_j: float | None
    gpu_util_pct: float | None
    memory_used_bytes: int | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    temperature_c: float | None


def _value(raw: float) -> float | None:
    """A sample's value, or None for NaN, infinities and DCGM's blank sentinels."""
    value = float(raw)
    if not math.isfinite(value) or abs(value) >= BLANK_AT:
        return None
    return value


def _index(label: str | None) -> int | None:
    try:
        return int(label) if label is not None else None
    except ValueError:
        return None


def parse_exposition(text: str, url: str) -> tuple[list[DcgmSample], set[tuple[str, str]]]:
    """One exporter page → its GPUs' readings (first label set per GPU wins, as a GPU shared by
    pods repeats its device readings), and the (UUID, field) pairs it exported (a blank value
    counts as exported); samples without a UUID label (switches, CPUs) are not GPUs."""
    fields: dict[str, dict[str, float | None]] = {}
    labels: dict[str, dict[str, str]] = {}
    exported: set[tuple[str, str]] = set()
    for family in text_string_to_metric_families(text):
        name = family.name if family.name in METRICS else family.name.removesuffix("_total")
        if name not in METRICS:
            continue
        reading, factor = METRICS[name]
        for sample in family.samples:
            uuid = sample.labels.get("UUID")
            if not uuid:
                continue
            labels.setdefault(uuid, dict(sample.labels))
            exported.add((uuid, name))
            values = fields.setdefault(uuid, {})
            if reading not in values:
                value = _value(sample.value)
                values[reading] = None if value is None else value * factor
    fallback_host = urlsplit(url).hostname
    out = []
    for uuid, values in fields.items():
        lab = labels[uuid]
        memory = values.get("memory_used_bytes")
        out.append(
            DcgmSample(
                url=url,
                uuid=uuid,
                gpu=_index(lab.get("gpu")),
                host=lab.get("Hostname") or fallback_host,
                model_name=lab.get("modelName"),
                pod=lab.get("pod") or None,
                namespace=lab.get("namespace") or None,
                power_w=values.get("power_w"),
                energy_j=values.get("energy_j"),
                gpu_util_pct=values.get("gpu_util_pct"),
                memory_used_bytes=None if memory is None else round(memory),
                sm_clock_mhz=values.get("sm_clock_mhz"),
                mem_clock_mhz=values.get("mem_clock_mhz"),
                temperature_c=values.get("temperature_c"),
            )
        )
    return out, exported


def gpu_name(sample: DcgmSample) -> str:
    """A GPU in words: `node-a GPU 0 (GPU-22db…)`."""
    gpu = "?" if sample.gpu is None else str(sample.gpu)
    return f"{sample.host or '?'} GPU {gpu} ({sample.uuid})"


class DcgmReader:
    """Scrapes every exporter at once per read and keeps what the run must be told: each GPU
    and the exporter it came from, failed scrapes per exporter, problems (each said once),
    and how often the exporters' energy counters actually change (their refresh interval)."""

    def __init__(self, urls: Sequence[str], timeout_s: float = 2.0) -> None:
        """`urls` may carry user:password (an exporter behind basic auth): they are sent as
        HTTP Basic and never kept in the URLs the reader reports."""
        clean = dict(split_credentials(url) for url in dict.fromkeys(urls))
        self.urls = list(clean)
        self._headers = [{"Authorization": a} if a else {} for a in clean.values()]
        self.problems: list[str] = []
        self.scrapes = 0
        self.scrape_errors: dict[str, int] = dict.fromkeys(self.urls, 0)
        self._loop = ScrapeLoop(timeout_s=timeout_s)
        self._reported: set[str] = set()
        self._gpus: dict[str, DcgmSample] = {}
        self._exported: dict[str, set[str]] = {}
        self._last_energy: dict[str, tuple[float, int]] = {}
        self._refresh_ns: deque[int] = deque(maxlen=1024)
        self._changed_once: set[str] = set()

    def _report(self, key: str, problem: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.problems.append(problem)

    def read(self) -> list[DcgmSample]:
        """Every exporter's GPUs now; an exporter that fails this time gives none (counted and
        reported once per kind of failure)."""
        pages = self._loop.texts(self.urls, self._headers)
        self.scrapes += 1
        now_ns = time.perf_counter_ns()
        out: list[DcgmSample] = []
        for url, page in zip(self.urls, pages, strict=True):
            if isinstance(page, Exception):
                self.scrape_errors[url] += 1
                self._report(
                    f"{url}:{type(page).__name__}",
                    f"{url}: scrape failed: {type(page).__name__}: {page}".rstrip(": "),
                )
                continue
            try:
                samples, exported = parse_exposition(page, url)
            except ValueError as err:
                self.scrape_errors[url] += 1
                self._report(f"{url}:parse", f"{url}: not Prometheus text: {err}")
                continue
            if not samples:
                self._report(
                    f"{url}:empty", f"{url}: no DCGM GPU readings (no DCGM_FI_DEV_* with a UUID)"
                )
            out.extend(self._check(url, samples, exported, now_ns))
        return out

    def _check(
        self, url: str, samples: list[DcgmSample], exported: set[tuple[str, str]], now_ns: int
    ) -> list[DcgmSample]:
        """This exporter's readings that count, reporting what is missing, what disappeared
        and a GPU another exporter already gives (counted once, from the first)."""
        kept = []
        seen = {s.uuid for s in samples}
        for uuid, last in self._gpus.items():
            if last.url == url and uuid not in seen:
                self._report(
                    f"{uuid}:gone",
                    f"{url}: {gpu_name(last)} disappeared from the exporter; its figures "
                    "cover only the readings before",
                )
        for sample in samples:
            known = self._gpus.get(sample.uuid)
            if known is not None and known.url != url:
                self._report(
                    f"{sample.uuid}:twice",
                    f"{url}: {gpu_name(sample)} is also read from {known.url}: counted once, "
                    f"from {known.url}",
                )
                continue
            fields = {name for uuid, name in exported if uuid == sample.uuid}
            if known is None:
                for name in REQUIRED:
                    if name not in fields:
                        why = _CONSEQUENCE.get(name)
                        problem = f"{url}: {gpu_name(sample)} has no {name}"
                        self._report(
                            f"{sample.uuid}:{name}:missing", problem + (f"; {why}" if why else "")
                        )
            else:
                for name in sorted(self._exported[sample.uuid] - fields):
                    self._report(
                        f"{sample.uuid}:{name}:gone",
                        f"{url}: {name} of {gpu_name(sample)} disappeared mid-run; its figures "
                        "cover only the readings taken",
                    )
            self._gpus[sample.uuid] = sample
            self._exported[sample.uuid] = fields | self._exported.get(sample.uuid, set())
            self._note_refresh(sample, now_ns)
            kept.append(sample)
        return kept

    def _note_refresh(self, sample: DcgmSample, now_ns: int) -> None:
        """Time between changes of a GPU's energy counter: the exporter's real refresh, which
        readings more frequent than it only repeat."""
        if sample.energy_j is None:
            return
        last = self._last_energy.get(sample.uuid)
        if last is not None and sample.energy_j != last[0]:
            if sample.uuid in self._changed_once:
                self._refresh_ns.append(now_ns - last[1])
            self._changed_once.add(sample.uuid)
        if last is None or sample.energy_j != last[0]:
            self._last_energy[sample.uuid] = (sample.energy_j, now_ns)

    @property
    def refresh_s(self) -> float | None:
        """The median seconds between energy-counter changes; None before two changes."""
        if not self._refresh_ns:
            return None
        return statistics.median(self._refresh_ns) / 1e9

    def gpus(self) -> list[DcgmSample]:
        """The last reading of every GPU seen, in exporter then index order."""
        order = {url: i for i, url in enumerate(self.urls)}
        return sorted(
            self._gpus.values(), key=lambda s: (order[s.url], s.gpu if s.gpu is not None else -1)
        )

    def status(self) -> dict[str, Any]:
        """What the telemetry block says about the exporters: which GPUs, failed scrapes,
        the counters' refresh interval, and problems."""
        gpus = self.gpus()
        reason = None
        if not gpus:
            failed = [u for u in self.urls if self.scrape_errors[u]]
            reason = (
                f"no GPU read from {', '.join(failed or self.urls)}"
                + (f" ({self.problems[0]})" if self.problems else "")
                if self.scrapes
                else "not scraped"
            )
        return {
            "urls": list(self.urls),
            "available": bool(gpus),
            "reason": reason,
            "gpus": [_gpu_entry(s) for s in gpus],
            "scrapes": self.scrapes,
            "scrape_errors": dict(self.scrape_errors),
            "refresh_s": self.refresh_s,
            "problems": list(self.problems),
        }

    def close(self) -> None:
        """Close the HTTP session (reading afterwards opens a new one)."""
        self._loop.close()


def _gpu_entry(sample: DcgmSample) -> dict[str, Any]:
    return {
        "uuid": sample.uuid,
        "gpu": sample.gpu,
        "host": sample.host,
        "model_name": sample.model_name,
        "url": sample.url,
        "pod": sample.pod,
        "namespace": sample.namespace,
    }


def dcgm_inventory(urls: Sequence[str], timeout_s: float = 5.0) -> dict[str, Any]:
    """The exporters' GPUs as `gpu_inventory` gives this host's (`{"available", "gpus": [...]}`
    with index, name and uuid, plus host and url), or `{"available": False, "reason"}`."""
    reader = DcgmReader(urls, timeout_s)
    try:
        reader.read()
    finally:
        reader.close()
    status = reader.status()
    if not status["available"]:
        return {"available": False, "reason": status["reason"], "urls": status["urls"]}
    gpus = [
        {
            "index": g["gpu"],
            "name": g["model_name"],
            "uuid": g["uuid"],
            "host": g["host"],
            "url": g["url"],
        }
        for g in status["gpus"]
    ]
    return {"available": True, "source": "dcgm", "urls": status["urls"], "gpus": gpus}


def check_exporters(urls: Sequence[str], timeout_s: float = 5.0) -> None:
    """Before a run: every exporter answers with GPU readings, else a ConfigError naming the
    URL (a typo found after an hour's run would cost the run's energy figures)."""
    reader = DcgmReader(urls, timeout_s)
    try:
        reader.read()
    finally:
        reader.close()
    bad = [u for u in reader.urls if reader.scrape_errors[u]]
    served = {g.url for g in reader.gpus()}
    bad += [u for u in reader.urls if u not in served and u not in bad]
    if bad:
        why = "; ".join(p for p in reader.problems if any(p.startswith(u) for u in bad))
        raise ConfigError(
            f"--gpu-metrics {', '.join(bad)}: no DCGM GPU readings there ({why or 'no answer'}); "
            "check the URL and that dcgm-exporter runs on that node"
        )
