"""`/health` for load balancers and `/metrics` in Prometheus's text format."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from nodeloom.app.api.dependencies import Services
from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUSES

monitoring_router = APIRouter(tags=["monitoring"])


class Health(BaseModel):
    status: Literal["ok", "processor_down"]
    processor_started: bool
    detail: str | None = Field(default=None, description="What is wrong, when the status is not ok")


@monitoring_router.get(
    "/health", operation_id="health", responses={503: {"model": Health, "description": "The processor is down"}}
)
def health(services: Services, response: Response) -> Health:
    """200 while the server answers and its processor's thread runs (paused or not); 503 while that thread is down."""
    processor = services.session_processor.get_status()
    if processor.is_alive:
        return Health(status="ok", processor_started=processor.is_started)
    response.status_code = 503
    reason = processor.error or "it is not running"
    return Health(
        status="processor_down",
        processor_started=processor.is_started,
        detail=f"The session processor's thread is down: {reason}",
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            rendered = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")


@monitoring_router.get("/metrics", operation_id="metrics", response_class=PlainTextResponse)
def metrics(services: Services) -> PlainTextResponse:
    """Queue counts, sessions and nodes executed, node time by type, cache hits and misses, processor state."""
    out = _Exposition()
    counts = services.session_queue.get_all_queue_counts()
    out.metric(
        "nodeloom_queue_items",
        "gauge",
        "Queue items by queue and status",
        [({"queue_id": q, "status": s}, float(n.get(s, 0))) for q, n in counts.items() for s in QUEUE_ITEM_STATUSES],
    )
    snapshot = services.metrics.snapshot()
    out.metric(
        "nodeloom_sessions_total",
        "counter",
        "Sessions finished since start, by final status",
        [({"status": s}, float(n)) for s, n in sorted(snapshot.sessions.items())],
    )
    out.metric(
        "nodeloom_nodes_total",
        "counter",
        "Nodes executed since start, by node type",
        [({"node_type": t}, float(n)) for t, n in sorted(snapshot.nodes.items())],
    )
    out.metric(
        "nodeloom_node_seconds_total",
        "counter",
        "Seconds spent in nodes since start, by node type",
        [({"node_type": t}, s) for t, s in sorted(snapshot.node_seconds.items())],
    )
    cache = services.invocation_cache.get_status()
    out.metric("nodeloom_cache_hits_total", "counter", "Invocation cache hits", [({}, float(cache.hits))])
    out.metric("nodeloom_cache_misses_total", "counter", "Invocation cache misses", [({}, float(cache.misses))])
    out.metric("nodeloom_cache_size", "gauge", "Outputs in the invocation cache", [({}, float(cache.size))])
    processor = services.session_processor.get_status()
    out.metric("nodeloom_processor_started", "gauge", "1 while the processor runs", [({}, float(processor.is_started))])
    out.metric(
        "nodeloom_processor_processing",
        "gauge",
        "1 unless the processor is paused",
        [({}, float(processor.is_processing))],
    )
    out.metric(
        "nodeloom_processor_alive", "gauge", "1 while the processor's thread runs", [({}, float(processor.is_alive))]
    )
    out.metric(
        "nodeloom_processor_restarts_total",
        "counter",
        "Restarts of the processor's thread after it died",
        [({}, float(processor.restarts))],
    )
    return PlainTextResponse("\n".join(out.lines) + "\n", media_type="text/plain; version=0.0.4")
