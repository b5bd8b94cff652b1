"""The event bus: services dispatch typed events; subscribers in this process receive them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.events.events_common import EventBase

EventHandler = Callable[["EventBase"], None]


class EventServiceBase(ABC):
    """Dispatch never blocks on a subscriber: handlers run on the bus's own thread, in dispatch order."""

    @abstractmethod
    def dispatch(self, event: EventBase) -> None:
        """Sends the event to every subscriber."""

    @abstractmethod
    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Calls `handler` with every event dispatched from now on; returns a function that unsubscribes."""

    @abstractmethod
    def start(self) -> None:
        """Starts delivering events."""

    @abstractmethod
    def stop(self, timeout_s: float | None = None) -> None:
        """Delivers the events already dispatched, then stops; gives up on those left after `timeout_s`."""
