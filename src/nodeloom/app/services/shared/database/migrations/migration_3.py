"""Migration 3, models: the models table, one config per model, and its indexes.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

# The fields every config has are columns, so that searches filter in SQL; what only some kinds of model have
# (a pipeline's submodels) is one JSON object in `extra`, and `default_settings` another. BIGINT because model
# files pass 2 GiB, the limit of PostgreSQL's INTEGER.
_CREATE_TABLE = """
CREATE TABLE models (
    key TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    base TEXT NOT NULL,
    type TEXT NOT NULL,
    format TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    source TEXT NOT NULL,
    default_settings TEXT,
    extra TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
_CREATE_INDEXES = (
    # The listing's order, and its filters by type and base.
    "CREATE INDEX ix_models_type_base_name ON models (type, base, name)",
    "CREATE INDEX ix_models_name ON models (name)",
    "CREATE INDEX ix_models_hash ON models (hash)",
)


def up(cursor: DbCursor) -> None:
    """Creates the models table and its indexes."""
    cursor.execute(_CREATE_TABLE)
    for statement in _CREATE_INDEXES:
        cursor.execute(statement)
