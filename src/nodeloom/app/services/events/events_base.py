"""The event bus: services dispatch typed events; subscribers in this process receive them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

from nodeloom.app.services.events.events_common import StoredQueueEvents

if TYPE_CHECKING:
    from nodeloom.app.services.events.events_common import EventBase, QueueEventBase
    from nodeloom.app.services.shared.database.database_base import DbCursor

EventHandler = Callable[["EventBase"], None]


class EventServiceBase(ABC):
    """Dispatch never blocks on a subscriber: handlers run on the bus's own thread, in dispatch order."""

    stores_queue_events: ClassVar[bool] = False
    """Whether queue events are stored in the database's events table, numbered in their queue there: a change
    that one statement makes then stores its own event in that statement, and hands it on with `stored`."""

    @abstractmethod
    def dispatch(self, event: EventBase) -> None:
        """Sends the event to every subscriber."""

    @abstractmethod
    def dispatch_in(self, cursor: DbCursor, events: Sequence[EventBase]) -> Callable[[], None]:
        """Dispatches the events as part of the write transaction of `cursor`: stored with the change they tell of,
        where events are stored, so that they exist exactly when it does. Returns what to call once the transaction
        has committed, which hands them on; a transaction that rolls back dispatches none.

        Where `dispatch` stores events later, those it has taken and not stored yet are stored first in the same
        transaction, so that a change is numbered after the events dispatched before it (and a rollback drops
        them too). The transaction runs inside `writing()`."""

    def stored(self, event_id: int, event: QueueEventBase) -> Callable[[], None]:
        """Takes a queue event that a write stored in the events table itself, numbered, under `event_id`, where
        `stores_queue_events`; returns what to call once the write has committed, which hands it on."""
        raise NotImplementedError(f"{type(self).__name__} stores no events: dispatch them with dispatch_in")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Held around a write transaction that calls `dispatch_in`, taken before it begins: where `dispatch` stores
        events later, in transactions of their own, none is stored meanwhile, so that those dispatched before the
        change are stored in its transaction, in order."""
        yield

    def flush(self) -> None:  # noqa: B027 - a bus that hands events on as they come has nothing to flush
        """Stores the events `dispatch` has taken so far, where it stores them later in batches, so that a change
        written next is numbered after them."""

    def stored_queue_events(self, queue_id: str, after: int, limit: int) -> StoredQueueEvents:
        """The queue's stored events numbered above `after`, at most `limit` of them, in order: what a client that
        reconnects missed. A bus that stores nothing has none."""
        return StoredQueueEvents(oldest=None, last=0, events=())

    @abstractmethod
    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        """Calls `handler` with every event dispatched from now on; returns a function that unsubscribes."""

    @abstractmethod
    def start(self) -> None:
        """Starts delivering events."""

    @abstractmethod
    def stop(self, timeout_s: float | None = None) -> None:
        """Delivers the events already dispatched, then stops; gives up on those left after `timeout_s`."""
