"""Migration 9, webhook claims: the API server making an item's due webhook call, and until when its claim holds,
so that of several servers sharing the database one alone makes each call.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

# NULL on a call that no server holds; a claim past its time is free to take again (its server died or hangs).
_ADD_CLAIM = (
    "ALTER TABLE session_queue ADD COLUMN webhook_claimed_by TEXT",
    "ALTER TABLE session_queue ADD COLUMN webhook_claimed_until TEXT",
)


def up(cursor: DbCursor) -> None:
    """Adds the claim of each item's webhook call."""
    for statement in _ADD_CLAIM:
        cursor.execute(statement)
