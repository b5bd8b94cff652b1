from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import _queries as psycopg_queries
from pydantic import ValidationError
from tests.database_engines import OpenDatabase, postgres_only, sqlite_only
from tests.helpers import edge, graph_json, node_of, ran_whole, wait_for

from nodeloom.app.invocations.fields import ImageField
from nodeloom.app.invocations.image import ImageBlurInvocation
from nodeloom.app.invocations.math import AddInvocation
from nodeloom.app.invocations.primitives import IntegerInvocation
from nodeloom.app.services.events.events_common import (
    BatchEnqueuedEvent,
    EventBase,
    ProcessingPausedChangedEvent,
    QueueClearedEvent,
    QueueItemsRetriedEvent,
    QueueItemStatusChangedEvent,
)
from nodeloom.app.services.events.events_database import DatabaseEventService
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.invocation_stats.invocation_stats_common import (
    GraphExecutionStatsSummary,
    InvocationStatsSummary,
    NodeExecutionStatsSummary,
)
from nodeloom.app.services.session_queue import session_queue_sql_history
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import (
    QUEUE_ITEM_STATUS,
    QUEUE_ITEM_STATUSES,
    Batch,
    BatchExistsError,
    BatchNotFoundError,
    BatchValidationError,
    ProcessorInfo,
    QueueFullError,
    SessionQueueError,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemTakenError,
    WebhookClaimant,
    WebhookDueError,
)
from nodeloom.app.services.session_queue.session_queue_sql import SqlSessionQueue
from nodeloom.app.services.session_queue.session_queue_sql_change import CACHED_LENGTH, change_one
from nodeloom.app.services.session_queue.session_queue_sql_rows import new_session_json
from nodeloom.app.services.shared.database.database_base import DatabaseBase, Dialect, Params
from nodeloom.app.services.shared.database.database_postgres import _PostgresCursor as PostgresCursor
from nodeloom.app.services.shared.database.database_postgres import to_psycopg
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator
from nodeloom.app.services.shared.graph import Graph, GraphExecutionState
from nodeloom.app.services.shared.graph_common import uuid_string
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData
from nodeloom.app.services.shared.timestamps import to_timestamp
from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary

Q = "default"
P = "processor-1"
C = "claimant-1"
"""The webhook claimant the tests record calls for: it holds no claim, so every due call is free to it."""
"""The processor the tests claim items for: never registered, so its items count as a dead process's at start-up."""


def three_nodes() -> dict[str, Any]:
    """integer `a` feeds add `sum`; integer `c` stands alone; `sum.b` takes a value."""
    return graph_json(
        [
            {"id": "a", "type": "integer", "value": 1},
            {"id": "sum", "type": "add", "b": 2},
            {"id": "c", "type": "integer", "value": 3},
        ],
        [edge("a", "value", "sum", "a")],
    )


def make_batch(data: list[list[dict[str, Any]]] | None = None, **fields: Any) -> Batch:
    return Batch.model_validate({"graph": three_nodes(), "data": data, **fields})


def datum(node: str, field: str, items: list[Any]) -> dict[str, Any]:
    return {"node_path": node, "field_name": field, "items": items}


class Recorder:
    """Every event the bus delivers; `take()` waits for those dispatched so far."""

    def __init__(self, bus: InProcessEventService) -> None:
        self._bus = bus
        self._events: list[EventBase] = []
        bus.subscribe(self._events.append)

    def take(self) -> list[EventBase]:
        self._bus.stop()
        self._bus.start()
        events, self._events[:] = list(self._events), []
        return events

    def status_changes(self) -> list[QueueItemStatusChangedEvent]:
        return [e for e in self.take() if isinstance(e, QueueItemStatusChangedEvent)]


class Env:
    def __init__(self, open_db: OpenDatabase) -> None:
        self.open_db = open_db
        self.bus = InProcessEventService()
        self.bus.start()
        self.events = Recorder(self.bus)
        self._dbs: list[DatabaseBase] = []

    def open(self, **options: Any) -> SqlSessionQueue:
        """A queue on the file, as a freshly started process would open it."""
        db = self.open_db()
        self._dbs.append(db)
        Migrator(db, MIGRATIONS).run()
        self.db = db
        return SqlSessionQueue(db=db, events=self.bus, **options)

    def close(self) -> None:
        for db in self._dbs:
            db.close()
        self.bus.stop()

    def rows(self, sql_text: str, params: Params = ()) -> list[dict[str, Any]]:
        with self.db.read() as cursor:
            cursor.execute(sql_text, params)
            return [dict(row) for row in cursor.fetchall()]


_COLUMNS: dict[Dialect, str] = {
    "sqlite": "SELECT name FROM pragma_table_info(?)",
    "postgres": "SELECT column_name AS name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = ?",
}


def columns_of(env: Env, table: str) -> set[str]:
    return {row["name"] for row in env.rows(_COLUMNS[env.db.dialect], (table,))}


@pytest.fixture
def env(open_db: OpenDatabase) -> Iterator[Env]:
    env = Env(open_db)
    yield env
    env.close()


@pytest.fixture
def queue(env: Env) -> SqlSessionQueue:
    return env.open(max_queue_size=1000)


def assert_counts_right(env: Env, queue: SqlSessionQueue) -> None:
    """The kept counts, and every status read from them, agree with a COUNT(*) of the items."""
    recount = env.rows(
        "SELECT queue_id, batch_id, status, COUNT(*) AS n FROM session_queue GROUP BY queue_id, batch_id, status"
    )
    expected: Counter[tuple[str, str, str]] = Counter()
    for row in recount:
        expected[row["queue_id"], row["batch_id"], row["status"]] += row["n"]
        expected[row["queue_id"], sql.QUEUE_TOTAL, row["status"]] += row["n"]
    kept = env.rows("SELECT queue_id, batch_id, status, n FROM session_queue_counts WHERE n <> 0")
    assert {(r["queue_id"], r["batch_id"], r["status"]): r["n"] for r in kept} == dict(expected)
    assert not env.rows("SELECT n FROM session_queue_counts WHERE n < 0")

    queues = {q for q, _, _ in expected}
    all_counts = queue.get_all_queue_counts()
    assert set(all_counts) == queues
    for queue_id in queues:
        status = queue.get_queue_status(queue_id)
        want = {s: expected[queue_id, sql.QUEUE_TOTAL, s] for s in QUEUE_ITEM_STATUSES}
        assert {s: getattr(status, s) for s in QUEUE_ITEM_STATUSES} == want == all_counts[queue_id]
        assert status.total == sum(want.values())
    for queue_id, batch_id in {(q, b) for q, b, _ in expected if b != sql.QUEUE_TOTAL}:
        batch = queue.get_batch_status(queue_id, batch_id)
        assert {s: getattr(batch, s) for s in QUEUE_ITEM_STATUSES} == {
            s: expected[queue_id, batch_id, s] for s in QUEUE_ITEM_STATUSES
        }


def run_nodes(session: GraphExecutionState, limit: int | None = None) -> None:
    """Runs up to `limit` nodes of the session (all when None), as the processor would."""
    done = 0
    while (limit is None or done < limit) and (node := session.next()) is not None:
        data = InvocationContextData(
            invocation=node, source_invocation_id=session.prepared_source_mapping[node.id], session_id=session.id
        )
        session.complete(node.id, node.invoke_internal(InvocationContext(data=data)))
        done += 1


def same(item: SessionQueueItem | None, other: SessionQueueItem) -> bool:
    """Equal but for the session: a session that has not been saved yet prepares anew, with new ids, when read."""
    return item is not None and item.model_dump(exclude={"session"}) == other.model_dump(exclude={"session"})


def values(item: SessionQueueItem) -> tuple[Any, ...]:
    graph = item.session.graph
    return (
        node_of(graph, "a", IntegerInvocation).value,
        node_of(graph, "c", IntegerInvocation).value,
        node_of(graph, "sum", AddInvocation).b,
    )


# --- enqueue --------------------------------------------------------------------------------------------------


def test_a_batch_expands_zipped_data_as_a_product_repeated_runs_times(env: Env, queue: SqlSessionQueue) -> None:
    batch = make_batch(
        [[datum("a", "value", [1, 2]), datum("c", "value", [7, 8])], [datum("sum", "b", [10, 20, 30])]],
        runs=2,
        origin="tests",
        destination="gallery",
        workflow={"name": "wf"},
        timeout=30.0,
    )

    result = queue.enqueue_batch(Q, batch, prepend=False)

    expected = [(a, c, b) for _ in range(2) for a, c in ((1, 7), (2, 8)) for b in (10, 20, 30)]
    assert (result.requested, result.enqueued, result.priority) == (12, 12, 0)
    items = queue.list_all_queue_items(Q)
    assert [item.item_id for item in items] == result.item_ids == sorted(result.item_ids)
    assert [values(item) for item in items] == expected
    for item, (a, c, b) in zip(items, expected, strict=True):
        assert [(v.node_path, v.field_name, v.value) for v in item.field_values or []] == [
            ("a", "value", a),
            ("c", "value", c),
            ("sum", "b", b),
        ]
        assert (item.status, item.batch_id, item.origin, item.destination) == (
            "pending",
            batch.batch_id,
            "tests",
            "gallery",
        )
        assert (item.workflow, item.timeout, item.attempts, item.retried_from_item_id) == (
            {"name": "wf"},
            30.0,
            0,
            None,
        )
        assert item.session_id == item.session.id
        assert item.started_at is None and item.completed_at is None
    assert len({item.session_id for item in items}) == 12
    [enqueued] = [e for e in env.events.take() if isinstance(e, BatchEnqueuedEvent)]
    assert (enqueued.batch_id, enqueued.enqueued, enqueued.requested) == (batch.batch_id, 12, 12)
    assert_counts_right(env, queue)


def test_a_batch_without_data_makes_one_session_per_run(queue: SqlSessionQueue) -> None:
    result = queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)

    items = queue.get_queue_items_by_item_ids(result.item_ids)
    assert [values(item) for item in items] == [(1, 3, 2)] * 3
    assert all(item.field_values is None for item in items)


def test_a_stored_session_is_a_fresh_session_of_the_graph_that_runs(env: Env, queue: SqlSessionQueue) -> None:
    queue.enqueue_batch(Q, make_batch([[datum("a", "value", [40])]]), prepend=False)
    [stored] = env.rows("SELECT session FROM session_queue")

    item = queue.dequeue(P)

    assert item is not None
    assert json.loads(stored["session"]).keys() == GraphExecutionState.model_fields.keys()
    fresh = GraphExecutionState(graph=item.session.graph)
    assert sorted(item.session.prepared_source_mapping.values()) == sorted(fresh.prepared_source_mapping.values())
    assert (item.session.executed, item.session.results, item.session.errors) == (set(), {}, {})
    run_nodes(item.session)
    assert ran_whole(item.session)
    sums = [
        output.model_dump()["value"]
        for prepared, output in item.session.results.items()
        if item.session.prepared_source_mapping[prepared] == "sum"
    ]
    assert sums == [42]


def test_images_in_batch_data_reach_their_node_and_the_field_values(queue: SqlSessionQueue) -> None:
    graph = graph_json([{"id": "blur", "type": "img_blur"}])
    images = [{"image_name": "a.png"}, {"image_name": "b.png"}, {"image_name": "a.png"}]
    batch = Batch.model_validate({"graph": graph, "data": [[datum("blur", "image", images)]]})

    queue.enqueue_batch(Q, batch, prepend=False)

    items = queue.list_all_queue_items(Q)
    blurred = [node_of(item.session.graph, "blur", ImageBlurInvocation).image for item in items]
    assert blurred == [ImageField(**image) for image in images]
    assert [[v.value for v in item.field_values or []] for item in items] == [[ImageField(**i)] for i in images]
    # Invalid data is the error, not the required input it would have set.
    mixed = [[datum("blur", "image", [{"image_name": "a.png"}, "a.png"])]]
    with pytest.raises(ValidationError, match="mixes item types") as refused:
        Batch.model_validate({"graph": graph, "data": mixed})
    assert "required" not in str(refused.value)


def test_each_distinct_value_is_validated_once(queue: SqlSessionQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[Any] = []
    validate = IntegerInvocation.model_validate

    def counting(cls: type[IntegerInvocation], obj: Any, *args: Any, **kwargs: Any) -> IntegerInvocation:
        checked.append(obj["value"])
        return validate(obj, *args, **kwargs)

    batch = make_batch([[datum("a", "value", [1, 1, 2, 1, 2])]], runs=4)
    monkeypatch.setattr(IntegerInvocation, "model_validate", classmethod(counting))
    result = queue.enqueue_batch(Q, batch, prepend=False)

    assert result.enqueued == 20
    assert sorted(checked) == [1, 2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([[datum("a", "value", [1, 2]), datum("c", "value", [1])]], "equal lengths"),
        ([[datum("a", "value", [1, "x"])]], "mixes item types"),
        ([[datum("a", "value", [1])], [datum("a", "value", [2])]], "more than once"),
        ([[datum("nope", "value", [1])]], "node 'nope'"),
        ([[datum("a", "nope", [1])]], "field 'nope'"),
    ],
)
def test_a_batch_that_does_not_fit_its_graph_is_refused(data: list[list[dict[str, Any]]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_batch(data)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("seven", "valid integer"), (2.5, "fractional part")],
)
def test_a_value_of_the_wrong_type_for_its_field_enqueues_nothing(
    env: Env, queue: SqlSessionQueue, value: Any, problem: str
) -> None:
    batch = make_batch([[datum("sum", "b", [1, 2])], [datum("a", "value", [value, value])]])

    with pytest.raises(BatchValidationError, match=rf"{value!r}.*field 'value' of node 'a' \(integer\).*{problem}"):
        queue.enqueue_batch(Q, batch, prepend=False)

    assert queue.is_empty(Q).is_empty
    assert not env.rows("SELECT item_id FROM session_queue")
    assert_counts_right(env, queue)


def test_an_empty_batch_id_is_refused() -> None:
    with pytest.raises(ValidationError, match="batch_id"):
        make_batch(batch_id="")


def finish_all(queue: SqlSessionQueue) -> None:
    while (item := queue.dequeue(P)) is not None:
        queue.complete_queue_item(item.item_id)


def test_only_unfinished_items_count_toward_the_queue_size(env: Env) -> None:
    queue = env.open(max_queue_size=5)
    queue.enqueue_batch(Q, make_batch(runs=5), prepend=False)
    assert queue.is_full(Q).is_full
    finish_all(queue)
    assert not queue.is_full(Q).is_full

    for _ in range(3):  # the history of 5, 10 and 15 finished items takes no room
        assert queue.enqueue_batch(Q, make_batch(runs=5), prepend=False).enqueued == 5
        assert queue.is_full(Q).is_full
        with pytest.raises(QueueFullError, match=r"Queue 'default' is full.*5 unfinished.*none of the batch's 1"):
            queue.enqueue_batch(Q, make_batch(), prepend=False)
        finish_all(queue)

    assert queue.get_queue_status(Q).completed == 20
    queue.enqueue_batch("other", make_batch(runs=5), prepend=False)  # another queue has its own room
    assert_counts_right(env, queue)


def test_a_batch_that_does_not_fit_whole_enqueues_its_first_sessions(env: Env) -> None:
    queue = env.open(max_queue_size=5)
    queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)
    env.events.take()
    batch = make_batch([[datum("a", "value", [1, 2, 3])], [datum("c", "value", [7, 8])]], workflow={"w": 1})

    result = queue.enqueue_batch(Q, batch, prepend=False)

    assert (result.requested, result.enqueued, len(result.item_ids)) == (6, 2, 2)
    items = queue.get_batch_items(Q, batch.batch_id)
    assert [(values(item)[0], values(item)[1]) for item in items] == [(1, 7), (1, 8)]  # the expansion's first two
    assert [item.item_id for item in items] == result.item_ids
    assert all(item.workflow == {"w": 1} for item in items)
    [enqueued] = [e for e in env.events.take() if isinstance(e, BatchEnqueuedEvent)]
    assert (enqueued.enqueued, enqueued.requested) == (2, 6)
    assert queue.get_batch_status(Q, batch.batch_id).pending == 2
    assert_counts_right(env, queue)


def test_all_or_nothing_enqueues_nothing_when_the_batch_does_not_fit_whole(env: Env) -> None:
    queue = env.open(max_queue_size=5)
    queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)
    batch = make_batch(runs=3)

    with pytest.raises(QueueFullError, match=r"room for 2 of the batch's 3 sessions.*all_or_nothing"):
        queue.enqueue_batch(Q, batch, prepend=False, all_or_nothing=True)

    assert queue.get_queue_status(Q).total == 3
    assert not env.rows("SELECT batch_id FROM session_queue_batches WHERE batch_id = ?", (batch.batch_id,))
    assert queue.enqueue_batch(Q, make_batch(runs=2), prepend=False, all_or_nothing=True).enqueued == 2
    assert_counts_right(env, queue)


def test_a_batch_id_the_queue_holds_is_refused_until_its_items_are_gone(env: Env, queue: SqlSessionQueue) -> None:
    first = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False)
    again = make_batch(batch_id=first.batch.batch_id)

    with pytest.raises(BatchExistsError, match=rf"already holds batch '{first.batch.batch_id}'"):
        queue.enqueue_batch(Q, again, prepend=False)

    assert queue.get_batch_status(Q, first.batch.batch_id).total == 2
    for item_id in first.item_ids:
        queue.delete_queue_item(item_id)
    assert queue.enqueue_batch(Q, again, prepend=False).enqueued == 1
    assert_counts_right(env, queue)


def test_a_workflow_is_stored_once_per_batch(env: Env, queue: SqlSessionQueue) -> None:
    workflow = {"name": "wf", "nodes": ["x"] * 100}
    with_workflow = queue.enqueue_batch(Q, make_batch(runs=4, workflow=workflow), prepend=False)
    without = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False)

    assert "workflow" not in columns_of(env, "session_queue")
    stored = env.rows("SELECT batch_id, workflow FROM session_queue_batches ORDER BY workflow NULLS FIRST")
    assert stored == [
        {"batch_id": without.batch.batch_id, "workflow": None},
        {"batch_id": with_workflow.batch.batch_id, "workflow": json.dumps(workflow)},
    ]
    assert [item.workflow for item in queue.list_all_queue_items(Q)] == [workflow] * 4 + [None] * 2
    item = queue.dequeue(P)
    assert item is not None and item.workflow == workflow
    assert queue.cancel_queue_item(item.item_id).workflow == workflow
    page = queue.list_queue_items(Q, limit=2, priority=0, cursor=item.item_id)
    assert [i.workflow for i in page.items] == [workflow] * 2


def test_batch_rows_go_with_the_last_item_of_their_batch(env: Env, queue: SqlSessionQueue) -> None:
    def batch_ids() -> set[str]:
        return {row["batch_id"] for row in env.rows("SELECT batch_id FROM session_queue_batches")}

    deleted = queue.enqueue_batch(Q, make_batch(runs=2, workflow={"w": 1}), prepend=False)
    pruned = queue.enqueue_batch(Q, make_batch(workflow={"w": 2}), prepend=False)
    cleared = queue.enqueue_batch("other", make_batch(workflow={"w": 3}), prepend=False)
    queue.cancel_by_batch_ids(Q, [pruned.batch.batch_id])

    queue.delete_queue_item(deleted.item_ids[0])
    assert batch_ids() == {deleted.batch.batch_id, pruned.batch.batch_id, cleared.batch.batch_id}
    queue.delete_queue_item(deleted.item_ids[1])
    assert batch_ids() == {pruned.batch.batch_id, cleared.batch.batch_id}
    queue.prune(Q)
    assert batch_ids() == {cleared.batch.batch_id}
    queue.clear("other")
    assert batch_ids() == set()
    assert not env.rows("SELECT * FROM session_queue_counts")
    assert_counts_right(env, queue)


def test_ids_are_never_reused_after_a_delete(queue: SqlSessionQueue) -> None:
    first = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    queue.delete_queue_item(first[-1])

    [again] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids

    assert again > first[-1]


# --- dequeue ----------------------------------------------------------------------------------------------------


def test_items_run_by_priority_then_age_across_queues_and_prepend_goes_first(env: Env, queue: SqlSessionQueue) -> None:
    first = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False)
    second = queue.enqueue_batch("other", make_batch(runs=2), prepend=False)
    urgent = queue.enqueue_batch(Q, make_batch(runs=2), prepend=True)
    more_urgent = queue.enqueue_batch("other", make_batch(), prepend=True)

    assert (urgent.priority, more_urgent.priority) == (1, 1)  # each queue's own pending items
    assert same(queue.get_next(Q), queue.get_queue_item(urgent.item_ids[0]))
    order = [item.item_id for item in iter(lambda: queue.dequeue(P), None)]
    assert order == urgent.item_ids + more_urgent.item_ids + first.item_ids + second.item_ids
    assert queue.get_next(Q) is None
    assert queue.enqueue_batch(Q, make_batch(), prepend=True).priority == 0  # nothing pending to go before
    assert_counts_right(env, queue)


def test_an_item_whose_session_no_longer_loads_fails_and_does_not_block_the_queue(
    env: Env, queue: SqlSessionQueue
) -> None:
    broken, healthy = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    with env.db.transaction() as cursor:
        cursor.execute("UPDATE session_queue SET session = ? WHERE item_id = ?", ('{"graph": 42}', broken))

    item = queue.dequeue(P)

    assert item is not None and item.item_id == healthy
    failed = env.rows("SELECT status, error_type, error_message FROM session_queue WHERE item_id = ?", (broken,))
    assert failed[0]["status"] == "failed" and failed[0]["error_type"] == "InvalidSession"
    assert "could not be loaded" in failed[0]["error_message"]
    assert_counts_right(env, queue)


def test_dequeue_marks_the_item_in_progress_and_emits_the_change(env: Env, queue: SqlSessionQueue) -> None:
    [item_id] = queue.enqueue_batch(Q, make_batch(origin="o"), prepend=False).item_ids
    env.events.take()

    item = queue.dequeue(P)

    assert item is not None and item.item_id == item_id
    assert item.status == "in_progress" and item.started_at is not None
    assert same(queue.get_current(Q), item)
    [event] = env.events.status_changes()
    assert (event.item_id, event.old_status, event.status, event.origin) == (item_id, "pending", "in_progress", "o")
    assert (event.queue_status.in_progress, event.queue_status.pending, event.queue_status.item_id) == (1, 0, item_id)
    assert (event.batch_status.in_progress, event.batch_status.total, event.batch_status.origin) == (1, 1, "o")
    item_fields = set(QueueItemStatusChangedEvent.model_fields) & set(SessionQueueItem.model_fields)
    assert event.model_dump(include=item_fields) == {
        name: value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value
        for name, value in item.model_dump(include=item_fields).items()
    }
    assert queue.dequeue(P) is None


def test_a_pause_stops_every_claim_on_the_database_until_resumed(env: Env, queue: SqlSessionQueue) -> None:
    [item_id] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    env.events.take()

    queue.set_processing_paused(True)
    queue.set_processing_paused(True)

    elsewhere = env.open()  # another process's queue, or this one's after a restart
    assert elsewhere.is_processing_paused() and queue.is_processing_paused()
    assert elsewhere.dequeue(P) is None and queue.dequeue(P) is None
    assert queue.get_queue_item(item_id).status == "pending"
    changes = [e for e in env.events.take() if isinstance(e, ProcessingPausedChangedEvent)]
    assert [e.paused for e in changes] == [True]  # told once, when it changed

    elsewhere.set_processing_paused(False)

    assert not queue.is_processing_paused()
    assert [e.paused for e in env.events.take() if isinstance(e, ProcessingPausedChangedEvent)] == [False]
    item = queue.dequeue(P)
    assert item is not None and item.item_id == item_id


def test_concurrent_dequeuers_never_take_an_item_twice(env: Env, queue: SqlSessionQueue) -> None:
    item_ids = queue.enqueue_batch(Q, make_batch(runs=200), prepend=False).item_ids
    start = threading.Barrier(8)
    taken: list[list[int]] = [[] for _ in range(8)]

    def dequeuer(mine: list[int]) -> None:
        start.wait()
        while (item := queue.dequeue(P)) is not None:
            mine.append(item.item_id)

    threads = [threading.Thread(target=dequeuer, args=(mine,)) for mine in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [item_id for mine in taken for item_id in mine]
    assert sorted(everything) == item_ids
    assert queue.get_queue_status(Q).in_progress == 200
    assert_counts_right(env, queue)


def test_claims_by_processes_of_their_own_never_take_an_item_twice(env: Env, queue: SqlSessionQueue) -> None:
    # Each dequeuer opens its own database, as a processor in another process does: nothing in this process keeps
    # their claims apart, only the database (on PostgreSQL, concurrent transactions and the claim's row lock).
    item_ids = queue.enqueue_batch(Q, make_batch(runs=200), prepend=False).item_ids
    dequeuers = [env.open() for _ in range(8)]
    start = threading.Barrier(len(dequeuers))
    taken: list[list[int]] = [[] for _ in dequeuers]

    def drain(own: SqlSessionQueue, mine: list[int]) -> None:
        start.wait()
        while (item := own.dequeue(P)) is not None:
            mine.append(item.item_id)
            own.complete_queue_item(item.item_id)

    threads = [threading.Thread(target=drain, args=pair) for pair in zip(dequeuers, taken, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [item_id for mine in taken for item_id in mine]
    assert sorted(everything) == item_ids
    assert queue.get_queue_status(Q).completed == 200
    assert_counts_right(env, queue)


@postgres_only
def test_claims_finishes_and_enqueues_storing_their_events_never_deadlock(env: Env, open_db: OpenDatabase) -> None:
    # Each process's writes lock the queue's counts before its events' number: the one statement of a claim or a
    # finish too, whatever order its parts run in.
    env.open()
    databases = [open_db() for _ in range(4)]
    queues = [SqlSessionQueue(db, DatabaseEventService(db), max_queue_size=100_000) for db in databases]
    stop = threading.Event()
    errors: list[Exception] = []

    def enqueue(queue: SqlSessionQueue) -> None:
        while not stop.is_set():
            queue.enqueue_batch(Q, make_batch(runs=2), prepend=False)

    def process(queue: SqlSessionQueue, processor_id: str) -> None:
        while not stop.is_set():
            item = queue.dequeue(processor_id)
            if item is not None:
                queue.complete_queue_item(item.item_id, processor_id=processor_id)

    def recording(work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as error:
            errors.append(error)
            stop.set()

    work: list[Callable[[], None]] = [
        lambda: enqueue(queues[0]),
        lambda: enqueue(queues[1]),
        lambda: process(queues[2], P),
        lambda: process(queues[3], "processor-2"),
    ]
    threads = [threading.Thread(target=recording, args=(w,)) for w in work]
    try:
        for thread in threads:
            thread.start()
        stop.wait(4)
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        for db in databases:
            db.close()
    assert errors == []
    queue = env.open()
    assert queue.get_queue_status(Q).completed > 0
    assert_counts_right(env, queue)


@postgres_only
def test_a_claim_takes_the_next_item_instead_of_waiting_for_one_another_claim_holds(
    env: Env, queue: SqlSessionQueue
) -> None:
    first, second = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    db = env.db
    other = env.open()
    claimed: list[SessionQueueItem | None] = []
    with db.transaction() as cursor:
        # Another processor's claim of the first item, not yet committed.
        cursor.execute(sql.DEQUEUE["postgres"], {"now": "t", "processor_id": "processor-2"})
        held = cursor.fetchone()
        assert held is not None and held["item_id"] == first
        thread = threading.Thread(target=lambda: claimed.append(other.dequeue(P)))
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the claim waited for the other claim's row lock"
    assert claimed[0] is not None and claimed[0].item_id == second


def test_the_events_of_an_item_go_out_in_the_order_of_its_changes(env: Env, queue: SqlSessionQueue) -> None:
    item_ids = queue.enqueue_batch(Q, make_batch(runs=120), prepend=False).item_ids
    env.events.take()
    start = threading.Barrier(6)

    def dequeuer() -> None:
        start.wait()
        while (item := queue.dequeue(P)) is not None:
            queue.complete_queue_item(item.item_id)

    def canceller(mine: list[int]) -> None:
        start.wait()
        for item_id in mine:
            queue.cancel_queue_item(item_id)

    threads = [threading.Thread(target=dequeuer) for _ in range(3)]
    threads += [threading.Thread(target=canceller, args=(item_ids[i::3],)) for i in range(3)]
    # Threads switch far more often than usual, so that one may commit between another's commit and dispatch.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)

    last: dict[int, str] = dict.fromkeys(item_ids, "pending")
    for event in env.events.status_changes():
        assert event.old_status == last[event.item_id], event
        last[event.item_id] = event.status
    assert {item.item_id: item.status for item in queue.list_all_queue_items(Q)} == last
    assert_counts_right(env, queue)


# --- finishing --------------------------------------------------------------------------------------------------


def test_complete_only_finishes_an_item_in_progress(env: Env, queue: SqlSessionQueue) -> None:
    first, second = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids

    assert queue.complete_queue_item(second) == "pending"
    running = queue.dequeue(P)
    assert running is not None
    env.events.take()
    assert queue.complete_queue_item(first) == "completed"
    done = queue.get_queue_item(first)

    assert done.status == "completed" and done.completed_at is not None
    [event] = env.events.status_changes()
    assert (event.old_status, event.status, event.queue_status.completed, event.queue_status.item_id) == (
        "in_progress",
        "completed",
        1,
        None,
    )
    assert queue.complete_queue_item(first) == "completed"
    assert same(queue.get_queue_item(first), done)
    assert_counts_right(env, queue)


def test_a_late_complete_after_a_cancel_leaves_the_item_canceled(env: Env, queue: SqlSessionQueue) -> None:
    queue.enqueue_batch(Q, make_batch(), prepend=False)
    item = queue.dequeue(P)
    assert item is not None

    canceled = queue.cancel_queue_item(item.item_id)
    env.events.take()
    assert queue.complete_queue_item(item.item_id) == "canceled"

    assert canceled.status == "canceled"
    assert same(queue.get_queue_item(item.item_id), canceled)
    assert same(queue.fail_queue_item(item.item_id, "E", "m", "t"), canceled)
    assert same(queue.cancel_queue_item(item.item_id), canceled)
    assert env.events.status_changes() == []
    assert_counts_right(env, queue)


def test_a_failed_item_keeps_its_error(env: Env, queue: SqlSessionQueue) -> None:
    pending, running = queue.enqueue_batch(Q, make_batch(runs=2), prepend=True).item_ids[::-1]
    queue.dequeue(P)

    failed = queue.fail_queue_item(running, "ValueError", "bad value", "Traceback ...")
    failed_pending = queue.fail_queue_item(pending, "Refused", "no", "")

    assert (failed.status, failed.error_type, failed.error_message, failed.error_traceback) == (
        "failed",
        "ValueError",
        "bad value",
        "Traceback ...",
    )
    assert failed.completed_at is not None and failed_pending.status == "failed"
    assert same(queue.get_queue_item(running), failed)
    events = env.events.status_changes()
    assert [(e.item_id, e.old_status, e.status, e.error_type) for e in events[-2:]] == [
        (running, "in_progress", "failed", "ValueError"),
        (pending, "pending", "failed", "Refused"),
    ]
    assert_counts_right(env, queue)


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.get_queue_item(999),
        lambda q: q.complete_queue_item(999),
        lambda q: q.fail_queue_item(999, "E", "m", "t"),
        lambda q: q.cancel_queue_item(999),
        lambda q: q.interrupt_queue_item(999),
        lambda q: q.delete_queue_item(999),
        lambda q: q.set_queue_item_session(999, GraphExecutionState.model_validate({"graph": three_nodes()})),
        lambda q: q.get_queue_item_stats(999),
    ],
)
def test_an_unknown_item_is_not_found(queue: SqlSessionQueue, call: Callable[[SqlSessionQueue], object]) -> None:
    with pytest.raises(SessionQueueItemNotFoundError, match="999"):
        call(queue)


# --- cancels, clear, prune, delete ------------------------------------------------------------------------------


def test_cancel_by_batch_ids_cancels_the_unfinished_items_of_those_batches(env: Env, queue: SqlSessionQueue) -> None:
    one = queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)
    two = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False)
    three = queue.enqueue_batch(Q, make_batch(runs=1), prepend=False)
    elsewhere = queue.enqueue_batch("other", make_batch(batch_id=one.batch.batch_id), prepend=False)
    running = queue.dequeue(P)
    assert running is not None
    queue.complete_queue_item(running.item_id)
    queue.dequeue(P)
    env.events.take()

    result = queue.cancel_by_batch_ids(Q, [one.batch.batch_id, two.batch.batch_id, one.batch.batch_id, "unknown"])

    assert result.canceled == 4
    events = env.events.status_changes()
    assert sorted(e.item_id for e in events) == one.item_ids[1:] + two.item_ids
    assert {e.status for e in events} == {"canceled"}
    assert {e.old_status for e in events} == {"pending", "in_progress"}
    assert all(e.queue_status.canceled == 4 for e in events)
    assert queue.get_queue_item(one.item_ids[0]).status == "completed"
    assert queue.get_queue_item(three.item_ids[0]).status == "pending"
    assert queue.get_queue_item(elsewhere.item_ids[0]).status == "pending"
    assert_counts_right(env, queue)


def test_cancel_by_queue_id_cancels_every_unfinished_item_of_the_queue(env: Env, queue: SqlSessionQueue) -> None:
    mine = queue.enqueue_batch(Q, make_batch(runs=3), prepend=False).item_ids
    other = queue.enqueue_batch("other", make_batch(runs=2), prepend=False).item_ids
    queue.dequeue(P)
    env.events.take()

    assert queue.cancel_by_queue_id(Q).canceled == 3

    assert sorted(e.item_id for e in env.events.status_changes()) == mine
    assert [item.status for item in queue.get_queue_items_by_item_ids(other)] == ["pending", "pending"]
    assert queue.cancel_by_queue_id(Q).canceled == 0
    assert_counts_right(env, queue)


def test_cancel_all_except_current_leaves_the_item_in_progress(env: Env, queue: SqlSessionQueue) -> None:
    first, *rest = queue.enqueue_batch(Q, make_batch(runs=4), prepend=False).item_ids
    queue.dequeue(P)
    env.events.take()

    assert queue.cancel_all_except_current(Q).canceled == 3

    assert sorted(e.item_id for e in env.events.status_changes()) == rest
    current = queue.get_current(Q)
    assert current is not None and current.item_id == first
    assert_counts_right(env, queue)


def test_clear_cancels_the_item_in_progress_before_deleting_everything(env: Env, queue: SqlSessionQueue) -> None:
    queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)
    kept = queue.enqueue_batch("other", make_batch(), prepend=False).item_ids
    running = queue.dequeue(P)
    assert running is not None and running.queue_id == Q
    env.events.take()

    assert queue.clear(Q).deleted == 3

    changed, cleared = env.events.take()
    assert isinstance(changed, QueueItemStatusChangedEvent) and isinstance(cleared, QueueClearedEvent)
    assert (changed.item_id, changed.old_status, changed.status) == (running.item_id, "in_progress", "canceled")
    assert cleared.queue_id == Q
    assert queue.is_empty(Q).is_empty and queue.get_queue_status(Q).total == 0
    assert queue.get_queue_item_ids("other") == kept
    assert Q not in queue.get_all_queue_counts()
    assert_counts_right(env, queue)


@postgres_only
def test_clear_takes_an_item_that_finished_while_it_ran(
    env: Env, queue: SqlSessionQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)
    processor = env.open()
    running = processor.dequeue(P)
    assert running is not None
    execute = PostgresCursor.execute

    def finish_before_the_running_are_read(cursor: PostgresCursor, text: str, params: Params = ()) -> None:
        # After the clear has deleted the items not running: its processor finishes the one that ran.
        if text == sql.SELECT_IN_PROGRESS:
            finishing = threading.Thread(
                target=processor.complete_queue_item, args=(running.item_id,), kwargs={"processor_id": P}
            )
            finishing.start()
            finishing.join(10)
        execute(cursor, text, params)

    monkeypatch.setattr(PostgresCursor, "execute", finish_before_the_running_are_read)
    assert queue.clear(Q).deleted == 3
    monkeypatch.undo()

    assert queue.list_all_queue_items(Q) == []
    assert_counts_right(env, queue)


@postgres_only
def test_a_delete_cancels_an_item_a_processor_claimed_while_it_ran(
    env: Env, queue: SqlSessionQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    [item_id] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    processor = env.open()
    env.events.take()
    execute = PostgresCursor.execute

    def claim_before_the_cancel(cursor: PostgresCursor, text: str, params: Params = ()) -> None:
        if text == sql.SET_STATUS[False] and processor.get_queue_item(item_id).status == "pending":
            claiming = threading.Thread(target=processor.dequeue, args=(P,))
            claiming.start()
            claiming.join(10)
        execute(cursor, text, params)

    monkeypatch.setattr(PostgresCursor, "execute", claim_before_the_cancel)
    queue.delete_queue_item(item_id)
    monkeypatch.undo()

    # The processor hears the cancel of the item it runs, so it stops rather than run a deleted item to its end.
    assert [(e.item_id, e.status) for e in env.events.status_changes()] == [
        (item_id, "in_progress"),
        (item_id, "canceled"),
    ]
    with pytest.raises(SessionQueueItemNotFoundError):
        queue.get_queue_item(item_id)
    assert_counts_right(env, queue)


def test_prune_deletes_only_finished_items(env: Env, queue: SqlSessionQueue) -> None:
    done, failed, canceled, running, waiting = queue.enqueue_batch(Q, make_batch(runs=5), prepend=False).item_ids
    for _ in range(4):
        queue.dequeue(P)
    queue.complete_queue_item(done)
    queue.fail_queue_item(failed, "E", "m", "t")
    queue.cancel_queue_item(canceled)
    env.events.take()

    assert queue.prune(Q).deleted == 3

    assert queue.get_queue_item_ids(Q, "ASC") == [running, waiting]
    assert env.events.take() == []
    assert_counts_right(env, queue)


def test_delete_cancels_an_unfinished_item_first(env: Env, queue: SqlSessionQueue) -> None:
    result = queue.enqueue_batch(Q, make_batch(runs=3), prepend=False)
    running, waiting, finished = result.item_ids
    queue.dequeue(P)
    queue.dequeue(P)
    queue.complete_queue_item(waiting)
    queue.dequeue(P)
    queue.cancel_queue_item(finished)
    env.events.take()

    queue.delete_queue_item(running)
    queue.delete_queue_item(finished)

    [event] = env.events.status_changes()
    assert (event.item_id, event.old_status, event.status) == (running, "in_progress", "canceled")
    assert queue.get_queue_item_ids(Q) == [waiting]
    assert_counts_right(env, queue)
    queue.delete_queue_item(waiting)
    with pytest.raises(BatchNotFoundError):
        queue.get_batch_status(Q, result.batch.batch_id)
    assert queue.get_all_queue_counts() == {}
    assert not env.rows("SELECT n FROM session_queue_counts")
    assert_counts_right(env, queue)


# --- retry ------------------------------------------------------------------------------------------------------


def test_retry_enqueues_a_fresh_copy_of_each_failed_or_canceled_item(env: Env, queue: SqlSessionQueue) -> None:
    batch = make_batch([[datum("a", "value", [5, 6, 7, 8])]], origin="o", destination="d", workflow={"w": 1})
    failed, canceled, completed, pending = queue.enqueue_batch(Q, batch, prepend=True).item_ids
    item = queue.dequeue(P)
    assert item is not None and item.item_id == failed
    run_nodes(item.session, limit=1)
    queue.set_queue_item_session(failed, item.session)
    queue.fail_queue_item(failed, "E", "m", "t")
    queue.cancel_queue_item(canceled)
    queue.dequeue(P)
    queue.complete_queue_item(completed)
    env.events.take()

    result = queue.retry_items_by_id(Q, [completed, failed, pending, canceled, failed, 999])

    assert result.retried_item_ids == [failed, canceled]
    copies = [item for item in queue.list_all_queue_items(Q) if item.retried_from_item_id is not None]
    originals = queue.get_queue_items_by_item_ids([failed, canceled])
    for copy, original in zip(copies, originals, strict=True):
        assert copy.retried_from_item_id == original.item_id
        assert (copy.status, copy.batch_id, copy.priority) == ("pending", original.batch_id, original.priority)
        assert (copy.origin, copy.destination, copy.workflow) == ("o", "d", {"w": 1})
        assert copy.field_values == original.field_values
        assert copy.session.graph.model_dump() == original.session.graph.model_dump()
        assert copy.session_id != original.session_id and copy.session.executed == set()
        assert copy.error_type is None and copy.attempts == 0
    assert [values(copy)[0] for copy in copies] == [5, 6]
    events = env.events.take()
    changes = [e for e in events if isinstance(e, QueueItemStatusChangedEvent)]
    assert [(e.item_id, e.old_status, e.status) for e in changes] == [(c.item_id, None, "pending") for c in copies]
    assert changes[-1].batch_status.pending == 3
    [retried_event] = [e for e in events if isinstance(e, QueueItemsRetriedEvent)]
    assert retried_event.retried_item_ids == [failed, canceled]
    assert queue.retry_items_by_id("other", [failed]).retried_item_ids == []
    assert_counts_right(env, queue)


def waiting_for_a_lock(env: Env) -> int:
    """How many transactions on the test's PostgreSQL database wait for a row lock."""
    rows = env.rows(
        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return int(rows[0]["n"])


@contextmanager
def retry_held_at_its_count(env: Env, queue: SqlSessionQueue, item_id: int) -> Iterator[list[list[int]]]:
    """Retries `item_id` on a thread held, inside the block, where it counts its new item: another connection holds
    that row, so the retry's item is inserted and not yet committed. The retried ids, once the thread has ended."""
    blocker = env.open_db()
    retried: list[list[int]] = []
    thread = threading.Thread(target=lambda: retried.append(queue.retry_items_by_id(Q, [item_id]).retried_item_ids))
    try:
        with blocker.transaction() as cursor:
            cursor.execute(
                "SELECT n FROM session_queue_counts WHERE queue_id = ? AND batch_id = ? AND status = 'pending' "
                "FOR UPDATE",
                (Q, sql.QUEUE_TOTAL),
            )
            thread.start()
            wait_for(lambda: waiting_for_a_lock(env) == 1, what="the retry waiting for the count row")
            yield retried
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        blocker.close()


@postgres_only
def test_a_retry_racing_the_delete_of_its_batch_last_item_keeps_the_batch_row(env: Env, queue: SqlSessionQueue) -> None:
    workflow = {"w": "kept"}
    batch = queue.enqueue_batch(Q, make_batch(workflow=workflow), prepend=False).batch
    [original] = queue.get_queue_item_ids(Q)
    queue.enqueue_batch(Q, make_batch(), prepend=False)  # a pending item: the queue's pending count has a row
    queue.cancel_queue_item(original)
    other = env.open()  # another process on the same database
    with retry_held_at_its_count(env, queue, original) as retried:
        other.delete_queue_item(original)

    assert retried == [[original]]
    [copy] = [item for item in queue.list_all_queue_items(Q) if item.retried_from_item_id == original]
    assert (copy.batch_id, copy.workflow) == (batch.batch_id, workflow)
    assert env.rows("SELECT workflow FROM session_queue_batches WHERE batch_id = ?", (batch.batch_id,)) == [
        {"workflow": json.dumps(workflow)}
    ]
    with pytest.raises(BatchExistsError):
        queue.enqueue_batch(Q, batch, prepend=False)
    assert_counts_right(env, queue)


def test_a_new_item_stores_the_session_as_graph_execution_state_writes_an_unstarted_one(
    env: Env, queue: SqlSessionQueue
) -> None:
    enqueued = queue.enqueue_batch(Q, make_batch([[datum("a", "value", [5])]]), prepend=False).item_ids[0]
    item = queue.dequeue(P)
    assert item is not None
    queue.fail_queue_item(item.item_id, "E", "m", "t")
    queue.retry_items_by_id(Q, [enqueued])
    [retried] = [copy.item_id for copy in queue.list_all_queue_items(Q) if copy.retried_from_item_id == enqueued]

    for item_id in (enqueued, retried):
        [row] = env.rows("SELECT session_id, session FROM session_queue WHERE item_id = ?", (item_id,))
        graph = Graph.model_validate(json.loads(row["session"])["graph"])
        unstarted = GraphExecutionState(id=row["session_id"], graph=graph)
        # The execution graph's id is made when the session is loaded.
        assert json.loads(row["session"]) == unstarted.model_dump(mode="json", exclude={"execution_graph": {"id"}})
        assert graph.nodes["a"].model_dump()["value"] == 5


# --- sessions, stats, recovery ----------------------------------------------------------------------------------


def test_a_saved_session_survives_a_restart(env: Env, queue: SqlSessionQueue) -> None:
    queue.enqueue_batch(Q, make_batch(), prepend=False)
    item = queue.dequeue(P)
    assert item is not None
    run_nodes(item.session, limit=2)
    queue.set_queue_item_session(item.item_id, item.session)
    env.db.close()

    reopened = env.open().get_queue_item(item.item_id)

    assert reopened.session.executed_history == item.session.executed_history
    assert reopened.session.results == item.session.results
    assert reopened.updated_at >= item.updated_at


def a_summary() -> InvocationStatsSummary:
    return InvocationStatsSummary(
        graph_stats=GraphExecutionStatsSummary("s", 0.5, 0.6, 1.0, 0.1),
        model_cache_stats=ModelCacheStatsSummary(cache_hits=2),
        node_stats=[NodeExecutionStatsSummary("add", 1, 0.5, 0.0)],
        vram_usage_gb=None,
    )


def test_stats_are_kept_with_the_item(queue: SqlSessionQueue) -> None:
    [item_id] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    stats = a_summary()

    assert queue.get_queue_item_stats(item_id) is None
    queue.set_queue_item_stats(item_id, stats)

    assert queue.get_queue_item_stats(item_id) == stats.as_dict()


EndItem = Callable[[SqlSessionQueue, int, GraphExecutionState, InvocationStatsSummary, str | None], object]


@pytest.mark.parametrize("by", [P, None], ids=["by its processor", "by no processor"])
@pytest.mark.parametrize(
    ("end", "status"),
    [
        (lambda q, i, session, stats, by: q.complete_queue_item(i, session, stats, by), "completed"),
        (lambda q, i, session, stats, by: q.fail_queue_item(i, "Err", "broke", "", session, stats, by), "failed"),
        (lambda q, i, session, stats, by: q.cancel_queue_item(i, session, stats, by), "canceled"),
        (lambda q, i, session, stats, by: q.interrupt_queue_item(i, session, stats, by), "failed"),
    ],
    ids=["complete", "fail", "cancel", "interrupt"],
)
def test_an_item_ends_with_its_session_and_stats(
    env: Env, queue: SqlSessionQueue, end: EndItem, status: str, by: str | None
) -> None:
    queue.enqueue_batch(Q, make_batch(), prepend=False)
    item = queue.dequeue(P)
    assert item is not None
    run_nodes(item.session, limit=1)
    env.events.take()

    end(queue, item.item_id, item.session, a_summary(), by)

    stored = queue.get_queue_item(item.item_id)
    assert stored.status == status
    assert stored.session.executed_history == item.session.executed_history
    assert queue.get_queue_item_stats(item.item_id) == a_summary().as_dict()
    [event] = env.events.status_changes()
    assert (event.old_status, event.status) == ("in_progress", status)
    assert_counts_right(env, queue)


def test_the_status_events_of_claims_and_finishes_tell_the_item_and_the_counts_after_each(
    env: Env, queue: SqlSessionQueue
) -> None:
    batch = make_batch(runs=3, origin="tests", destination="gallery")
    first, second, _ = queue.enqueue_batch(Q, batch, prepend=False).item_ids
    queue.enqueue_batch(Q, make_batch(), prepend=False)  # counted in the queue's status, not in the batch's
    env.events.take()
    expected: list[dict[str, Any]] = []

    def expect(item_id: int, old_status: QUEUE_ITEM_STATUS) -> None:
        item = queue.get_queue_item(item_id).model_dump(include=set(QueueItemStatusChangedEvent.model_fields))
        fields = {
            name: value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value
            for name, value in item.items()
        }
        event = QueueItemStatusChangedEvent(
            **fields,
            old_status=old_status,
            batch_status=queue.get_batch_status(Q, batch.batch_id),
            queue_status=queue.get_queue_status(Q),
        )
        expected.append(event.model_dump(exclude={"timestamp", "seq"}))

    assert queue.dequeue(P) is not None
    expect(first, "pending")
    assert queue.dequeue("processor-2") is not None
    expect(second, "pending")  # the queue's current item is still the first
    # Quotes, a newline and non-ASCII text in the event's JSON, wherever it is built.
    queue.fail_queue_item(first, "ValueError", 'a "bad" value\nnaïve ✓', "Traceback: …", processor_id=P)
    expect(first, "in_progress")  # the current item is now the second
    queue.complete_queue_item(second, processor_id="processor-2")
    expect(second, "in_progress")  # none is current

    events = env.events.status_changes()
    assert [event.model_dump(exclude={"timestamp", "seq"}) for event in events] == expected
    assert all(abs(event.timestamp - time.time()) < 60 for event in events)
    assert_counts_right(env, queue)


def test_a_canceled_item_still_takes_the_session_and_stats_of_its_run(env: Env, queue: SqlSessionQueue) -> None:
    queue.enqueue_batch(Q, make_batch(), prepend=False)
    item = queue.dequeue(P)
    assert item is not None
    queue.cancel_queue_item(item.item_id)  # the user's cancel, while the node runs
    run_nodes(item.session, limit=1)
    env.events.take()

    queue.cancel_queue_item(item.item_id, item.session, a_summary())  # the processor's, once the node stopped

    stored = queue.get_queue_item(item.item_id)
    assert stored.status == "canceled" and stored.session.executed_history == item.session.executed_history
    assert queue.get_queue_item_stats(item.item_id) == a_summary().as_dict()
    assert env.events.status_changes() == []


def interrupt_by_restart(env: Env, **options: Any) -> tuple[SqlSessionQueue, list[int]]:
    env.db.close()
    queue = env.open(**options)
    return queue, queue.recover_interrupted()


def test_an_item_left_in_progress_is_failed_at_start_up(env: Env, queue: SqlSessionQueue) -> None:
    running, waiting = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    queue.dequeue(P)
    env.events.take()

    queue, recovered = interrupt_by_restart(env)

    assert recovered == [running]
    item = queue.get_queue_item(running)
    assert (item.status, item.error_type) == ("failed", "Interrupted")
    assert "processor-1 stopped" in (item.error_message or "") and item.completed_at is not None
    assert queue.get_queue_item(waiting).status == "pending"
    [event] = env.events.status_changes()
    assert (event.item_id, event.old_status, event.status) == (running, "in_progress", "failed")
    assert queue.recover_interrupted() == []
    assert_counts_right(env, queue)


def test_a_requeued_item_keeps_its_place_and_its_saved_session_until_the_attempt_limit(
    env: Env, queue: SqlSessionQueue
) -> None:
    options = {"requeue_interrupted": True, "max_attempts": 3}
    crashing, waiting = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    queue = env.open(**options)
    item = queue.dequeue(P)
    assert item is not None
    run_nodes(item.session, limit=1)
    queue.set_queue_item_session(crashing, item.session)

    for attempt in (1, 2):
        queue, recovered = interrupt_by_restart(env, **options)
        assert recovered == [crashing]
        requeued = queue.get_queue_item(crashing)
        assert (requeued.status, requeued.attempts, requeued.priority) == ("pending", attempt, 0)
        assert requeued.session.executed_history == item.session.executed_history
        again = queue.dequeue(P)
        assert again is not None and again.item_id == crashing  # before the item enqueued after it
    env.events.take()

    queue, recovered = interrupt_by_restart(env, **options)

    failed = queue.get_queue_item(crashing)
    assert (recovered, failed.status, failed.error_type) == ([crashing], "failed", "Interrupted")
    assert "interrupted 3 times" in (failed.error_message or "")
    assert [(e.old_status, e.status) for e in env.events.status_changes()] == [("in_progress", "failed")]
    assert queue.get_queue_item(waiting).status == "pending"
    assert_counts_right(env, queue)


def test_interrupt_fails_or_requeues_the_item_in_progress(env: Env, queue: SqlSessionQueue) -> None:
    first, second, waiting = queue.enqueue_batch(Q, make_batch(runs=3), prepend=False).item_ids
    queue.dequeue(P)

    assert queue.interrupt_queue_item(first) == "failed"
    assert queue.interrupt_queue_item(waiting) == "pending"  # not in progress: left alone

    requeuing = env.open(requeue_interrupted=True)
    requeuing.dequeue(P)
    assert requeuing.interrupt_queue_item(second) == "pending"
    assert requeuing.get_queue_item(second).attempts == 1
    assert_counts_right(env, requeuing)


# --- processors and leases ---------------------------------------------------------------------------------------


def processor(processor_id: str, pid: int | None = None, started_at: datetime | None = None) -> ProcessorInfo:
    return ProcessorInfo(
        processor_id=processor_id,
        host=socket.gethostname(),
        pid=os.getpid() if pid is None else pid,
        devices=["cpu"],
        started_at=started_at or datetime.now(UTC),
    )


def silence(env: Env, processor_id: str, seconds: float) -> None:
    """Makes the processor's last heartbeat `seconds` old, as if it had stopped beating then."""
    old = to_timestamp(datetime.now(UTC) - timedelta(seconds=seconds))
    with env.db.transaction() as cursor:
        cursor.execute("UPDATE session_processors SET heartbeat_at = ? WHERE processor_id = ?", (old, processor_id))


def test_a_claim_records_its_processor_and_the_listing_shows_what_each_runs(env: Env, queue: SqlSessionQueue) -> None:
    first, _ = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    busy, idle = processor("busy"), processor("idle")
    queue.heartbeat(busy)
    queue.heartbeat(idle)

    item = queue.dequeue("busy")
    assert item is not None and (item.item_id, item.processor_id) == (first, "busy")
    queue.heartbeat(busy, first, "sum")

    listed = {p.processor_id: p for p in queue.list_processors()}
    assert set(listed) == {"busy", "idle"}
    assert listed["busy"].is_alive and listed["busy"].seconds_since_heartbeat < 5
    assert (listed["busy"].host, listed["busy"].pid, listed["busy"].devices) == (busy.host, busy.pid, ["cpu"])
    [held] = listed["busy"].items
    assert (held.item_id, held.session_id, held.node_id) == (first, item.session_id, "sum")
    assert listed["idle"].items == []

    queue.complete_queue_item(first)
    queue.deregister_processor("idle")
    assert [(p.processor_id, p.items) for p in queue.list_processors()] == [("busy", [])]


@pytest.mark.parametrize("requeue", [True, False])
def test_an_item_whose_processor_went_silent_past_its_lease_is_recovered_by_a_live_one(env: Env, requeue: bool) -> None:
    queue = env.open(lease_s=30, requeue_interrupted=requeue, max_attempts=2)
    item_id, waiting = queue.enqueue_batch(Q, make_batch(runs=2), prepend=False).item_ids
    queue.heartbeat(processor("silent"))
    queue.heartbeat(processor("live"))
    assert queue.dequeue("silent") is not None
    silence(env, "silent", 29)
    assert queue.recover_interrupted() == []  # within its lease
    env.events.take()

    silence(env, "silent", 31)
    assert queue.recover_interrupted() == [item_id]

    item = queue.get_queue_item(item_id)
    [event] = env.events.status_changes()
    assert (event.item_id, event.old_status, event.status) == (item_id, "in_progress", item.status)
    assert [p.is_alive for p in queue.list_processors()] == [False, True]
    if not requeue:
        assert (item.status, item.error_type) == ("failed", "Interrupted")
        assert "processor silent stopped, or went silent for longer than its lease (30 s)" in (item.error_message or "")
        return
    assert (item.status, item.attempts) == ("pending", 1)
    again = queue.dequeue("live")
    assert again is not None and again.item_id == item_id  # before the item enqueued after it
    assert queue.recover_interrupted() == []  # the live one holds it now
    silence(env, "live", 31)
    assert queue.recover_interrupted() == [item_id]
    failed = queue.get_queue_item(item_id)
    assert (failed.status, failed.error_type) == ("failed", "Interrupted")
    assert "interrupted 2 times" in (failed.error_message or "")
    assert queue.get_queue_item(waiting).status == "pending"
    assert_counts_right(env, queue)


LATE_WRITES: dict[str, Callable[[SqlSessionQueue, SessionQueueItem], object]] = {
    "complete": lambda queue, item: queue.complete_queue_item(item.item_id, item.session, a_summary(), "lapsed"),
    "fail": lambda queue, item: queue.fail_queue_item(
        item.item_id, "NodeError", "broke", "", item.session, a_summary(), "lapsed"
    ),
    "cancel": lambda queue, item: queue.cancel_queue_item(item.item_id, item.session, a_summary(), "lapsed"),
    "interrupt": lambda queue, item: queue.interrupt_queue_item(item.item_id, item.session, a_summary(), "lapsed"),
    "save session": lambda queue, item: queue.set_queue_item_session(item.item_id, item.session, "lapsed"),
}


@pytest.mark.parametrize("requeue", [True, False])
@pytest.mark.parametrize("write", LATE_WRITES)
def test_a_processor_whose_item_was_taken_changes_nothing_of_it(env: Env, requeue: bool, write: str) -> None:
    lapsed = env.open(lease_s=30, requeue_interrupted=requeue)
    live = env.open(lease_s=30, requeue_interrupted=requeue)  # another process
    lapsed.enqueue_batch(Q, make_batch(), prepend=False)
    lapsed.heartbeat(processor("lapsed"))
    live.heartbeat(processor("live"))
    late = lapsed.dequeue("lapsed")
    assert late is not None
    silence(env, "lapsed", 31)
    assert live.recover_interrupted() == [late.item_id]
    if requeue:
        again = live.dequeue("live")
        assert again is not None and again.item_id == late.item_id
    taken = live.get_queue_item(late.item_id)
    run_nodes(late.session)  # the lapsed processor ran on, not knowing
    env.events.take()

    with pytest.raises(SessionQueueItemTakenError, match=f"Queue item {late.item_id} was taken from processor lapsed"):
        LATE_WRITES[write](lapsed, late)

    assert same(live.get_queue_item(late.item_id), taken)
    assert live.get_queue_item(late.item_id).session.executed_history == []
    assert live.get_queue_item_stats(late.item_id) is None
    assert env.events.status_changes() == []
    if requeue:
        assert live.complete_queue_item(late.item_id, processor_id="live") == "completed"
    assert_counts_right(env, live)


def ended_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_start_up_recovery_leaves_the_items_of_live_processors_alone(env: Env, queue: SqlSessionQueue) -> None:
    item_ids = queue.enqueue_batch(Q, make_batch(runs=5), prepend=False).item_ids
    before_this_process = datetime.now(UTC) - timedelta(days=1)
    holders = {
        "live": processor("live"),  # this process's, beating: another processor of a worker that runs on
        "ended": processor("ended", pid=ended_pid()),  # on this host, its process has ended
        "earlier": processor("earlier", started_at=before_this_process),  # an earlier process with this pid
        "elsewhere": processor("elsewhere", pid=1, started_at=before_this_process).model_copy(
            update={"host": "another-host"}
        ),  # on another machine, beating: judged by its lease only
    }
    for info in holders.values():
        queue.heartbeat(info)
    held = {name: queue.dequeue(name) for name in [*holders, "unregistered"]}
    ids = {name: item.item_id for name, item in held.items() if item is not None}

    restarted = env.open()
    recovered = restarted.recover_interrupted()

    assert recovered == sorted([ids["ended"], ids["earlier"], ids["unregistered"]])
    for name in ("live", "elsewhere"):
        item = restarted.get_queue_item(ids[name])
        assert (item.status, item.processor_id) == ("in_progress", name)
    assert {p.processor_id for p in restarted.list_processors()} == {"live", "elsewhere"}
    assert sorted(ids.values()) == item_ids
    assert_counts_right(env, restarted)


def test_concurrent_sweeps_recover_each_orphan_once(env: Env, queue: SqlSessionQueue) -> None:
    # Each sweeper opens its own database, as the processors of other workers do.
    options = {"requeue_interrupted": True, "max_attempts": 5}
    queue = env.open(**options)
    item_ids = queue.enqueue_batch(Q, make_batch(runs=60), prepend=False).item_ids
    queue.heartbeat(processor("silent"))
    while queue.dequeue("silent") is not None:
        pass
    silence(env, "silent", 3600)
    sweepers = [env.open(**options) for _ in range(6)]
    start = threading.Barrier(len(sweepers))
    recovered: list[list[int]] = [[] for _ in sweepers]

    def sweep(own: SqlSessionQueue, mine: list[int]) -> None:
        start.wait()
        mine += own.recover_interrupted()

    threads = [threading.Thread(target=sweep, args=pair) for pair in zip(sweepers, recovered, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(item_id for mine in recovered for item_id in mine) == item_ids
    assert {item.attempts for item in queue.list_all_queue_items(Q)} == {1}
    assert queue.get_queue_status(Q).pending == 60
    assert_counts_right(env, queue)


# --- history ----------------------------------------------------------------------------------------------------


def run_one_item_batches(queue: SqlSessionQueue, count: int, **fields: Any) -> list[int]:
    """Enqueues and completes `count` one-item batches, one after the other; their item ids."""
    item_ids = []
    for _ in range(count):
        [item_id] = queue.enqueue_batch(Q, make_batch(**fields), prepend=False).item_ids
        finish_all(queue)
        item_ids.append(item_id)
    return item_ids


def history(env: Env) -> list[int]:
    return [row["item_id"] for row in env.rows("SELECT item_id FROM session_queue ORDER BY item_id")]


def test_the_oldest_finished_items_past_the_history_limit_are_pruned(env: Env) -> None:
    queue = env.open(max_history=3)

    item_ids = run_one_item_batches(queue, 10, workflow={"w": 1})

    assert history(env) == item_ids[-3:]
    assert len(env.rows("SELECT batch_id FROM session_queue_batches")) == 3
    assert len(env.rows("SELECT batch_id FROM session_queue_counts")) <= 3 * 3 + 3  # batches' and the queue's
    last = env.events.status_changes()[-1]
    assert (last.item_id, last.status, last.queue_status.completed) == (item_ids[-1], "completed", 3)
    assert_counts_right(env, queue)


def test_a_large_history_is_pruned_in_steps_and_stays_near_its_limit(env: Env) -> None:
    queue = env.open(max_history=200)  # pruned each 2 finishes, down to 200

    run_one_item_batches(queue, 300)

    assert 200 <= len(history(env)) <= 202
    assert_counts_right(env, queue)


def test_pruning_keeps_every_item_of_a_batch_that_still_has_items_to_run(env: Env) -> None:
    queue = env.open(max_history=2)
    running = queue.enqueue_batch(Q, make_batch(runs=5), prepend=False).item_ids
    for _ in range(4):
        item = queue.dequeue(P)
        assert item is not None
        queue.complete_queue_item(item.item_id)
    assert history(env) == running  # four finished, one pending: none pruned

    [alone] = queue.enqueue_batch(Q, make_batch(), prepend=True).item_ids
    item = queue.dequeue(P)
    assert item is not None and item.item_id == alone
    queue.complete_queue_item(alone)
    assert history(env) == running  # the newest went, as the older ones have to stay

    finish_all(queue)
    assert history(env) == running[-2:]
    assert_counts_right(env, queue)


@postgres_only
def test_pruning_leaves_the_finished_items_of_a_batch_a_retry_in_another_process_runs_again(env: Env) -> None:
    queue = env.open(max_history=1)
    [original] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    queue.cancel_queue_item(original)
    [finishing] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    other = env.open(max_history=1)  # another process on the same database
    item = other.dequeue(P)
    assert item is not None and item.item_id == finishing
    # The other process finishes an item while the retry is held, which prunes the history past its limit.
    with retry_held_at_its_count(env, queue, original) as retried:
        finisher = threading.Thread(target=lambda: other.complete_queue_item(finishing, processor_id=P))
        finisher.start()
        wait_for(
            lambda: not finisher.is_alive() or waiting_for_a_lock(env) == 2,
            what="the finish to commit, or to wait for the retry",
        )
        # It prunes around the batch the retry holds, and waits for nothing.
        assert not finisher.is_alive()
    finisher.join(timeout=10)

    assert retried == [[original]]
    assert queue.get_queue_item(finishing).status == "completed"
    [copy] = [item for item in queue.list_all_queue_items(Q) if item.retried_from_item_id == original]
    assert history(env) == [original, finishing, copy.item_id]  # the original's batch runs again: kept
    assert_counts_right(env, queue)
    finish_all(queue)
    assert history(env) == [copy.item_id]
    assert_counts_right(env, queue)


def test_pruning_keeps_an_item_until_its_webhook_is_done(env: Env) -> None:
    queue = env.open(max_history=1)
    url = "http://example.com/hook"

    hooked = run_one_item_batches(queue, 3, callback_url=url)

    assert history(env) == hooked
    assert queue.get_webhooks_due() == hooked
    queue.set_webhook_done(hooked[0], delivered=True, claimant=C)
    queue.set_webhook_done(hooked[1], delivered=False, claimant=C)
    assert queue.get_webhooks_due() == [hooked[2]]
    states = env.rows("SELECT webhook_state FROM session_queue ORDER BY item_id")
    assert [row["webhook_state"] for row in states] == ["delivered", "given_up", "pending"]
    run_one_item_batches(queue, 1)
    assert history(env) == [hooked[2]]  # the limit of 1 is taken by the item that has to stay

    assert queue.prune(Q).deleted == 0  # the manual prune keeps it too
    queue.set_webhook_done(hooked[2], delivered=True, claimant=C)
    queue.set_webhook_done(hooked[2], delivered=False, claimant=C)  # done already: left as it is
    assert env.rows("SELECT webhook_state FROM session_queue") == [{"webhook_state": "delivered"}]
    assert queue.prune(Q).deleted == 1
    assert_counts_right(env, queue)


def test_clear_and_delete_keep_an_item_until_its_webhook_is_done(env: Env) -> None:
    queue = env.open()
    url = "http://example.com/hook"
    done, due = run_one_item_batches(queue, 2, callback_url=url)
    queue.set_webhook_done(done, delivered=True, claimant=C)
    [running] = queue.enqueue_batch(Q, make_batch(callback_url=url), prepend=False).item_ids
    assert queue.dequeue(P) is not None
    [waiting] = queue.enqueue_batch(Q, make_batch(callback_url=url), prepend=False).item_ids

    with pytest.raises(WebhookDueError, match=rf"Queue item {due} .*webhook .*still to be called"):
        queue.delete_queue_item(due)
    assert history(env) == [done, due, running, waiting]

    # The item in progress is canceled, which makes its call due: it stays with the one due already.
    assert queue.clear(Q).deleted == 2
    assert history(env) == [due, running]
    assert queue.get_webhooks_due() == [due, running]
    assert queue.get_queue_item(running).status == "canceled"

    queue.set_webhook_done(due, delivered=True, claimant=C)
    queue.delete_queue_item(due)
    queue.set_webhook_done(running, delivered=False, claimant=C)
    assert queue.clear(Q).deleted == 1
    assert history(env) == []
    assert_counts_right(env, queue)


def test_deleting_an_unfinished_item_with_a_webhook_cancels_it_and_keeps_it_for_its_call(env: Env) -> None:
    queue = env.open()
    [item_id] = queue.enqueue_batch(Q, make_batch(callback_url="http://example.com/hook"), prepend=False).item_ids

    with pytest.raises(WebhookDueError, match=rf"Queue item {item_id} was canceled"):
        queue.delete_queue_item(item_id)

    assert queue.get_queue_item(item_id).status == "canceled"
    assert queue.get_webhooks_due() == [item_id]
    assert_counts_right(env, queue)


def test_an_item_of_a_webhook_batch_is_due_however_it_finishes(env: Env, queue: SqlSessionQueue) -> None:
    completed, failed, canceled, waiting = queue.enqueue_batch(
        Q, make_batch(runs=4, callback_url="https://example.com/h"), prepend=False
    ).item_ids
    queue.dequeue(P)
    queue.complete_queue_item(completed)
    queue.dequeue(P)
    queue.fail_queue_item(failed, "E", "m", "t")
    queue.cancel_queue_item(canceled)

    assert queue.get_webhooks_due() == [completed, failed, canceled]
    assert env.rows("SELECT webhook_state FROM session_queue WHERE item_id = ?", (waiting,)) == [
        {"webhook_state": None}
    ]


def test_a_due_call_is_held_by_one_claimant_until_its_claim_lapses(env: Env, queue: SqlSessionQueue) -> None:
    [item_id] = run_one_item_batches(queue, 1, callback_url="https://example.com/h")

    assert queue.claim_webhook(item_id, "a", lease_s=3600)
    assert not queue.claim_webhook(item_id, "b", lease_s=3600)
    assert queue.get_webhooks_due() == []  # held: no sweep reads it
    assert queue.claim_webhook(item_id, "a", lease_s=3600)  # a claimant's own claim is renewed
    queue.set_webhook_done(item_id, delivered=True, claimant="b")  # not b's: left due
    assert queue.get_webhook_due_url(item_id) == "https://example.com/h"

    # A lease already over stands for a claimant that died: its call is due and free to take again.
    assert queue.claim_webhook(item_id, "a", lease_s=-1)
    assert queue.get_webhooks_due() == [item_id]
    assert queue.claim_webhook(item_id, "b", lease_s=3600)
    queue.set_webhook_done(item_id, delivered=True, claimant="a")  # the late claimant's record is not taken
    assert queue.get_webhooks_due() == []
    queue.set_webhook_done(item_id, delivered=False, claimant="b")
    assert env.rows("SELECT webhook_state FROM session_queue") == [{"webhook_state": "given_up"}]
    assert not queue.claim_webhook(item_id, "c", lease_s=3600)  # done: nothing to claim


def test_released_and_gone_claimants_calls_are_free_at_once(env: Env, queue: SqlSessionQueue) -> None:
    released, dead, live, elsewhere, unknown = run_one_item_batches(queue, 5, callback_url="https://example.com/h")
    host = socket.gethostname()
    claims = {
        released: "a",
        dead: WebhookClaimant(host, ended_pid(), to_timestamp(datetime.now(UTC)), "t").id,
        live: WebhookClaimant.new().id,
        # Another machine's process cannot be checked from here: its claim lapses.
        elsewhere: WebhookClaimant(f"not-{host}", ended_pid(), to_timestamp(datetime.now(UTC)), "t").id,
        unknown: "not a claimant id",
    }
    for item_id, claimant in claims.items():
        assert queue.claim_webhook(item_id, claimant, lease_s=3600)
    assert queue.get_webhooks_due() == []

    queue.release_webhook_claims("a")
    queue.release_gone_webhook_claims()

    assert queue.get_webhooks_due() == [released, dead]
    assert queue.claim_webhook(dead, "b", lease_s=3600)


def test_one_of_concurrent_claimants_takes_a_call(env: Env, queue: SqlSessionQueue) -> None:
    # Each claimant on its own database, as API servers in other processes are: only the database keeps them apart.
    item_ids = run_one_item_batches(queue, 20, callback_url="https://example.com/h")
    claimants = [env.open() for _ in range(6)]
    start = threading.Barrier(len(claimants))
    taken: list[list[int]] = [[] for _ in claimants]

    def claim_all(index: int) -> None:
        start.wait()
        for item_id in item_ids:
            if claimants[index].claim_webhook(item_id, f"claimant-{index}", lease_s=3600):
                taken[index].append(item_id)

    threads = [threading.Thread(target=claim_all, args=(index,)) for index in range(len(claimants))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(item_id for mine in taken for item_id in mine) == item_ids


def test_items_older_than_the_history_age_are_pruned(env: Env) -> None:
    queue = env.open(max_history=None, max_history_days=1)
    queue.enqueue_batch(Q, make_batch(runs=50), prepend=False)
    finish_all(queue)
    two_days_ago = to_timestamp(datetime.now(UTC) - timedelta(days=2))
    with env.db.transaction() as cursor:
        cursor.execute("UPDATE session_queue SET completed_at = ?", (two_days_ago,))

    recent = queue.enqueue_batch(Q, make_batch(runs=60), prepend=False).item_ids
    finish_all(queue)  # the 100th finished item is the next step of pruning

    assert history(env) == recent
    assert_counts_right(env, queue)


@postgres_only
def test_pruning_puts_itself_off_rather_than_wait_for_a_count_row_another_write_holds(env: Env) -> None:
    queue = env.open(max_history=1)
    [failed] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    assert queue.dequeue(P) is not None
    queue.fail_queue_item(failed, "E", "m", "t")
    [finishing] = queue.enqueue_batch(Q, make_batch(), prepend=False).item_ids
    assert queue.dequeue(P) is not None
    blocker = env.open_db()
    try:
        with blocker.transaction() as cursor:
            # Another write holds the queue's failed count (a fail, which then waits for the in-progress count
            # this finish holds): pruning the failed item would wait for it, closing a cycle.
            cursor.execute(
                "SELECT n FROM session_queue_counts WHERE queue_id = ? AND batch_id = ? AND status = 'failed' "
                "FOR UPDATE",
                (Q, sql.QUEUE_TOTAL),
            )
            finisher = threading.Thread(target=lambda: queue.complete_queue_item(finishing))
            finisher.start()
            wait_for(
                lambda: not finisher.is_alive() or waiting_for_a_lock(env) == 1,
                what="the finish to commit, or to wait for the failed count",
            )
            assert not finisher.is_alive()
    finally:
        blocker.close()
    finisher.join(timeout=10)

    assert history(env) == [failed, finishing]  # put off
    [last] = run_one_item_batches(queue, 1)
    assert history(env) == [last]
    assert_counts_right(env, queue)


@postgres_only
def test_pruning_deleting_and_status_changes_in_many_processes_never_deadlock(env: Env) -> None:
    # Each on a database of its own, as processes sharing the queue are: processors claim and finish items, each
    # finish pruning a small history, while others enqueue, cancel, retry, recover, prune, delete and clear. Before
    # these writes kept one lock order, PostgreSQL broke a deadlock every second or so here.
    batches: list[str] = []
    errors: list[str] = []

    def process(own: SqlSessionQueue) -> None:
        if (item := own.dequeue(P)) is None:
            time.sleep(0.001)
        elif item.item_id % 5 == 0:
            own.fail_queue_item(item.item_id, "E", "m", "t")
        else:
            own.complete_queue_item(item.item_id)

    def enqueue(own: SqlSessionQueue) -> None:
        batches.append(own.enqueue_batch(Q, make_batch(runs=3), prepend=False).batch.batch_id)
        time.sleep(0.002)

    def cancel(own: SqlSessionQueue) -> None:
        own.cancel_by_batch_ids(Q, batches[-1:])
        time.sleep(0.01)

    def retry(own: SqlSessionQueue) -> None:
        failed = env.rows("SELECT item_id FROM session_queue WHERE status = 'failed' ORDER BY item_id DESC LIMIT 2")
        own.retry_items_by_id(Q, [row["item_id"] for row in failed])
        time.sleep(0.01)

    def prune(own: SqlSessionQueue) -> None:
        own.prune(Q)
        time.sleep(0.005)

    def delete(own: SqlSessionQueue) -> None:
        if oldest := own.get_queue_item_ids(Q)[:1]:
            own.delete_queue_item(oldest[0])
        time.sleep(0.005)

    def clear(own: SqlSessionQueue) -> None:
        time.sleep(0.3)
        own.clear(Q)

    def sweep(own: SqlSessionQueue) -> None:
        own.recover_interrupted()  # P never registers: its items are requeued as a dead processor's
        time.sleep(0.05)

    def cancel_all(own: SqlSessionQueue) -> None:
        time.sleep(0.2)
        own.cancel_by_queue_id(Q)

    def repeat(step: Callable[[SqlSessionQueue], None], own: SqlSessionQueue) -> None:
        while time.monotonic() < until:
            try:
                step(own)
            except SessionQueueItemNotFoundError:
                pass  # the item was deleted meanwhile: a clear, or another delete
            except Exception as error:
                errors.append(f"{step.__name__}: {error}")

    steps = [process, process, process, enqueue, enqueue, cancel, retry, prune, delete, clear, sweep, cancel_all]
    options = {"max_history": 5, "max_queue_size": 100_000, "requeue_interrupted": True, "max_attempts": 100}
    threads = [threading.Thread(target=repeat, args=(step, env.open(**options))) for step in steps]
    until = time.monotonic() + 6
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert_counts_right(env, env.open())


def test_one_write_prunes_a_bounded_chunk(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_queue_sql_history, "PRUNE_CHUNK", 3)
    queue = env.open(max_history=0)
    queue.enqueue_batch(Q, make_batch(runs=10), prepend=False)

    assert queue.cancel_by_queue_id(Q).canceled == 10

    assert len(history(env)) == 7
    run_one_item_batches(queue, 1)
    assert len(history(env)) == 5  # 7 and 1 more finished, less another chunk
    assert_counts_right(env, queue)


def test_migration_5_moves_each_batch_workflow_to_the_batches_table(env: Env) -> None:
    db = env.open_db()
    Migrator(db, MIGRATIONS[:4]).run()
    old_rows = [("b1", '{"w": 1}'), ("b1", '{"w": 1}'), ("b2", None)]
    with db.transaction() as cursor:
        for batch_id, workflow in old_rows:
            session_id = uuid_string()
            cursor.execute(
                "INSERT INTO session_queue (queue_id, batch_id, session_id, session, workflow, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')",
                (Q, batch_id, session_id, new_session_json(session_id, json.dumps(three_nodes())), workflow),
            )
            cursor.execute(sql.ADD_COUNT, (Q, batch_id, "pending", 1))
            cursor.execute(sql.ADD_COUNT, (Q, sql.QUEUE_TOTAL, "pending", 1))
    db.close()

    queue = env.open()

    assert [item.workflow for item in queue.list_all_queue_items(Q)] == [{"w": 1}, {"w": 1}, None]
    assert env.rows("SELECT batch_id, workflow FROM session_queue_batches ORDER BY batch_id") == [
        {"batch_id": "b1", "workflow": '{"w": 1}'},
        {"batch_id": "b2", "workflow": None},
    ]
    columns = columns_of(env, "session_queue")
    assert "workflow" not in columns and "webhook_state" in columns
    with pytest.raises(BatchExistsError):
        queue.enqueue_batch(Q, make_batch(batch_id="b1"), prepend=False)
    assert_counts_right(env, queue)


# --- reading ----------------------------------------------------------------------------------------------------


def test_pages_follow_run_order_with_a_cursor(env: Env, queue: SqlSessionQueue) -> None:
    low = queue.enqueue_batch(Q, make_batch(runs=9), prepend=False).item_ids
    high = queue.enqueue_batch(Q, make_batch(runs=7), prepend=True).item_ids
    higher = queue.enqueue_batch(Q, make_batch(runs=5), prepend=True).item_ids
    queue.enqueue_batch("other", make_batch(runs=3), prepend=False)
    for _ in range(4):
        queue.dequeue(P)

    pages, cursor, priority = [], None, None
    while True:
        page = queue.list_queue_items(Q, limit=4, priority=priority, cursor=cursor)
        pages.append(page)
        if not page.has_more:
            break
        priority, cursor = page.items[-1].priority, page.items[-1].item_id

    listed = [item.item_id for page in pages for item in page.items]
    assert listed == higher + high + low
    assert [len(page.items) for page in pages] == [4, 4, 4, 4, 4, 1]
    by_status = queue.list_queue_items(Q, limit=100, status="pending")
    assert [item.item_id for item in by_status.items] == higher[4:] + high + low and not by_status.has_more
    exact = queue.list_queue_items(Q, limit=21)
    assert len(exact.items) == 21 and not exact.has_more

    there = queue.enqueue_batch(Q, make_batch(runs=6, destination="there"), prepend=False).item_ids
    first = queue.list_queue_items(Q, limit=4, destination="there")
    rest = queue.list_queue_items(Q, limit=4, destination="there", priority=0, cursor=first.items[-1].item_id)
    assert [item.item_id for item in first.items + rest.items] == there and first.has_more and not rest.has_more
    pending_there = queue.list_queue_items(Q, limit=100, status="pending", destination="there")
    assert [item.item_id for item in pending_there.items] == there
    assert queue.list_queue_items(Q, limit=100, status="completed", destination="there").items == []
    with pytest.raises(SessionQueueError, match="both"):
        queue.list_queue_items(Q, limit=4, cursor=cursor)
    with pytest.raises(SessionQueueError, match="at least one"):
        queue.list_queue_items(Q, limit=0)


def test_reading_items_and_ids(queue: SqlSessionQueue) -> None:
    batch = make_batch(runs=3, destination="here")
    first, second, third = queue.enqueue_batch(Q, batch, prepend=False).item_ids
    queue.enqueue_batch(Q, make_batch(destination="there"), prepend=False)

    assert [i.item_id for i in queue.get_queue_items_by_item_ids([third, 999, first])] == [third, first]
    assert queue.get_queue_item_ids(Q, "ASC")[:3] == [first, second, third]
    assert queue.get_queue_item_ids(Q)[-3:] == [third, second, first]
    assert [i.item_id for i in queue.list_all_queue_items(Q, destination="here")] == [first, second, third]
    assert [i.item_id for i in queue.get_batch_items(Q, batch.batch_id)] == [first, second, third]
    assert queue.get_current(Q) is None and not queue.is_empty(Q).is_empty and queue.is_empty("other").is_empty
    status = queue.get_batch_status(Q, batch.batch_id)
    assert (status.pending, status.total, status.destination) == (3, 3, "here")
    with pytest.raises(BatchNotFoundError):
        queue.get_batch_items(Q, "unknown")
    with pytest.raises(BatchNotFoundError):
        queue.get_batch_status("other", batch.batch_id)


# --- query plans ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", [True, False])
@pytest.mark.parametrize("change", [sql.DEQUEUE["postgres"], sql.SET_STATUS[True]], ids=["claim", "finish"])
def test_the_one_statement_changes_are_short_enough_for_psycopg_to_cache_their_parsing(
    change: str, store: bool
) -> None:
    assert len(to_psycopg(change_one(change, store)).encode()) <= CACHED_LENGTH
    assert psycopg_queries.MAX_CACHED_STATEMENT_LENGTH == CACHED_LENGTH  # the limit of the psycopg installed


HOT_QUERIES: dict[str, tuple[str, Params]] = {
    "dequeue": (sql.DEQUEUE["sqlite"], {"now": "t", "processor_id": P}),
    "orphaned": (sql.SELECT_ORPHANED["sqlite"], ("t",)),
    "held items": (sql.SELECT_HELD_ITEMS, ()),
    "select item": (sql.SELECT_ITEM, (1,)),
    "set status": (
        sql.SET_STATUS[True],
        {
            "status": "completed",
            "updated_at": "t",
            "completed_at": "t",
            "error_type": None,
            "error_message": None,
            "error_traceback": None,
            "finishing": True,
            "release": False,
            "session": None,
            "stats": None,
            "item_id": 1,
            "old_status": "in_progress",
            "processor_id": P,
        },
    ),
    "requeue": (sql.REQUEUE_INTERRUPTED[True], ("t", 1, P)),
    "counts": (sql.SELECT_COUNTS, (Q, sql.QUEUE_TOTAL)),
    "statuses": (sql.select_statuses(1), (Q, sql.QUEUE_TOTAL, "b", Q)),
    "current": (sql.SELECT_CURRENT, (Q,)),
    "next": (sql.SELECT_NEXT, (Q,)),
    "prepend priority": (sql.SELECT_MAX_PENDING_PRIORITY, (Q,)),
    "batch items": (sql.SELECT_BATCH_ITEMS, (Q, "b")),
    "unfinished in batch": (sql.SELECT_UNFINISHED_IN_BATCH, (Q, "b")),
    "first page": (sql.LIST_PAGE[False, False, False], {"queue_id": Q, "limit": 11}),
    "next page": (sql.LIST_PAGE[False, False, True], {"queue_id": Q, "priority": 0, "item_id": 5, "limit": 11}),
    "first page by status": (sql.LIST_PAGE[True, False, False], {"queue_id": Q, "status": "pending", "limit": 11}),
    "next page by status": (
        sql.LIST_PAGE[True, False, True],
        {"queue_id": Q, "status": "pending", "priority": 0, "item_id": 5, "limit": 11},
    ),
}


HISTORY_QUERIES = {
    "prune oldest": (sql.PRUNE_OLDEST, (Q, 10), "ix_session_queue_history"),
    "prune older than": (sql.PRUNE_OLDER_THAN, (Q, "t", 10), "ix_session_queue_history"),
    "webhooks due": (sql.SELECT_WEBHOOKS_DUE, ("t",), "ix_session_queue_webhooks_due"),
    "empty batch": (sql.DELETE_EMPTY_BATCH, (Q, "b"), "ix_session_queue_batch"),
}


@sqlite_only
@pytest.mark.parametrize("name", HISTORY_QUERIES)
def test_history_queries_walk_their_index(env: Env, queue: SqlSessionQueue, name: str) -> None:
    queue.enqueue_batch(Q, make_batch(runs=50), prepend=False)
    statement, params, index = HISTORY_QUERIES[name]

    plan = [row["detail"] for row in env.rows(f"EXPLAIN QUERY PLAN {statement}", params)]

    assert [step for step in plan if index in step], plan
    assert not [step for step in plan if step.startswith("SCAN") and "USING" not in step], plan


@sqlite_only
@pytest.mark.parametrize("name", HOT_QUERIES)
def test_hot_queries_search_an_index(env: Env, queue: SqlSessionQueue, name: str) -> None:
    queue.enqueue_batch(Q, make_batch(runs=50), prepend=False)
    statement, params = HOT_QUERIES[name]

    plan = [row["detail"] for row in env.rows(f"EXPLAIN QUERY PLAN {statement}", params)]

    assert not [step for step in plan if step.startswith("SCAN session_queue")], plan
    assert [step for step in plan if step.startswith("SEARCH session_queue")], plan
