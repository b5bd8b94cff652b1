"""Metrics counters kept in memory, from process start."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from nodeloom.app.services.metrics.metrics_base import MetricsServiceBase
from nodeloom.app.services.metrics.metrics_common import MetricsSnapshot

if TYPE_CHECKING:
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary


class MemoryMetricsService(MetricsServiceBase):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: Counter[str] = Counter()
        self._nodes: Counter[str] = Counter()
        self._node_seconds: defaultdict[str, float] = defaultdict(float)

    def record_session(self, status: str, stats: InvocationStatsSummary | None) -> None:
        with self._lock:
            self._sessions[status] += 1
            for node in stats.node_stats if stats is not None else ():
                self._nodes[node.node_type] += node.num_calls
                self._node_seconds[node.node_type] += node.time_used_seconds

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            return MetricsSnapshot(
                sessions=dict(self._sessions), nodes=dict(self._nodes), node_seconds=dict(self._node_seconds)
            )
