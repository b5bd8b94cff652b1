"""Metrics for monitoring: counters of the work done, and what other services report when scraped."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.session_processor.session_processor_common import SessionEnd


class MetricsServiceBase(ABC):
    """Counts finished sessions and the nodes they ran; exposes them with the collectors added, for Prometheus."""

    @abstractmethod
    def record_session(self, status: SessionEnd, stats: InvocationStatsSummary | None) -> None:
        """Counts one finished session with its final status and, if any node ran, its stats."""

    @abstractmethod
    def add_collector(self, collector: Collector) -> None:
        """Adds metrics that a collector reads when scraped; one whose names another has already is refused."""

    @abstractmethod
    def exposition(self) -> bytes:
        """Every metric as it is now, in Prometheus's text format, version 0.0.4 (`CONTENT_TYPE_PLAIN_0_0_4`)."""
