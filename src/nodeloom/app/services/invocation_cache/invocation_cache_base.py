"""The invocation cache: outputs of earlier runs of the same node type with the same inputs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
    from nodeloom.app.services.invocation_cache.invocation_cache_common import InvocationCacheStatus


class InvocationCacheBase(ABC):
    """Stores invocation outputs by a key derived from the node's type and inputs, never its id."""

    @abstractmethod
    def get(self, key: int | str) -> BaseInvocationOutput | None:
        """The cached output for `key`, or None; counts a hit or a miss."""

    @abstractmethod
    def save(self, key: int | str, output: BaseInvocationOutput) -> None:
        """Stores `output` under `key`, evicting the least recently used entry when full."""

    @abstractmethod
    def delete(self, key: int | str) -> None:
        """Removes `key` if present."""

    @abstractmethod
    def clear(self) -> None:
        """Removes every entry and resets the counters."""

    @abstractmethod
    def create_key(self, invocation: BaseInvocation) -> int | str:
        """A stable key for the node's type and input values."""

    @abstractmethod
    def enable(self) -> None:
        """Starts using the cache."""

    @abstractmethod
    def disable(self) -> None:
        """Stops using the cache: every lookup misses and nothing is stored."""

    @abstractmethod
    def get_status(self) -> InvocationCacheStatus:
        """Size, counters and whether the cache is enabled."""
