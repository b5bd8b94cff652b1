"""Events across processes, on both engines: each "process" here is a `DatabaseEventService` on a database
connection of its own, meeting the others only in the database, as processes do."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.database_engines import OpenDatabase, sqlite_only
from tests.helpers import wait_for

from nodeloom.app.services.events.events_common import (
    BatchEnqueuedEvent,
    EventBase,
    ImageCreatedEvent,
    QueueClearedEvent,
    QueueEventBase,
    QueueItemStatusChangedEvent,
)
from nodeloom.app.services.events.events_database import QUEUE_AFTER, QUEUE_OLDEST, DatabaseEventService
from nodeloom.app.services.session_queue.session_queue_common import Batch
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.shared.database.database_base import DatabaseBase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.app.services.shared.timestamps import to_timestamp


class Process:
    """An event service on a database of its own, recording what its subscribers get."""

    def __init__(self, db: DatabaseBase, **options: Any) -> None:
        self.db = db
        self.events = DatabaseEventService(db, **options)
        self.seen: list[EventBase] = []
        self.events.subscribe(self.seen.append)
        self.events.start()

    def store(self, event: EventBase) -> None:
        """Dispatches the event and stores it at once, as the session queue does before each of its changes."""
        self.events.dispatch(event)
        self.events.flush()

    def queue_events(self, queue_id: str) -> list[QueueEventBase]:
        return [e for e in list(self.seen) if isinstance(e, QueueEventBase) and e.queue_id == queue_id]


class Processes:
    def __init__(self, open_db: OpenDatabase) -> None:
        self._open_db = open_db
        self.started: list[Process] = []
        first = open_db()
        Migrator(first, MIGRATIONS).run()
        first.close()

    def start(self, **options: Any) -> Process:
        process = Process(self._open_db(), **options)
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in self.started:
            process.events.stop(timeout_s=5)
            process.db.close()


@pytest.fixture
def processes(open_db: OpenDatabase) -> Iterator[Processes]:
    made = Processes(open_db)
    yield made
    made.stop()


def enqueued(queue_id: str, batch_id: str, origin: str | None = None) -> BatchEnqueuedEvent:
    return BatchEnqueuedEvent(queue_id=queue_id, batch_id=batch_id, enqueued=1, requested=1, priority=0, origin=origin)


def test_every_process_gets_every_event_numbered_per_queue_in_order(processes: Processes) -> None:
    api, worker, other = processes.start(), processes.start(), processes.start()
    for i in range(20):
        (api if i % 2 else worker).store(enqueued("q1", f"b{i}"))
        other.store(enqueued("q2", f"c{i}"))
    api.events.dispatch(ImageCreatedEvent.model_validate(IMAGE))

    for process in (api, worker, other):
        wait_for(lambda p=process: len(p.seen) == 41, what="every event in every process")  # type: ignore[misc]
        for queue_id, prefix in (("q1", "b"), ("q2", "c")):
            mine = process.queue_events(queue_id)
            assert [e.seq for e in mine] == list(range(1, 21))
            assert [e.batch_id for e in mine if isinstance(e, BatchEnqueuedEvent)] == [
                f"{prefix}{i}" for i in range(20)
            ]
        assert [e.event_name for e in process.seen].count("image_created") == 1
    # A process delivers its own events at once and the others' as it reads them: the same events, and the same
    # order within each queue, but not one order across queues.
    for queue_id in ("q1", "q2"):
        assert api.queue_events(queue_id) == worker.queue_events(queue_id) == other.queue_events(queue_id)
    assert sorted(map(repr, api.seen)) == sorted(map(repr, worker.seen)) == sorted(map(repr, other.seen))


def test_a_process_delivers_its_own_event_only_after_the_others_it_follows(processes: Processes) -> None:
    # The slow poll keeps the other process's event unread here while this process stores the next one.
    api, worker = processes.start(poll_interval_s=5.0), processes.start()
    api.store(enqueued("q", "b0"))
    wait_for(lambda: len(api.queue_events("q")) == 1, what="its first event, through the table")
    worker.store(enqueued("q", "b1"))
    api.store(enqueued("q", "b2"))
    api.store(enqueued("q", "b3"))

    wait_for(lambda: len(api.queue_events("q")) == 4, what="every event")
    assert [(e.seq, e.batch_id) for e in api.queue_events("q") if isinstance(e, BatchEnqueuedEvent)] == [
        (1, "b0"),
        (2, "b1"),
        (3, "b2"),
        (4, "b3"),
    ]


def test_a_process_reading_some_kinds_gets_only_those_of_others_and_its_own_in_order(processes: Processes) -> None:
    api = processes.start()
    worker = processes.start(kinds=frozenset({"batch_enqueued"}))
    api.store(QueueClearedEvent(queue_id="q"))
    api.store(enqueued("q", "b1"))
    api.store(QueueClearedEvent(queue_id="q"))
    wait_for(lambda: len(worker.seen) == 1, what="the one kind it reads")
    # Its own events follow the others' it skipped, in the queue's numbers: delivered at once, not held back.
    worker.store(QueueClearedEvent(queue_id="q"))
    worker.store(enqueued("q", "b2"))
    api.store(enqueued("q", "b3"))

    wait_for(lambda: len(worker.seen) == 4, what="its own events and the next of the kind")
    assert [(e.event_name, e.seq) for e in worker.queue_events("q")] == [
        ("batch_enqueued", 2),
        ("queue_cleared", 4),
        ("batch_enqueued", 5),
        ("batch_enqueued", 6),
    ]
    wait_for(lambda: len(api.seen) == 6, what="every event in the process that reads all")


def test_a_queues_numbers_follow_its_commits_under_concurrent_writers(processes: Processes) -> None:
    writers = [processes.start() for _ in range(4)]
    reader = processes.start()
    start = threading.Barrier(len(writers))

    def write(process: Process, name: str) -> None:
        start.wait()
        for i in range(50):
            process.events.dispatch(enqueued("shared", f"{name}-{i}"))

    threads = [threading.Thread(target=write, args=(p, f"w{n}")) for n, p in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_for(lambda: len(reader.seen) == 200, what="every event")
    assert [e.seq for e in reader.queue_events("shared")] == list(range(1, 201))  # delivered in number order
    for n in range(len(writers)):
        mine = [e.batch_id for e in reader.queue_events("shared") if isinstance(e, BatchEnqueuedEvent)]
        assert [b for b in mine if b.startswith(f"w{n}-")] == [f"w{n}-{i}" for i in range(50)]


def test_events_of_a_transaction_that_rolls_back_are_never_delivered_nor_numbered(processes: Processes) -> None:
    writer, reader = processes.start(), processes.start()

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), writer.db.transaction() as cursor:
        writer.events.dispatch_in(cursor, [QueueClearedEvent(queue_id="q")])
        raise Abandon
    writer.events.dispatch(QueueClearedEvent(queue_id="q"))

    wait_for(lambda: len(reader.seen) == 1, what="the committed event")
    assert [e.seq for e in reader.queue_events("q")] == [1]


def test_a_processors_claim_and_finish_follow_the_events_it_dispatched_before_in_every_process(
    processes: Processes,
) -> None:
    api, worker = processes.start(), processes.start()
    api_queue, worker_queue = SqlSessionQueue(api.db, api.events), SqlSessionQueue(worker.db, worker.events)
    graph = {"nodes": {"a": {"id": "a", "type": "integer", "value": 1}}, "edges": []}
    [item_id] = api_queue.enqueue_batch("q", Batch.model_validate({"graph": graph}), prepend=False).item_ids

    item = worker_queue.dequeue("worker")
    # Stands in for a node's events: dispatched, and left to the writer, which waits a little for more.
    worker.events.dispatch(QueueClearedEvent(queue_id="q"))
    worker_queue.complete_queue_item(item_id, processor_id="worker")

    assert item is not None and item.item_id == item_id
    for process in (api, worker):
        wait_for(lambda p=process: len(p.queue_events("q")) == 4, what="every event")  # type: ignore[misc]
        assert [(e.seq, e.event_name, getattr(e, "status", None)) for e in process.queue_events("q")] == [
            (1, "batch_enqueued", None),
            (2, "queue_item_status_changed", "in_progress"),
            (3, "queue_cleared", None),
            (4, "queue_item_status_changed", "completed"),
        ]
    assert api.queue_events("q") == worker.queue_events("q")  # as stored and read back, or handed on at once
    [finished] = [e for e in api.queue_events("q") if isinstance(e, QueueItemStatusChangedEvent) and e.seq == 4]
    assert (finished.queue_status.completed, finished.batch_status.total, finished.queue_status.item_id) == (1, 1, None)


def test_a_payload_larger_than_a_notification_arrives(processes: Processes) -> None:
    writer, reader = processes.start(), processes.start()
    origin = "x" * 200_000  # PostgreSQL's notifications carry at most 8,000 bytes

    writer.events.dispatch(enqueued("q", "big", origin=origin))

    wait_for(lambda: len(reader.seen) == 1, what="the large event")
    [event] = reader.seen
    assert isinstance(event, BatchEnqueuedEvent) and event.origin == origin


def test_events_stored_before_a_process_started_are_not_delivered_to_it(processes: Processes) -> None:
    early = processes.start()
    early.store(QueueClearedEvent(queue_id="q"))
    late = processes.start()
    early.store(QueueClearedEvent(queue_id="q"))

    wait_for(lambda: len(late.seen) == 1 and len(early.seen) == 2, what="the events")
    assert [e.seq for e in late.queue_events("q")] == [2]


def test_the_newest_events_are_kept_and_progress_events_a_short_while(processes: Processes) -> None:
    process = processes.start(keep=5, keep_progress_s=60, prune_interval_s=0.05)
    with process.db.transaction() as cursor:
        for age_s in (120, 30):
            created = to_timestamp(datetime.now(UTC) - timedelta(seconds=age_s))
            cursor.execute(
                "INSERT INTO events (queue_id, seq, event_name, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                ("other", age_s, "invocation_progress", "{}", created),
            )
    for _ in range(8):
        process.events.dispatch(QueueClearedEvent(queue_id="q"))

    def left() -> list[tuple[str, int]]:
        with process.db.read() as cursor:
            cursor.execute("SELECT queue_id, seq FROM events ORDER BY event_id")
            return [(row["queue_id"], row["seq"]) for row in cursor.fetchall()]

    wait_for(lambda: len(left()) == 5, what="the pruning")
    assert left() == [("q", seq) for seq in range(4, 9)]
    assert len(process.queue_events("q")) == 8  # pruning drops what was delivered


def test_a_queues_stored_events_are_read_in_pages_after_a_number(processes: Processes) -> None:
    process = processes.start()
    for _ in range(5):
        process.events.dispatch(QueueClearedEvent(queue_id="q"))
    process.events.dispatch(QueueClearedEvent(queue_id="other"))
    process.events.flush()
    with process.db.transaction() as cursor:
        cursor.execute("DELETE FROM events WHERE queue_id = 'q' AND seq = 1")

    page = process.events.stored_queue_events("q", 2, 2)
    rest = process.events.stored_queue_events("q", page.events[-1].seq, 2)

    assert (page.oldest, page.last, [e.seq for e in page.events]) == (2, 5, [3, 4])
    assert [e.seq for e in rest.events] == [5]
    stored = rest.events[0]
    assert stored.event_name == "queue_cleared"
    assert QueueClearedEvent.model_validate_json(stored.payload).model_dump(exclude={"timestamp"}) == {
        "queue_id": "q",
        "seq": 5,
    }
    nothing = process.events.stored_queue_events("none", 0, 10)
    assert (nothing.oldest, nothing.last, nothing.events) == (None, 0, ())


@sqlite_only
@pytest.mark.parametrize("statement", [QUEUE_OLDEST, QUEUE_AFTER])
def test_the_replay_queries_search_the_queue_index(processes: Processes, statement: str) -> None:
    process = processes.start()
    params = ("q",) if statement == QUEUE_OLDEST else ("q", 0, 100)
    with process.db.read() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
        plan = [row["detail"] for row in cursor.fetchall()]
    assert [step for step in plan if "ix_events_queue_seq" in step and step.startswith("SEARCH")], plan
    assert not [step for step in plan if "TEMP B-TREE" in step], plan


IMAGE = {
    "image_name": "a.png",
    "image_url": "/a",
    "thumbnail_url": "/t",
    "image_origin": "internal",
    "image_category": "general",
    "width": 1,
    "height": 1,
    "is_intermediate": False,
}
