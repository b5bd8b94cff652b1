"""PostgreSQL: the status change of one item made by one statement, with its counts and its event.

Processors claim items and finish them all day long. Made in a transaction, each such change costs six round
trips to the server: BEGIN, the update, the counts, the event's number, the event, COMMIT. Here one statement does
it all and is a transaction of its own (`DatabaseBase.statement`): it changes the item, moves it between the counts
(locking their rows in the order every other write does), builds the status event's JSON from the changed row and
the counts, numbers the event in its queue and stores it. The event's fields come from its model, as
`status_event` makes them, so that both kinds of change tell the same. SQLite, where a transaction costs no round
trip, makes these changes as it makes every other.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from pydantic import BaseModel

from nodeloom.app.services.events.events_common import QueueItemStatusChangedEvent
from nodeloom.app.services.events.events_database import CHANNEL
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import (
    QUEUE_ITEM_STATUSES,
    BatchStatus,
    SessionQueueStatus,
)
from nodeloom.app.services.session_queue.session_queue_sql_rows import EVENT_ITEM_FIELDS


def _object(model: type[BaseModel], values: Mapping[str, str]) -> str:
    """The SQL that builds the JSON of `model` from the SQL expression of each of its fields, in their order; a
    field with no expression (one added to the model since) raises."""
    return "json_build_object(" + ", ".join(f"'{name}', {values[name]}" for name in model.model_fields) + ")"


def _counts_object(model: type[BaseModel], batch_id: str, values: Mapping[str, str]) -> str:
    """The JSON of a status model (`BatchStatus`, `SessionQueueStatus`) of the counts of `batch_id`."""
    fields: dict[str, str] = {
        status: f"COALESCE(SUM(n) FILTER (WHERE status = '{status}'), 0)" for status in QUEUE_ITEM_STATUSES
    }
    fields.update(total="COALESCE(SUM(n), 0)", **values)
    return f"(SELECT {_object(model, fields)} FROM counts WHERE batch_id = {batch_id})"


def _payload(seq: str) -> str:
    """The JSON of the item's `QueueItemStatusChangedEvent`, numbered `seq`."""
    running = {name: f"(SELECT {name} FROM running)" for name in ("item_id", "batch_id", "session_id")}
    queue_status = _counts_object(SessionQueueStatus, f"'{sql.QUEUE_TOTAL}'", {"queue_id": "item.queue_id", **running})
    batch_status = _counts_object(
        BatchStatus,
        "item.batch_id",
        {name: f"item.{name}" for name in ("queue_id", "batch_id", "origin", "destination")},
    )
    return _object(
        QueueItemStatusChangedEvent,
        {
            **{name: f"item.{name}" for name in EVENT_ITEM_FIELDS},
            "timestamp": "CAST(:timestamp AS BIGINT)",
            "seq": seq,
            "old_status": "CAST(:old_status AS TEXT)",
            "batch_status": batch_status,
            "queue_status": queue_status,
        },
    )


@functools.cache
def change_one(change: str, store: bool) -> str:
    """The statement that makes `change`, an update of at most one item returning its `ITEM_COLUMNS`, bound by name
    with its status before (`old_status`), the event's `timestamp` and, where the event is stored in the events
    table (`store`), the time it is stored (`now`). Its row is the item's, with the event's JSON (`event`) and,
    stored, its id (`event_id`); none where the update changed nothing.

    The queue's status tells the running item of highest priority: the statement reads the table as it was before
    its own change, so the changed item is taken from the change.
    """
    common = f"""
WITH item AS ({change}),
added AS (
    INSERT INTO session_queue_counts (queue_id, batch_id, status, n)
    SELECT item.queue_id, b.batch_id, d.status, d.n FROM item
    CROSS JOIN LATERAL (VALUES ('{sql.QUEUE_TOTAL}'), (item.batch_id)) AS b (batch_id)
    CROSS JOIN LATERAL (VALUES (CAST(:old_status AS TEXT), -1), (item.status, 1)) AS d (status, n)
    ORDER BY b.batch_id COLLATE "C", d.status COLLATE "C"
    ON CONFLICT (queue_id, batch_id, status) DO UPDATE SET n = session_queue_counts.n + excluded.n
    RETURNING batch_id, status, n
),
counts AS (
    SELECT batch_id, status, n FROM added
    UNION ALL
    SELECT c.batch_id, c.status, c.n FROM session_queue_counts c
    JOIN item ON c.queue_id = item.queue_id AND c.batch_id IN ('{sql.QUEUE_TOTAL}', item.batch_id)
    WHERE NOT EXISTS (SELECT 1 FROM added WHERE added.batch_id = c.batch_id AND added.status = c.status)
),
running AS (
    SELECT r.item_id, r.batch_id, r.session_id FROM (
        SELECT s.item_id, s.batch_id, s.session_id, s.priority FROM session_queue s
        JOIN item ON s.queue_id = item.queue_id AND s.status = 'in_progress' AND s.item_id <> item.item_id
        UNION ALL
        SELECT item_id, batch_id, session_id, priority FROM item WHERE status = 'in_progress'
    ) AS r ORDER BY r.priority DESC, r.item_id LIMIT 1
)"""
    if not store:
        return f"{common}\nSELECT item.*, CAST({_payload('NULL')} AS TEXT) AS event FROM item"
    # The queue's number row is locked last, as `DatabaseEventService` locks it: after the counts.
    return f"""{common},
numbered AS (
    INSERT INTO event_sequences (queue_id, seq) SELECT queue_id, 1 FROM item
    ON CONFLICT (queue_id) DO UPDATE SET seq = event_sequences.seq + 1
    RETURNING seq
),
stored AS (
    INSERT INTO events (queue_id, seq, event_name, payload, created_at)
    SELECT item.queue_id, numbered.seq, '{QueueItemStatusChangedEvent.event_name}',
        CAST({_payload("numbered.seq")} AS TEXT), :now
    FROM item CROSS JOIN numbered
    RETURNING event_id, payload, pg_notify('{CHANNEL}', '') AS notified
)
SELECT item.*, stored.event_id, stored.payload AS event FROM item CROSS JOIN stored"""
