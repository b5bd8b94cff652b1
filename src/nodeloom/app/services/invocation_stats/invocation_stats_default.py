"""The invocation stats service, keeping the stats of the most recent sessions in memory."""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

import psutil

from nodeloom.app.services.invocation_stats.invocation_stats_base import InvocationStatsServiceBase
from nodeloom.app.services.invocation_stats.invocation_stats_common import (
    GESStatsNotFoundError,
    GraphExecutionStatsSummary,
    InvocationStatsSummary,
    ModelCacheStatsProvider,
    NodeExecutionStatsSummary,
)
from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation

_GB = 2**30

logger = logging.getLogger("nodeloom.stats")


def _cuda() -> ModuleType | None:
    """`torch.cuda` when torch is loaded and sees a GPU, else None.

    Torch is not a dependency of this module and importing it costs seconds and much memory; if no node has
    loaded it, nothing can have used the GPU, so its absence means 0.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    cuda: ModuleType = torch.cuda
    return cuda


@dataclass(frozen=True)
class _NodeRecord:
    """One invocation. Times are `time.perf_counter()` readings: only their differences mean anything."""

    invocation_type: str
    start_time: float
    end_time: float
    start_ram_gb: float
    end_ram_gb: float
    peak_vram_gb: float

    @property
    def seconds(self) -> float:
        return self.end_time - self.start_time


@dataclass
class _SessionRecords:
    records: list[_NodeRecord] = field(default_factory=list)

    def graph_summary(self, graph_execution_state_id: str) -> GraphExecutionStatsSummary:
        summary = GraphExecutionStatsSummary(
            graph_execution_state_id=graph_execution_state_id,
            execution_time_seconds=sum(record.seconds for record in self.records),
            wall_time_seconds=None,
            ram_usage_gb=None,
            ram_change_gb=None,
        )
        if self.records:
            first = min(self.records, key=lambda record: record.start_time)
            last = max(self.records, key=lambda record: record.end_time)
            summary.wall_time_seconds = last.end_time - first.start_time
            summary.ram_usage_gb = last.end_ram_gb
            summary.ram_change_gb = last.end_ram_gb - first.start_ram_gb
        return summary

    def node_summaries(self) -> list[NodeExecutionStatsSummary]:
        by_type: dict[str, NodeExecutionStatsSummary] = {}
        for record in self.records:
            summary = by_type.get(record.invocation_type)
            if summary is None:
                by_type[record.invocation_type] = NodeExecutionStatsSummary(
                    node_type=record.invocation_type,
                    num_calls=1,
                    time_used_seconds=record.seconds,
                    peak_vram_gb=record.peak_vram_gb,
                )
            else:
                summary.num_calls += 1
                summary.time_used_seconds += record.seconds
                summary.peak_vram_gb = max(summary.peak_vram_gb, record.peak_vram_gb)
        return list(by_type.values())


class InvocationStatsService(InvocationStatsServiceBase):
    """Stats of the last `max_sessions` sessions to run a node, the oldest forgotten first.

    `model_cache_stats` gives the model cache's figures for a session; without it those figures are all 0.
    One lock guards the sessions: the API thread reads them while the session processor writes.
    """

    def __init__(self, *, max_sessions: int = 32, model_cache_stats: ModelCacheStatsProvider | None = None) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be 1 or more, not {max_sessions}")
        self._max_sessions = max_sessions
        self._model_cache_stats = model_cache_stats
        # Ordered by the last time a session ran a node, so that a session still running is never the one
        # forgotten; the bound keeps a long-running server's memory flat when nobody resets its sessions.
        self._sessions: OrderedDict[str, _SessionRecords] = OrderedDict()
        self._lock = threading.Lock()
        self._rss = _rss_reader()

    @contextmanager
    def collect_stats(self, invocation: BaseInvocation, graph_execution_state_id: str) -> Iterator[None]:
        session = self._session_for_node(graph_execution_state_id)
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        start_ram_gb = self._ram_gb()
        start_time = time.perf_counter()
        try:
            yield
        finally:
            end_time = time.perf_counter()
            record = _NodeRecord(
                invocation_type=invocation.type,
                start_time=start_time,
                end_time=end_time,
                start_ram_gb=start_ram_gb,
                end_ram_gb=self._ram_gb(),
                peak_vram_gb=_peak_vram_gb(),
            )
            # If the session was forgotten meanwhile, the record goes with it: nothing can ask for it now.
            with self._lock:
                session.records.append(record)

    def reset_stats(self, graph_execution_state_id: str) -> None:
        with self._lock:
            if self._sessions.pop(graph_execution_state_id, None) is None:
                raise _not_found(graph_execution_state_id)

    def get_stats(self, graph_execution_state_id: str) -> InvocationStatsSummary:
        with self._lock:
            session = self._sessions.get(graph_execution_state_id)
            if session is None:
                raise _not_found(graph_execution_state_id)
            graph_stats = session.graph_summary(graph_execution_state_id)
            node_stats = session.node_summaries()
        # Outside the lock: the provider is another service's code and may take its own locks.
        model_cache_stats = (
            self._model_cache_stats(graph_execution_state_id)
            if self._model_cache_stats is not None
            else ModelCacheStatsSummary()
        )
        cuda = _cuda()
        return InvocationStatsSummary(
            graph_stats=graph_stats,
            model_cache_stats=model_cache_stats,
            node_stats=node_stats,
            vram_usage_gb=float(cuda.memory_allocated()) / _GB if cuda is not None else None,
        )

    def _session_for_node(self, graph_execution_state_id: str) -> _SessionRecords:
        with self._lock:
            session = self._sessions.get(graph_execution_state_id)
            if session is None:
                session = self._sessions[graph_execution_state_id] = _SessionRecords()
                while len(self._sessions) > self._max_sessions:
                    forgotten, _ = self._sessions.popitem(last=False)
                    logger.debug("Forgetting the stats of session %s, the oldest kept", forgotten)
            else:
                self._sessions.move_to_end(graph_execution_state_id)
            return session

    def _ram_gb(self) -> float:
        return self._rss() / _GB


@functools.cache
def _rss_reader() -> Callable[[], int]:
    """A function giving this process's resident set size in bytes.

    On Linux it reads /proc/self/statm through a file kept open, about ten times faster than psutil, which
    matters at two reads per node; elsewhere psutil.
    """
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        process = psutil.Process()
        return lambda: int(process.memory_info().rss)
    page_size = os.sysconf("SC_PAGE_SIZE")
    return lambda: int(os.pread(fd, 128, 0).split()[1]) * page_size


def _peak_vram_gb() -> float:
    # Looked up again rather than reused from the start: a node may be the one that loads torch, and then the
    # peak since torch started is the peak during that node.
    cuda = _cuda()
    return float(cuda.max_memory_allocated()) / _GB if cuda is not None else 0.0


def _not_found(graph_execution_state_id: str) -> GESStatsNotFoundError:
    return GESStatsNotFoundError(f"No invocation stats are kept for session '{graph_execution_state_id}'")
