"""Migration 8, events across processes: the events table every process appends its events to and tails, and the
last number given to each queue's events.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor, Dialect

_EVENT_ID_COLUMN: dict[Dialect, str] = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgres": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}
# queue_id and seq are NULL for an event of no queue (a model's, an image's); payload is the event's JSON.
_CREATE_EVENTS = """
CREATE TABLE events (
    event_id {event_id},
    queue_id TEXT,
    seq BIGINT,
    event_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""
_CREATE_INDEXES = (
    # replaying a queue's events after a number.
    "CREATE INDEX ix_events_queue_seq ON events (queue_id, seq)",
    # pruning the oldest.
    "CREATE INDEX ix_events_created ON events (created_at)",
)
# One row per queue: taking the next number locks it, so a queue's events are numbered in the order their
# transactions commit, whichever process writes them.
_CREATE_SEQUENCES = """
CREATE TABLE event_sequences (
    queue_id TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL
)
"""


def up(cursor: DbCursor) -> None:
    """Creates the events table, its indexes and the queues' event numbers."""
    cursor.execute(_CREATE_EVENTS.format(event_id=_EVENT_ID_COLUMN[cursor.dialect]))
    for statement in (*_CREATE_INDEXES, _CREATE_SEQUENCES):
        cursor.execute(statement)
