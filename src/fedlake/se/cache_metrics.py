"""The cache's statistics on ``GET /metrics`` (Prometheus text format, prometheus-client).

With several worker processes, ``fedlake se cache`` points ``PROMETHEUS_MULTIPROC_DIR`` at
``<dir>/metrics`` (emptied at start) before prometheus-client is imported, so each
worker's counters live in a memory-mapped file and a scrape of any worker adds them up.
The gauges (bytes in use, capacity) are read from the store's index at each scrape.

The metrics (all named ``fedlake_cache_...``) are listed in docs/se.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fedlake.se.cache_store import CacheStore

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreGauges(Collector):
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "fedlake_cache_used_bytes", "bytes of the blocks on disk", value=self.store.used()
        )
        yield GaugeMetricFamily(
            "fedlake_cache_capacity_bytes", "the cache's size bound", value=self.store.capacity
        )


class Metrics:
    """The counters of one cache process, and the scrape."""

    def __init__(self, store: CacheStore) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str) -> Counter:
            return Counter(f"fedlake_cache_{name}", doc, registry=r)

        self.hits = counter("hits", "requests answered from blocks already on disk")
        self.misses = counter("misses", "requests that waited for the origin")
        self.block_hits = counter("block_hits", "blocks served that were on disk")
        self.block_misses = counter("block_misses", "blocks served that had to be fetched")
        self.hit_bytes = counter("hit_bytes", "bytes sent from blocks that were on disk")
        self.miss_bytes = counter("miss_bytes", "bytes sent from blocks that were fetched")
        self.origin_fetches = counter("origin_fetches", "block fetches from the origin")
        self.origin_bytes = counter("origin_bytes", "bytes fetched from the origin")
        self.evictions = counter("evictions", "blocks evicted")
        self.evicted_bytes = counter("evicted_bytes", "bytes evicted")
        self.checksum_failures = counter("checksum_failures", "files refused: bad checksum")
        self.unverified = counter("unverified", "files fetched with no checksum to check")
        self.store = store

    def scrape(self) -> bytes:
        """The Prometheus text of every worker's counters (multiprocess mode) or this
        process's, plus the store's gauges."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(_StoreGauges(self.store))
            return generate_latest(registry)
        gauges = CollectorRegistry()
        gauges.register(_StoreGauges(self.store))
        return generate_latest(self.registry) + generate_latest(gauges)
