"""Stores Python objects by name, for nodes that hand large data (latents, conditioning) to later nodes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

T = TypeVar("T")


class ObjectSerializerBase(ABC, Generic[T]):
    """Names are made by the store; a name it did not make raises `InvalidObjectNameError`."""

    @abstractmethod
    def save(self, obj: T) -> str:
        """Stores the object and returns its new name."""

    @abstractmethod
    def load(self, name: str) -> T:
        """The object stored under `name`; raises `ObjectNotFoundError` if there is none."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Removes the object, if it exists."""

    @abstractmethod
    def delete_all(self) -> int:
        """Removes every object of this store (they are intermediates, pruned with intermediate images)."""

    @abstractmethod
    def remove_temporary_files(self) -> int:
        """Deletes what writes cut short by a crash left behind; how many. At start-up, before anything runs."""
