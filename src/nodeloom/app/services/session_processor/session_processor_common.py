"""The session processor's status, how a session it processed ended, and what its processors share."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field

from nodeloom.app.services.events.events_common import EventBase, ProcessingPausedChangedEvent
from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUS, SessionQueueItemNotFoundError

if TYPE_CHECKING:
    from nodeloom.app.services.events.events_base import EventServiceBase
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
    from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem

logger = logging.getLogger(__name__)

SessionEnd = QUEUE_ITEM_STATUS | Literal["deleted", "taken"]
"""How a processed session ended, as the metrics count it: its item's status after, deleted while it ran, or taken
from this processor (its lease lapsed) while it ran."""


def timeout_message(timeout_s: float) -> str:
    """The error of an item failed as `Timeout`: its session ran past the batch's timeout."""
    return f"The session ran longer than its timeout of {timeout_s} s and was stopped"


def item_gone(queue: SessionQueueBase, item_id: int) -> bool:
    """Whether the item is no longer in the queue: deleted, or by a clear of its queue. Asked when a clear is heard
    while an item runs, because an item enqueued after the clear is kept and runs on, though the clear may be heard
    after its start (through the events table, or late): a clear sends the cancel of the items it finds running,
    and this catches the one it deletes without (on PostgreSQL, an item claimed while the clear runs). An item that
    cannot be read is taken as kept."""
    try:
        queue.get_queue_item(item_id)
    except SessionQueueItemNotFoundError:
        return True
    except Exception:
        logger.exception("Could not read item %s", item_id)
    return False


class SharedPause:
    """A processor's view of the pause that every processor on the database shares (the queue's), so that reading
    its status needs no database: right at once after this process's own pause or resume, and after another
    process's once its event arrives. It hears the events from its making on, started processor or not (an API
    server that runs none still answers the status)."""

    def __init__(self, queue: SessionQueueBase, events: EventServiceBase) -> None:
        self._queue = queue
        self.paused = queue.is_processing_paused()
        events.subscribe(self._hear)

    def set(self, paused: bool) -> None:
        self._queue.set_processing_paused(paused)
        self.paused = paused

    def _hear(self, event: EventBase) -> None:
        if isinstance(event, ProcessingPausedChangedEvent):
            self.paused = event.paused


class SessionProcessorStatus(BaseModel):
    processor_id: str | None = Field(
        default=None, description="The id it registered in the queue under, while started (new at each start)"
    )
    is_started: bool = Field(description="Whether the processor has been started and not stopped")
    is_processing: bool = Field(description="Whether the processor takes new items (it is not paused)")
    current_item_id: int | None = Field(default=None, description="The item being processed, if any")
    is_alive: bool = Field(
        default=True, description="Whether the processor's thread runs: false from its death until its restart"
    )
    error: str | None = Field(default=None, description="What killed the processor's thread, while it is down")
    restarts: int = Field(default=0, description="How many times the thread was restarted after it died")


class RunWatcher(Protocol):
    """Told of each session a processor runs, on the processor's thread: before its first node runs, and once its
    end is stored (or its item was found deleted). A worker process tells its parent this way."""

    def run_started(self, item: SessionQueueItem) -> None: ...

    def run_ended(self, item: SessionQueueItem, status: SessionEnd, stats: InvocationStatsSummary | None) -> None: ...
