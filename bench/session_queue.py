"""The session queue on a real SQLite file, events to the in-process bus: one JSON object per measurement.

(a) enqueue one batch expanding to K sessions of a 3-node integer graph; (b) dequeue and complete every item
of a 10,000-item queue. The last line sums up with `enqueue_10000_s`, `dequeue_complete_ms`,
`sessions_per_s` and `cancel_p95_ms`; a measurement not made yet is null.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator


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
        while (item := q.dequeue()) is not None:
            q.complete_queue_item(item.item_id)
        seconds = time.perf_counter() - started
        assert q.get_queue_status(DEFAULT_QUEUE_ID).completed == n
    return seconds / n * 1000


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
    report(summary)


if __name__ == "__main__":
    main()
