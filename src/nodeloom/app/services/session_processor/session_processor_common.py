"""The session processor's status, and how a session it processed ended."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field

from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUS

if TYPE_CHECKING:
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem

SessionEnd = QUEUE_ITEM_STATUS | Literal["deleted", "taken"]
"""How a processed session ended, as the metrics count it: its item's status after, deleted while it ran, or taken
from this processor (its lease lapsed) while it ran."""


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
