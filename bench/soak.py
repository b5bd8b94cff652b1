"""Soak: many trivial sessions through the real services, with the queue's history bounded.

Enqueues batches of 100 two-node sessions, 1,000 sessions at a time, and waits for them to finish. After every
1,000 it prints one JSON object: the process's RSS, the database's size on disk (file and WAL) and its rows (queue
items, count rows, batch rows), and whether every enqueue took every session. The last line sums it up.
`tests/app/services/session_queue/test_session_queue_soak.py` runs the same and checks that nothing grows.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.invocation_services import build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch

BATCH_SESSIONS = 100
MAX_QUEUE_SIZE = 2_000
"""Below the history, so that a queue counting its finished items toward its size would refuse work early."""


@dataclass(frozen=True)
class SoakPoint:
    sessions: int
    seconds: float
    rss_mb: float
    db_mb: float
    """The database file and its WAL."""
    items: int
    count_rows: int
    batch_rows: int
    refused: int
    """Sessions asked for and not enqueued so far."""


def _graph(first: int) -> Batch:
    """BATCH_SESSIONS sessions of integer → add, each with its own value, so that no session is a cache hit."""
    return Batch.model_validate(
        {
            "graph": {
                "nodes": {
                    "i": {"id": "i", "type": "integer"},
                    "sum": {"id": "sum", "type": "add", "b": 1},
                },
                "edges": [
                    {"source": {"node_id": "i", "field": "value"}, "destination": {"node_id": "sum", "field": "a"}}
                ],
            },
            "data": [[{"node_path": "i", "field_name": "value", "items": list(range(first, first + BATCH_SESSIONS))}]],
        }
    )


def soak(root: Path, sessions: int = 20_000, history: int = 5_000, every: int = 1_000) -> Iterator[SoakPoint]:
    """Runs `sessions` sessions on the services of `root`, yielding a point after each `every` of them."""
    config = load_config(
        root,
        log_level="warning",
        max_queue_size=MAX_QUEUE_SIZE,
        max_queue_history=history,
        processor_poll_interval_s=0.05,
    )
    services = build_services(config)
    invoker = Invoker(services)
    invoker.start()
    queue = services.session_queue
    process = psutil.Process()
    started = time.perf_counter()
    refused = 0
    try:
        for done in range(every, sessions + 1, every):
            for first in range(done - every, done, BATCH_SESSIONS):
                result = queue.enqueue_batch(DEFAULT_QUEUE_ID, _graph(first), prepend=False)
                refused += result.requested - result.enqueued
            while (status := queue.get_queue_status(DEFAULT_QUEUE_ID)).pending + status.in_progress:
                time.sleep(0.01)
            with services.database.read() as cursor:
                rows = {}
                for table in ("session_queue", "session_queue_counts", "session_queue_batches"):
                    cursor.execute(f"SELECT COUNT(*) AS n FROM {table}")
                    row = cursor.fetchone()
                    rows[table] = 0 if row is None else int(row["n"])
            db_bytes = sum(path.stat().st_size for path in config.db_path.parent.glob(f"{config.db_path.name}*"))
            yield SoakPoint(
                sessions=done,
                seconds=round(time.perf_counter() - started, 2),
                rss_mb=round(process.memory_info().rss / 2**20, 1),
                db_mb=round(db_bytes / 2**20, 2),
                items=rows["session_queue"],
                count_rows=rows["session_queue_counts"],
                batch_rows=rows["session_queue_batches"],
                refused=refused,
            )
    finally:
        invoker.stop()


def main() -> None:
    load_builtin_nodes()
    points = []
    with tempfile.TemporaryDirectory() as root:
        for point in soak(Path(root)):
            points.append(point)
            print(json.dumps({"case": "soak", **asdict(point)}), flush=True)
    first, last = points[0], points[-1]
    summary = {
        "sessions": last.sessions,
        "sessions_per_s": round(last.sessions / last.seconds, 1),
        "rss_growth_mb": round(max(p.rss_mb for p in points) - first.rss_mb, 1),
        "db_mb_max": max(p.db_mb for p in points),
        "items_max": max(p.items for p in points),
        "refused": last.refused,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
