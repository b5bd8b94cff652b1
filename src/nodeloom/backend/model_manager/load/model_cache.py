"""The cache of loaded models: kept in RAM under a size budget, on the execution device while locked.

Models are evicted least recently used first when a new one needs room; a locked model (one inside a
`with loaded_model as model:` block) is never evicted or moved. On CUDA (or MPS) a model moves to the device when
locked and stays there after, until the VRAM budget needs room for another: then the least recently used
unlocked models go back to RAM. The RAM budget bounds every cached model wherever it sits, so moving one back
never needs room in RAM. On the CPU nothing ever moves.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from nodeloom.backend.model_manager.load.cache_stats import CacheStats, EmptyModelCacheResult, ModelCacheStatsSummary
from nodeloom.backend.util.devices import DeviceName, ExecutionDevice, PrecisionName, choose_execution_device

if TYPE_CHECKING:
    import torch

_GB = 2**30

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class CacheRecord:
    """A cached model and its size in bytes; `locks` counts the blocks using it now."""

    key: str
    model: Any
    size: int
    locks: int = 0
    on_device: bool = False
    """Whether the model sits on the execution device rather than in RAM."""


@dataclass
class _Counts:
    hits: int = 0
    misses: int = 0
    high_water_mark: int = 0
    models_cached: int = 0
    models_cleared: int = 0


@dataclass
class _SessionCounts(_Counts):
    sizes: dict[str, int] = field(default_factory=dict)
    """The size of each model the session used, by cache key."""


def model_size_bytes(model: object) -> int:
    """The bytes of a module's parameters and buffers, or of a state dict's tensors; 0 for anything else.

    Tokenizers and schedulers hold no tensors: they count as nothing, and go first when room is needed.
    """
    import torch

    tensors: Iterable[torch.Tensor]
    if isinstance(model, torch.nn.Module):
        tensors = itertools.chain(model.parameters(), model.buffers())
    elif isinstance(model, dict):
        tensors = (value for value in model.values() if isinstance(value, torch.Tensor))
    else:
        return 0
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def records_to_free(records: Sequence[CacheRecord], needed: int, budget: int) -> list[CacheRecord]:
    """The unlocked records to drop (or move off the device), least recently used first, so that `needed` more
    bytes fit in `budget` beside the rest; as many as can go when even dropping every unlocked one is not enough.

    `records` are those counted against the budget, least recently used first.
    """
    in_use = sum(record.size for record in records)
    chosen: list[CacheRecord] = []
    for record in records:
        if in_use + needed <= budget:
            break
        if record.locks == 0:
            chosen.append(record)
            in_use -= record.size
    return chosen


class ModelCache:
    """Loaded models by key (a model's key and submodel), with hits, misses and evictions counted overall and per
    session (the last `max_sessions` sessions to load a model). Thread-safe: one lock guards the records.
    """

    def __init__(
        self,
        *,
        ram_budget_gb: float,
        vram_budget_gb: float,
        device: DeviceName = "auto",
        precision: PrecisionName = "auto",
        max_sessions: int = 32,
    ) -> None:
        self._ram_budget = int(ram_budget_gb * _GB)
        self._vram_budget = int(vram_budget_gb * _GB)
        self._device_name: DeviceName = device
        self._precision_name: PrecisionName = precision
        self._max_sessions = max_sessions
        # Least recently used first.
        self._records: OrderedDict[str, CacheRecord] = OrderedDict()
        self._lock = threading.RLock()
        self._totals = _Counts()
        self._sessions: OrderedDict[str, _SessionCounts] = OrderedDict()

    @cached_property
    def execution_device(self) -> ExecutionDevice:
        """The device and dtype, chosen on first use, so that building the cache never imports torch."""
        return choose_execution_device(self._device_name, self._precision_name)

    def get(self, key: str, session_id: str | None = None) -> CacheRecord | None:
        """The cached model, now the most recently used; None (a miss) when it is not cached."""
        with self._lock:
            record = self._records.get(key)
            session = self._session(session_id)
            for counts in self._counters(session):
                if record is None:
                    counts.misses += 1
                else:
                    counts.hits += 1
            if record is not None:
                self._records.move_to_end(key)
                self._note_use(session, record)
            return record

    def put(self, key: str, model: Any, session_id: str | None = None) -> CacheRecord:
        """Caches a model loaded after a miss, first evicting what must go to keep within the RAM budget."""
        size = model_size_bytes(model)
        with self._lock:
            session = self._session(session_id)
            existing = self._records.get(key)
            if existing is not None:
                # Another thread loaded the same model meanwhile: keep one copy.
                self._records.move_to_end(key)
                self._note_use(session, existing)
                return existing
            cleared = self._drop(records_to_free(list(self._records.values()), size, self._ram_budget))
            if self._ram_in_use() + size > self._ram_budget:
                logger.warning(
                    "The model cache holds %.2f GB beyond its %.2f GB budget: the models in use cannot be evicted",
                    (self._ram_in_use() + size - self._ram_budget) / _GB,
                    self._ram_budget / _GB,
                )
            record = self._records[key] = CacheRecord(key=key, model=model, size=size)
            for counts in self._counters(session):
                counts.models_cached += 1
                counts.models_cleared += cleared.models_cleared
            self._note_use(session, record)
            return record

    def lock(self, record: CacheRecord) -> None:
        """Marks the model in use, first moving it to the execution device if it runs elsewhere than in RAM."""
        with self._lock:
            if not self.execution_device.is_cpu and not record.on_device and self._movable(record.model):
                on_device = [other for other in self._records.values() if other.on_device]
                for other in records_to_free(on_device, record.size, self._vram_budget):
                    self._move(other, to_device=False)
                self._move(record, to_device=True)
            record.locks += 1

    def unlock(self, record: CacheRecord) -> None:
        """Marks one use of the model over; it stays where it is until its room is needed."""
        with self._lock:
            record.locks = max(0, record.locks - 1)

    def empty(self) -> EmptyModelCacheResult:
        """Drops every model not in use."""
        with self._lock:
            result = self._drop(records_to_free(list(self._records.values()), 0, 0))
            self._totals.models_cleared += result.models_cleared
            return result

    def stats(self) -> CacheStats:
        """The figures since the cache was made."""
        with self._lock:
            return CacheStats(
                hits=self._totals.hits,
                misses=self._totals.misses,
                high_watermark=self._totals.high_water_mark,
                in_cache=len(self._records),
                cleared=self._totals.models_cleared,
                cache_size=self._ram_budget,
                loaded_model_sizes={key: record.size for key, record in self._records.items()},
            )

    def session_stats(self, session_id: str) -> ModelCacheStatsSummary:
        """The figures of one session's loads; all 0 for a session that loaded no model (or was forgotten)."""
        with self._lock:
            stats = self._sessions.get(session_id) or _SessionCounts()
            return ModelCacheStatsSummary(
                cache_hits=stats.hits,
                cache_misses=stats.misses,
                high_water_mark_gb=stats.high_water_mark / _GB,
                cache_size_gb=self._ram_budget / _GB,
                total_usage_gb=sum(stats.sizes.values()) / _GB,
                models_cached=stats.models_cached,
                models_cleared=stats.models_cleared,
            )

    def _session(self, session_id: str | None) -> _SessionCounts | None:
        """The session's counts, made the most recent; None when the load belongs to no session."""
        if session_id is None:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = _SessionCounts()
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        return session

    def _counters(self, session: _SessionCounts | None) -> list[_Counts]:
        """What an event counts towards: the totals, and the session's counts if there is one."""
        return [self._totals] if session is None else [self._totals, session]

    def _note_use(self, session: _SessionCounts | None, record: CacheRecord) -> None:
        in_use = self._ram_in_use()
        for counts in self._counters(session):
            counts.high_water_mark = max(counts.high_water_mark, in_use)
        if session is not None:
            session.sizes[record.key] = record.size

    def _ram_in_use(self) -> int:
        return sum(record.size for record in self._records.values())

    def _drop(self, records: list[CacheRecord]) -> EmptyModelCacheResult:
        for record in records:
            del self._records[record.key]
            logger.debug("Dropped %s (%.3f GB) from the model cache", record.key, record.size / _GB)
        return EmptyModelCacheResult(models_cleared=len(records), bytes_freed=sum(record.size for record in records))

    @staticmethod
    def _movable(model: Any) -> bool:
        import torch

        return isinstance(model, torch.nn.Module)

    def _move(self, record: CacheRecord, to_device: bool) -> None:
        target: torch.device | str = self.execution_device.device if to_device else "cpu"
        record.model.to(target)
        record.on_device = to_device
