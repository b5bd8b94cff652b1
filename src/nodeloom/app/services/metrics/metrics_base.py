"""Counters of the work done, for monitoring."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.metrics.metrics_common import MetricsSnapshot


class MetricsServiceBase(ABC):
    """Counts finished sessions and the nodes they ran."""

    @abstractmethod
    def record_session(self, status: str, stats: InvocationStatsSummary | None) -> None:
        """Counts one finished session with its final status and, if any node ran, its stats."""

    @abstractmethod
    def snapshot(self) -> MetricsSnapshot:
        """The counters as they are now."""
