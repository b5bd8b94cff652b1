"""The session queue on a real SQLite file, events to the in-process bus: one JSON object per measurement.

(a) enqueue one batch expanding to K sessions of a 3-node integer graph; (b) dequeue and complete every item
of a 10,000-item queue; (c) end to end through the real processor: 1,000 one-session batches, from the first
enqueue to the last completion; (d) cancel latency: from the cancel call to the processor leaving a node that
polls `is_canceled()`, over 50 tries. The last line sums up with `enqueue_10000_s`, `dequeue_complete_ms`,
`sessions_per_s` and `cancel_p95_ms`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.baseinvocation import BaseInvocation, invocation
from nodeloom.app.invocations.fields import InputField
from nodeloom.app.invocations.primitives import IntegerOutput
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.events.events_common import EventBase, InvocationStartedEvent
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator

if TYPE_CHECKING:
    from nodeloom.app.services.shared.invocation_context import InvocationContext

POLL_S = 0.0005
LEFT_AT: list[float] = []
"""When each `bench_wait` node saw the cancel and returned (time.perf_counter())."""


@invocation("bench_wait", use_cache=False)
class BenchWaitInvocation(BaseInvocation):
    """Polls for a cancel, as a long node should, for at most `seconds`."""

    seconds: float = InputField(default=10.0)

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        deadline = time.perf_counter() + self.seconds
        while time.perf_counter() < deadline:
            if context.util.is_canceled():
                LEFT_AT.append(time.perf_counter())
                break
            time.sleep(POLL_S)
        return IntegerOutput(value=0)


def integer_graph() -> dict[str, Any]:
    """integer a, integer b -> add: three nodes."""
    return {
        "nodes": {
            "a": {"id": "a", "type": "integer", "value": 1},
            "b": {"id": "b", "type": "integer", "value": 2},
            "sum": {"id": "sum", "type": "add"},
        },
        "edges": [
            {"source": {"node_id": "a", "field": "value"}, "destination": {"node_id": "sum", "field": "a"}},
            {"source": {"node_id": "b", "field": "value"}, "destination": {"node_id": "sum", "field": "b"}},
        ],
    }


def batch_of(k: int) -> Batch:
    """K sessions, each with its own value of `a.value`, as a batch of seeds would have."""
    data = [[{"node_path": "a", "field_name": "value", "items": list(range(k))}]]
    return Batch.model_validate({"graph": integer_graph(), "data": data})


@contextmanager
def queue(max_queue_size: int = 100_000) -> Iterator[SqlSessionQueue]:
    """A queue on a fresh SQLite file in a temporary folder, its events delivered by a running bus."""
    with tempfile.TemporaryDirectory() as folder:
        db = SqliteDatabase(Path(folder) / "nodeloom.db")
        events = InProcessEventService()
        events.start()
        try:
            Migrator(db, MIGRATIONS).run()
            yield SqlSessionQueue(db=db, events=events, max_queue_size=max_queue_size)
        finally:
            events.stop()
            db.close()


def enqueue_seconds(k: int) -> float:
    """(a) Seconds to enqueue one batch of K sessions into an empty queue."""
    batch = batch_of(k)
    with queue() as q:
        started = time.perf_counter()
        result = q.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False)
        seconds = time.perf_counter() - started
    assert result.enqueued == k
    return seconds


def dequeue_complete_ms(n: int = 10_000) -> float:
    """(b) Milliseconds per item to dequeue and complete every item of an N-item queue."""
    with queue() as q:
        q.enqueue_batch(DEFAULT_QUEUE_ID, batch_of(n), prepend=False)
        started = time.perf_counter()
        while (item := q.dequeue("bench")) is not None:
            q.complete_queue_item(item.item_id)
        seconds = time.perf_counter() - started
        assert q.get_queue_status(DEFAULT_QUEUE_ID).completed == n
    return seconds / n * 1000


@contextmanager
def running_services() -> Iterator[InvocationServices]:
    """The real services on a temporary root, started."""
    with tempfile.TemporaryDirectory() as root:
        services = build_services(load_config(root, log_level="warning"))
        invoker = Invoker(services)
        invoker.start()
        try:
            yield services
        finally:
            invoker.stop()


def sessions_per_second(count: int = 1_000) -> float:
    """(c) One-session batches through the real processor, from the first enqueue to the last completion."""
    graph = integer_graph()
    with running_services() as services:
        q = services.session_queue
        started = time.perf_counter()
        for i in range(count):
            graph["nodes"]["a"]["value"] = i  # so the invocation cache does not answer every session
            q.enqueue_batch(DEFAULT_QUEUE_ID, Batch.model_validate({"graph": graph}), prepend=False)
        while q.get_queue_status(DEFAULT_QUEUE_ID).completed < count:
            time.sleep(0.001)
        return count / (time.perf_counter() - started)


def cancel_latencies_ms(tries: int = 50) -> list[float]:
    """(d) From `cancel_queue_item` to the node returning, each try on a fresh running session."""
    graph = {"nodes": {"wait": {"id": "wait", "type": "bench_wait"}}, "edges": []}
    latencies = []
    with running_services() as services:
        started_items: list[int] = []

        def on_event(event: EventBase) -> None:
            if isinstance(event, InvocationStartedEvent):
                started_items.append(event.item_id)

        services.events.subscribe(on_event)
        q = services.session_queue
        for _ in range(tries):
            (item_id,) = q.enqueue_batch(DEFAULT_QUEUE_ID, Batch.model_validate({"graph": graph}), False).item_ids
            while item_id not in started_items:
                time.sleep(0.001)
            LEFT_AT.clear()
            canceled_at = time.perf_counter()
            q.cancel_queue_item(item_id)
            while not LEFT_AT:
                time.sleep(0.0001)
            latencies.append((LEFT_AT[0] - canceled_at) * 1000)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(measurement: dict[str, Any]) -> None:
    print(json.dumps(measurement), flush=True)


def main() -> None:
    load_builtin_nodes()
    summary: dict[str, float | None] = {
        "enqueue_10000_s": None,
        "dequeue_complete_ms": None,
        "sessions_per_s": None,
        "cancel_p95_ms": None,
    }
    for k in (100, 1_000, 10_000):
        seconds = enqueue_seconds(k)
        report({"case": "enqueue", "sessions": k, "seconds": round(seconds, 4)})
        if k == 10_000:
            summary["enqueue_10000_s"] = round(seconds, 4)
    ms = dequeue_complete_ms()
    report({"case": "dequeue_complete", "queued": 10_000, "ms_per_item": round(ms, 4)})
    summary["dequeue_complete_ms"] = round(ms, 4)
    rate = sessions_per_second()
    report({"case": "end_to_end", "sessions": 1_000, "sessions_per_s": round(rate, 1)})
    summary["sessions_per_s"] = round(rate, 1)
    latencies = cancel_latencies_ms()
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    report({"case": "cancel_latency", "tries": len(latencies), "p50_ms": round(p50, 2), "p95_ms": round(p95, 2)})
    summary["cancel_p95_ms"] = round(p95, 2)
    report(summary)


if __name__ == "__main__":
    main()
