"""Migration 7, processor leases: the session_processors table, where each processor registers and heartbeats,
and the processor that holds each claimed queue item.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

# One row per running processor, refreshed every heartbeat; an item held by a processor whose heartbeat is older
# than the lease is reclaimed. current_item_id and current_node_id are what it ran at its last heartbeat.
_CREATE_PROCESSORS = """
CREATE TABLE session_processors (
    processor_id TEXT NOT NULL PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    devices TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    current_item_id BIGINT,
    current_node_id TEXT
)
"""
# NULL on an item that no processor holds: pending or finished, or claimed before this migration.
_ADD_PROCESSOR_ID = "ALTER TABLE session_queue ADD COLUMN processor_id TEXT"


def up(cursor: DbCursor) -> None:
    """Creates the processors table and adds the holding processor to queue items."""
    for statement in (_CREATE_PROCESSORS, _ADD_PROCESSOR_ID):
        cursor.execute(statement)
