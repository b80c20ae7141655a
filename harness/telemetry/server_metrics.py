"""The inference server's own Prometheus `/metrics` (parsed with prometheus_client's parser):
scrapes, and deltas of vLLM's request-phase histograms and token counters over a run; the
blocking scrape loop is shared with other exporters' pages (a GPU node's DCGM exporter)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

Samples = dict[str, float]
"""Sample name (with labels, as exposed) → value, summed over label sets for one name."""

# vLLM histograms of where a request's time goes on the server, in seconds.
PHASE_HISTOGRAMS: dict[str, str] = {
    "queue": "vllm:request_queue_time_seconds",
    "prefill": "vllm:request_prefill_time_seconds",
    "decode": "vllm:request_decode_time_seconds",
    "inference": "vllm:request_inference_time_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}

COUNTERS: dict[str, str] = {
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "preemptions": "vllm:num_preemptions_total",
}


def _only(text: str, names: Collection[str]) -> str:
    """The sample lines of `text` whose metric name is in `names` (comments dropped): vLLM's
    exposition is ~600 lines of histograms, and parsing all of it is most of a scrape's cost."""
    wanted = set(names)
    keep = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        end = len(line)
        for stop in ("{", " "):
            at = line.find(stop)
            if 0 <= at < end:
                end = at
        if line[:end] in wanted:
            keep.append(line)
    return "\n".join(keep) + "\n"


def parse_metrics(text: str, names: Collection[str] | None = None) -> Samples:
    """Prometheus text → {sample name: value summed over its label sets}; with `names`, only
    those samples are parsed (as untyped samples, which keeps their exposed names)."""
    samples: Samples = {}
    if names is not None:
        text = _only(text, names)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] = samples.get(sample.name, 0.0) + float(sample.value)
    return samples


async def scrape(base_url: str, headers: Mapping[str, str], timeout_s: float = 5.0) -> Samples:
    """GET `/metrics` and parse it; raises aiohttp/timeout errors for the caller to report."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers=dict(headers)) as session:
        return await scrape_with(session, base_url)


async def scrape_with(
    session: aiohttp.ClientSession, base_url: str, names: Collection[str] | None = None
) -> Samples:
    """One `/metrics` scrape over an open session (for repeated scrapes); `names` as in
    parse_metrics."""
    return parse_metrics(await get_text(session, base_url.rstrip("/") + "/metrics"), names)


def phase_deltas(before: Samples, after: Samples) -> dict[str, Any]:
    """Per request phase: requests counted and seconds summed between two scrapes, and the mean.

    A phase the server does not export is absent; counters that went backwards (a server
    restart) are reported as reset, not as negative time."""
    phases: dict[str, Any] = {}
    for phase, name in PHASE_HISTOGRAMS.items():
        count_key, sum_key = f"{name}_count", f"{name}_sum"
        if count_key not in after or sum_key not in after:
            continue
        count = after[count_key] - before.get(count_key, 0.0)
        total = after[sum_key] - before.get(sum_key, 0.0)
        if count < 0 or total < 0:
            phases[phase] = {"reset": True}
            continue
        phases[phase] = {
            "requests": int(count),
            "total_s": total,
            "mean_s": total / count if count else None,
        }
    counters: dict[str, float | None] = {}
    for label, name in COUNTERS.items():
        if name in after:
            delta = after[name] - before.get(name, 0.0)
            counters[label] = delta if delta >= 0 else None
    return {"phases": phases, "counters": counters}


class ScrapeLoop:
    """Blocking HTTP GETs for one sampler thread: one private event loop and one kept-alive
    aiohttp session for all of them, so each scrape costs one request, not a setup."""

    def __init__(self, headers: Mapping[str, str] | None = None, timeout_s: float = 2.0) -> None:
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    def run(self, scrape: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        """`scrape(session)` to completion (call from one thread at a time)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._with_session(scrape))

    async def _with_session(self, scrape: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return await scrape(self._session)

    def texts(
        self, urls: Sequence[str], headers: Sequence[Mapping[str, str]] = ()
    ) -> list[str | Exception]:
        """GET every URL at once (with its own headers, where given); each one's body, or the
        error that one raised."""

        async def get_all(session: aiohttp.ClientSession) -> list[str | Exception]:
            extra = list(headers) or [{} for _ in urls]
            gets = (get_text(session, url, h) for url, h in zip(urls, extra, strict=True))
            got = await asyncio.gather(*gets, return_exceptions=True)
            out: list[str | Exception] = []
            for page in got:
                if isinstance(page, BaseException) and not isinstance(page, Exception):
                    raise page  # a cancellation or an interrupt is not a failed scrape
                out.append(page)
            return out

        return self.run(get_all)

    def close(self) -> None:
        """Close the session and the loop once the sampler has stopped."""
        if self._loop is None:
            return
        if self._session is not None:
            self._loop.run_until_complete(self._session.close())
            self._session = None
        self._loop.close()
        self._loop = None


async def get_text(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None = None
) -> str:
    """One GET of a metrics page; raises aiohttp/timeout errors (and HTTP errors) for the
    caller to report."""
    async with session.get(url, headers=dict(headers) if headers else None) as resp:
        resp.raise_for_status()
        return await resp.text()


class MetricsScraper:
    """Blocking /metrics scrapes of the server for the sampler's scrape thread (ScrapeLoop)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 2.0,
        names: Collection[str] | None = None,
    ) -> None:
        self._base_url = base_url
        self._names = names
        self._loop = ScrapeLoop(headers, timeout_s)

    def __call__(self) -> Mapping[str, float]:
        """One scrape (call from one thread at a time)."""
        return self._loop.run(lambda session: scrape_with(session, self._base_url, self._names))

    def close(self) -> None:
        """Close the session and the loop once the sampler has stopped."""
        self._loop.close()


SHARE_GAUGES: frozenset[str] = frozenset({"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"})
"""Gauges that are a 0–1 share of one server's capacity: over replicas, their mean."""


def sum_samples(parts: Sequence[Mapping[str, float]]) -> Samples:
    """Several servers' samples added name by name: counters, histogram sums, counts and
    buckets, and gauges such as running requests add up over replicas; a share of a server
    (KV cache usage) is the mean of the replicas that report it."""
    total: Samples = {}
    reported: dict[str, int] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0.0) + value
            reported[name] = reported.get(name, 0) + 1
    for name in SHARE_GAUGES & total.keys():
        total[name] /= reported[name]
    return total


class SummedScraper:
    """Blocking /metrics scrapes of every replica, added up (sum_samples); a replica that does
    not answer fails the scrape, since a sum without it would be no replica's figure."""

    def __init__(self, scrapers: Sequence[MetricsScraper]) -> None:
        self._scrapers = list(scrapers)

    def __call__(self) -> Mapping[str, float]:
        """One scrape of each replica, summed."""
        return sum_samples([scrape() for scrape in self._scrapers])

    def close(self) -> None:
        """Close every replica's scraper."""
        for scraper in self._scrapers:
            scraper.close()


def metrics_scraper(
    servers: Sequence[tuple[str, Mapping[str, str]]],
    timeout_s: float = 2.0,
    names: Collection[str] | None = None,
) -> MetricsScraper | SummedScraper:
    """A blocking /metrics scraper for the sampler's thread over the servers (base URL,
    headers): one server's (MetricsScraper), or several replicas' added up."""
    scrapers = [MetricsScraper(url, headers, timeout_s, names) for url, headers in servers]
    return scrapers[0] if len(scrapers) == 1 else SummedScraper(scrapers)
