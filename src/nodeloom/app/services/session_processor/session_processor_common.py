"""The session processor's status, and how a session it processed ended."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUS

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
