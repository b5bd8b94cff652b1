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

CACHED_LENGTH = 4096
"""The longest statement, in bytes as psycopg sends it, whose parsing psycopg caches: a longer one is parsed again
at each execution, which costs this hot path a tenth of a millisecond."""


def _object(model: type[BaseModel], values: Mapping[str, str]) -> str:
    """The SQL that builds the JSON of `model` from the SQL expression of each of its fields, in their order; a
    field with no expression (one added to the model since) raises."""
    return "json_build_object(" + ", ".join(f"'{name}', {values[name]}" for name in model.model_fields) + ")"


def _counts_object(model: type[BaseModel], batch_id: str, values: Mapping[str, str], join: str = "") -> str:
    """The JSON of a status model (`BatchStatus`, `SessionQueueStatus`) of the counts of `batch_id` (`tally`)."""
    counts = {name: f"t.{name}" for name in (*QUEUE_ITEM_STATUSES, "total")}
    return f"(SELECT {_object(model, {**counts, **values})} FROM tally t{join} WHERE t.batch_id = {batch_id})"


def _payload(seq: str) -> str:
    """The JSON of the item's `QueueItemStatusChangedEvent`, numbered `seq`."""
    running = {name: f"r.{name}" for name in ("item_id", "batch_id", "session_id")}
    queue_status = _counts_object(
        SessionQueueStatus,
        f"'{sql.QUEUE_TOTAL}'",
        {"queue_id": "i.queue_id", **running},
        " LEFT JOIN running r ON TRUE",
    )
    batch_status = _counts_object(
        BatchStatus, "i.batch_id", {name: f"i.{name}" for name in ("queue_id", "batch_id", "origin", "destination")}
    )
    return _object(
        QueueItemStatusChangedEvent,
        {
            **{name: f"i.{name}" for name in EVENT_ITEM_FIELDS},
            "timestamp": ":timestamp::bigint",
            "seq": seq,
            "old_status": ":old_status::text",
            "batch_status": batch_status,
            "queue_status": queue_status,
        },
    )


_SUMS = ", ".join(
    [f"SUM(n * (status = '{status}')::int) AS {status}" for status in QUEUE_ITEM_STATUSES] + ["SUM(n) AS total"]
)


@functools.cache
def change_one(change: str, store: bool) -> str:
    """The statement that makes `change`, an update of at most one item returning its `ITEM_COLUMNS`, bound by name
    with its status before (`old_status`), the event's `timestamp` and, where the event is stored in the events
    table (`store`), the time it is stored (`now`). Its row is the item's, with the event's JSON (`event`) and,
    stored, its id (`event_id`); none where the update changed nothing.

    `tally` holds the counts of the item's queue and batch after the change, by status: the statement reads the
    tables as they were before its own changes, so the counts it changed are taken from the upsert's rows, and the
    running item of highest priority, which the queue's status names, from the change. The statement is kept
    within `CACHED_LENGTH`.
    """
    common = f"""WITH item AS ({change}),
added AS (INSERT INTO session_queue_counts AS k (queue_id, batch_id, status, n)
SELECT i.queue_id, b.batch_id, d.status, d.n FROM item i,
LATERAL (VALUES ('{sql.QUEUE_TOTAL}'), (i.batch_id)) AS b (batch_id),
LATERAL (VALUES (:old_status::text, -1), (i.status, 1)) AS d (status, n)
ORDER BY b.batch_id COLLATE "C", d.status COLLATE "C"
ON CONFLICT (queue_id, batch_id, status) DO UPDATE SET n = k.n + excluded.n
RETURNING batch_id, status, n),
tally AS (SELECT batch_id, {_SUMS} FROM (
SELECT batch_id, status, n FROM added UNION ALL
SELECT c.batch_id, c.status, c.n FROM session_queue_counts c
JOIN item i ON c.queue_id = i.queue_id AND c.batch_id IN ('{sql.QUEUE_TOTAL}', i.batch_id)
WHERE (c.batch_id, c.status) NOT IN (SELECT batch_id, status FROM added)
) AS c GROUP BY batch_id),
running AS (SELECT item_id, batch_id, session_id, priority FROM session_queue WHERE status = 'in_progress'
AND queue_id = (SELECT queue_id FROM item) AND item_id <> (SELECT item_id FROM item)
UNION ALL SELECT item_id, batch_id, session_id, priority FROM item WHERE status = 'in_progress'
ORDER BY priority DESC, item_id LIMIT 1)"""
    if not store:
        return f"{common}\nSELECT i.*, {_payload('NULL')}::text AS event FROM item i"
    # The queue's number row is locked last, as every write locks it: after the counts. A statement's parts run in no
    # set order, as their results are needed (the event needs its number first), so numbering waits for the count
    # of every row the counts' upsert changed.
    return f"""{common},
numbered AS (INSERT INTO event_sequences AS e (queue_id, seq)
SELECT queue_id, 1 FROM item WHERE (SELECT COUNT(*) FROM added) > 0
ON CONFLICT (queue_id) DO UPDATE SET seq = e.seq + 1 RETURNING seq),
stored AS (INSERT INTO events (queue_id, seq, event_name, payload, created_at)
SELECT i.queue_id, n.seq, '{QueueItemStatusChangedEvent.event_name}', {_payload("n.seq")}::text, :now
FROM item i CROSS JOIN numbered n
RETURNING event_id, payload, pg_notify('{CHANNEL}', '') AS notified)
SELECT i.*, stored.event_id, stored.payload AS event FROM item i CROSS JOIN stored"""
