"""`/health` for load balancers and `/metrics` in Prometheus's text format."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import BaseModel, Field

from nodeloom.app.api.dependencies import Services

monitoring_router = APIRouter(tags=["monitoring"])


class Health(BaseModel):
    status: Literal["ok", "processor_down"]
    processor_started: bool
    detail: str | None = Field(default=None, description="What is wrong, when the status is not ok")


@monitoring_router.get(
    "/health", operation_id="health", responses={503: {"model": Health, "description": "The processor is down"}}
)
def health(services: Services, response: Response) -> Health:
    """200 while the server answers and its processor's thread runs (paused or not); 503 while that thread is down.
    A server without a processor (`run_processor` off) answers 200 while it answers."""
    processor = services.session_processor.get_status()
    if processor.is_alive or not services.config.run_processor:
        return Health(status="ok", processor_started=processor.is_started)
    response.status_code = 503
    reason = processor.error or "it is not running"
    return Health(
        status="processor_down",
        processor_started=processor.is_started,
        detail=f"The session processor's thread is down: {reason}",
    )


@monitoring_router.get("/metrics", operation_id="metrics", response_class=PlainTextResponse)
def metrics(services: Services) -> PlainTextResponse:
    """Queue counts, sessions and nodes executed, node time by type, cache hits and misses, processor state."""
    return PlainTextResponse(services.metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
