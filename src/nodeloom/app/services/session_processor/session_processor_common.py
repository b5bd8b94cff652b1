"""The session processor's status."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SessionProcessorStatus(BaseModel):
    is_started: bool = Field(description="Whether the processor's thread is running")
    is_processing: bool = Field(description="Whether the processor takes new items (it is not paused)")
    current_item_id: int | None = Field(default=None, description="The item being processed, if any")
