"""What the metrics service has counted since the process started."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MetricsSnapshot(BaseModel):
    sessions: dict[str, int] = Field(description="Finished sessions by final status")
    nodes: dict[str, int] = Field(description="Executed nodes by node type")
    node_seconds: dict[str, float] = Field(description="Seconds spent in nodes, by node type")
