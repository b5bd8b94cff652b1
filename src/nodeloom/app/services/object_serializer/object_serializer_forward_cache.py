"""A bounded least-recently-used cache in front of an object store, so the next node skips the disk."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TypeVar

from nodeloom.app.services.object_serializer.object_serializer_base import ObjectSerializerBase

T = TypeVar("T")


class ObjectSerializerForwardCache(ObjectSerializerBase[T]):
    """Saves write through to `underlying`; loads are served from memory while the object is among the
    `max_cache_size` most recently used.

    A cached object is handed out as it is, not copied (a latents tensor may be large): a node must not change
    an object it loaded in place. One lock covers each operation, so a delete never races a load into
    caching an object that is gone.
    """

    def __init__(self, underlying: ObjectSerializerBase[T], max_cache_size: int = 20) -> None:
        if max_cache_size < 0:
            raise ValueError(f"max_cache_size must be 0 or more, not {max_cache_size}")
        self._underlying = underlying
        self._max_cache_size = max_cache_size
        self._cache: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def save(self, obj: T) -> str:
        name = self._underlying.save(obj)
        with self._lock:
            self._remember(name, obj)
        return name

    def load(self, name: str) -> T:
        with self._lock:
            if name in self._cache:
                self._cache.move_to_end(name)
                return self._cache[name]
            obj = self._underlying.load(name)
            self._remember(name, obj)
            return obj

    def delete(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)
            self._underlying.delete(name)

    def delete_all(self) -> int:
        with self._lock:
            self._cache.clear()
            return self._underlying.delete_all()

    def remove_temporary_files(self) -> int:
        return self._underlying.remove_temporary_files()

    def _remember(self, name: str, obj: T) -> None:
        self._cache[name] = obj
        self._cache.move_to_end(name)
        while len(self._cache) > self._max_cache_size:
            self._cache.popitem(last=False)
