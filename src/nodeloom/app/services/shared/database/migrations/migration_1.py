"""Migration 1, the session queue: its items table, the indexes of its hot queries and the counts by status.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor, Dialect

_ITEM_ID_COLUMN: dict[Dialect, str] = {
    # AUTOINCREMENT: an id is never reused after a delete, so an id a client holds never names another item.
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgres": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}
_CREATE_SESSION_QUEUE = """
CREATE TABLE session_queue (
    item_id {item_id},
    queue_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'in_progress', 'completed', 'failed', 'canceled')),
    priority INTEGER NOT NULL DEFAULT 0,
    origin TEXT,
    destination TEXT,
    field_values TEXT,
    session TEXT NOT NULL,
    workflow TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    timeout DOUBLE PRECISION,
    callback_url TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    retried_from_item_id BIGINT,
    stats TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
)
"""
_CREATE_INDEXES = (
    # dequeue: the first pending item of any queue in run order.
    "CREATE INDEX ix_session_queue_dequeue ON session_queue (status, priority DESC, item_id)",
    # a queue in run order: listing.
    "CREATE INDEX ix_session_queue_order ON session_queue (queue_id, priority DESC, item_id)",
    # a queue's items of one status in run order: current, next, cancels, prune, listing by status.
    "CREATE INDEX ix_session_queue_status ON session_queue (queue_id, status, priority DESC, item_id)",
    # Without the status, a status change leaves this index alone.
    "CREATE INDEX ix_session_queue_batch ON session_queue (queue_id, batch_id)",
)
# Items by status, kept in step with session_queue in every transaction that changes it: one row per queue
# (batch_id '', which no batch has) and one per batch, for each status.
_CREATE_COUNTS = """
CREATE TABLE session_queue_counts (
    queue_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (queue_id, batch_id, status)
)
"""


def up(cursor: DbCursor) -> None:
    """Creates the queue's table, its indexes and its counts."""
    cursor.execute(_CREATE_SESSION_QUEUE.format(item_id=_ITEM_ID_COLUMN[cursor.dialect]))
    for statement in (*_CREATE_INDEXES, _CREATE_COUNTS):
        cursor.execute(statement)
