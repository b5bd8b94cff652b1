"""Migration 6, API tokens: the auth_tokens table, each token stored as its SHA-256 hash.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

# token_hash is UNIQUE for its index: a request's token is looked up by its hash.
_CREATE_TABLE = """
CREATE TABLE auth_tokens (
    token_id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
)
"""


def up(cursor: DbCursor) -> None:
    """Creates the auth_tokens table."""
    cursor.execute(_CREATE_TABLE)
