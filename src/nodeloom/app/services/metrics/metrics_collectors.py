"""What the metrics read from the other services when scraped: queue counts, the registered processors, the cache,
this process's processor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUSES

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
    from nodeloom.app.services.session_processor.session_processor_base import SessionProcessorBase
    from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase


class ServiceStateCollector(Collector):
    """Reads the queue's counts, the registered processors (of every process sharing the database), the invocation
    cache's status and this process's processor's state at each scrape."""

    def __init__(self, queue: SessionQueueBase, cache: InvocationCacheBase, processor: SessionProcessorBase) -> None:
        self._queue = queue
        self._cache = cache
        self._processor = processor

    def collect(self) -> Iterator[Metric]:
        items = GaugeMetricFamily(
            "nodeloom_queue_items", "Queue items by queue and status", labels=["queue_id", "status"]
        )
        for queue_id, counts in self._queue.get_all_queue_counts().items():
            for status in QUEUE_ITEM_STATUSES:
                items.add_metric([queue_id, status], counts.get(status, 0))
        yield items
        yield from self._processors()
        cache = self._cache.get_status()
        yield CounterMetricFamily("nodeloom_cache_hits_total", "Invocation cache hits", value=cache.hits)
        yield CounterMetricFamily("nodeloom_cache_misses_total", "Invocation cache misses", value=cache.misses)
        yield GaugeMetricFamily("nodeloom_cache_size", "Outputs in the invocation cache", value=cache.size)
        processor = self._processor.get_status()
        yield GaugeMetricFamily("nodeloom_processor_started", "1 while the processor runs", value=processor.is_started)
        yield GaugeMetricFamily(
            "nodeloom_processor_processing", "1 unless the processor is paused", value=processor.is_processing
        )
        yield GaugeMetricFamily(
            "nodeloom_processor_alive", "1 while the processor's thread runs", value=processor.is_alive
        )
        yield CounterMetricFamily(
            "nodeloom_processor_restarts_total",
            "Restarts of the processor's thread after it died",
            value=processor.restarts,
        )

    def _processors(self) -> Iterator[Metric]:
        labels = ["processor_id", "host"]
        up = GaugeMetricFamily(
            "nodeloom_processors_up", "1 while a registered processor's lease holds, else 0", labels=labels
        )
        age = GaugeMetricFamily(
            "nodeloom_processors_heartbeat_age_seconds", "Seconds since a processor's last heartbeat", labels=labels
        )
        for processor in self._queue.list_processors():
            names = [processor.processor_id, processor.host]
            up.add_metric(names, processor.is_alive)
            age.add_metric(names, processor.seconds_since_heartbeat)
        yield up
        yield age
