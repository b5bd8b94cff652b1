"""The in-process event bus: a queue drained by one delivery thread. Alone, it serves one process (tests, tools);
`DatabaseEventService` hands every process's events to it."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nodeloom.app.services.events.events_base import EventHandler, EventServiceBase

if TYPE_CHECKING:
    from nodeloom.app.services.events.events_common import EventBase
    from nodeloom.app.services.shared.database.database_base import DbCursor

logger = logging.getLogger(__name__)

_STOP = object()


class InProcessEventService(EventServiceBase):
    """Thread-safe. A handler that raises is logged and the others still get the event.

    Events dispatched before `start()` wait in the queue, so nothing is lost between building the services
    and starting them.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._handlers: list[EventHandler] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def dispatch(self, event: EventBase) -> None:
        self._queue.put(event)

    def dispatch_in(self, cursor: DbCursor, events: Sequence[EventBase]) -> Callable[[], None]:
        # Nothing stored: handed on after the commit, so that a subscriber finds the change in the database.
        def hand_on() -> None:
            for event in events:
                self.dispatch(event)

        return hand_on

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        with self._lock:
            self._handlers = [*self._handlers, handler]

        def unsubscribe() -> None:
            with self._lock:
                self._handlers = [h for h in self._handlers if h is not handler]

        return unsubscribe

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="nodeloom-events", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("A handler held the event bus for over %.1f s: the events left are dropped", timeout_s)
            self._thread = None

    def _deliver(self) -> None:
        while (event := self._queue.get()) is not _STOP:
            # The list is replaced, never changed in place, so it can be read without the lock.
            for handler in self._handlers:
                try:
                    handler(event)  # type: ignore[arg-type]
                except Exception:
                    logger.exception("Event handler %r failed on %s", handler, type(event).__name__)
