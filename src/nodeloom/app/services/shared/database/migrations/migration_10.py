"""Migration 10, a pause every processor sees: while the table holds its one row, no processor of any process
claims an item.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

# One row at most (id 1): when the processors were paused.
_CREATE_PAUSE = "CREATE TABLE processing_paused (id INTEGER PRIMARY KEY CHECK (id = 1), paused_at TEXT NOT NULL)"


def up(cursor: DbCursor) -> None:
    """Adds the shared pause of the processors."""
    cursor.execute(_CREATE_PAUSE)
