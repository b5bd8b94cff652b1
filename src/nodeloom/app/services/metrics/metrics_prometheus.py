"""Metrics with Prometheus's client library, in a registry of the service's own."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from nodeloom.app.services.metrics.metrics_base import MetricsServiceBase

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.session_processor.session_processor_common import SessionEnd


class PrometheusMetricsService(MetricsServiceBase, Collector):
    """Counts from process start, kept in memory and reported as metric families when scraped.

    The registry is this service's, so each app has its own: the library's global one would be shared by every
    app in the process (tests make many), each adding the same names. The counts are plain numbers under a lock
    rather than the library's `Counter`s, which would add a `_created` series to each.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: Counter[str] = Counter()
        self._nodes: Counter[str] = Counter()
        self._node_seconds: defaultdict[str, float] = defaultdict(float)
        # Described by collecting once when a collector is added, so that two collectors of one name are refused.
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(self)

    def record_session(self, status: SessionEnd, stats: InvocationStatsSummary | None) -> None:
        with self._lock:
            self._sessions[status] += 1
            for node in stats.node_stats if stats is not None else ():
                self._nodes[node.node_type] += node.num_calls
                self._node_seconds[node.node_type] += node.time_used_seconds

    def add_collector(self, collector: Collector) -> None:
        self._registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sessions, nodes, node_seconds = dict(self._sessions), dict(self._nodes), dict(self._node_seconds)
        yield _counter("nodeloom_sessions_total", "Sessions finished since start, by final status", "status", sessions)
        yield _counter("nodeloom_nodes_total", "Nodes executed since start, by node type", "node_type", nodes)
        yield _counter(
            "nodeloom_node_seconds_total", "Seconds spent in nodes since start, by node type", "node_type", node_seconds
        )


def _counter(name: str, documentation: str, label: str, values: dict[str, int] | dict[str, float]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
