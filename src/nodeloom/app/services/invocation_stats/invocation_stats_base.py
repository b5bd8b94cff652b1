"""Invocation stats: time, memory and model cache figures for each session's invocations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary


class InvocationStatsServiceBase(ABC):
    """Collects stats around each invocation and summarises them per session (graph execution state)."""

    @abstractmethod
    def collect_stats(self, invocation: BaseInvocation, graph_execution_state_id: str) -> AbstractContextManager[None]:
        """A context manager to run `invocation` in; it records the run even when the invocation raises."""

    @abstractmethod
    def reset_stats(self, graph_execution_state_id: str) -> None:
        """Forgets the session's stats; raises `GESStatsNotFoundError` if none are kept."""

    @abstractmethod
    def get_stats(self, graph_execution_state_id: str) -> InvocationStatsSummary:
        """The session's summary; raises `GESStatsNotFoundError` if none are kept."""
