"""The in-process invocation cache: a least-recently-used map bounded by its number of entries."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
from nodeloom.app.services.invocation_cache.invocation_cache_common import InvocationCacheStatus

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput

# These say how and where a node runs, not what it computes: two nodes differing only here share an output.
_NOT_KEYED = frozenset({"id", "is_intermediate", "use_cache"})


class MemoryInvocationCache(InvocationCacheBase):
    """Outputs kept in this process, at most `max_size` of them; 0 keeps none, so every lookup misses.

    Every method takes one lock: the API thread reads the status while the session processor reads and writes.
    """

    def __init__(self, max_size: int, enabled: bool = True) -> None:
        if max_size < 0:
            raise ValueError(f"max_size must be 0 or more, not {max_size}")
        self._max_size = max_size
        self._enabled = enabled
        self._entries: OrderedDict[int | str, BaseInvocationOutput] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: int | str) -> BaseInvocationOutput | None:
        with self._lock:
            if not self._enabled:
                return None
            output = self._entries.get(key)
            if output is None:
                self._misses += 1
                return None
            self._hits += 1
            self._entries.move_to_end(key)
            # Outputs are mutable and the engine hands their values to downstream nodes without copying
            # (an `iterate` item, a list); without a copy here, a node changing what it received would
            # change what every later hit returns.
            return output.model_copy(deep=True)

    def save(self, key: int | str, output: BaseInvocationOutput) -> None:
        with self._lock:
            if not self._enabled:
                return
            # The caller keeps `output` (it becomes the session's result and feeds downstream nodes), so the
            # cache stores its own copy that nothing outside can reach.
            self._entries[key] = output.model_copy(deep=True)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)

    def delete(self, key: int | str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._hits = 0
            self._misses = 0

    def create_key(self, invocation: BaseInvocation) -> str:
        # Python's `hash()` of a string is salted per process; a digest of canonical JSON is the same in every
        # process and on every machine, and sorted keys make it independent of the order dicts were built in.
        values = invocation.model_dump(mode="json", exclude=set(_NOT_KEYED))
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()

    def enable(self) -> None:
        with self._lock:
            self._enabled = True

    def disable(self) -> None:
        with self._lock:
            self._enabled = False

    def get_status(self) -> InvocationCacheStatus:
        with self._lock:
            return InvocationCacheStatus(
                size=len(self._entries),
                hits=self._hits,
                misses=self._misses,
                enabled=self._enabled,
                max_size=self._max_size,
            )
