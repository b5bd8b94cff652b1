"""Migration 2, images and boards: the images, boards and board_images tables and their indexes.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration
(migration 4 moved each image's board onto its row).
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor, Dialect

# Timestamps are ISO-8601 UTC strings of one fixed width written by Python, so both engines store the same
# text and sorting the text sorts by time. Booleans are BOOLEAN: 0/1 on SQLite, true/false on PostgreSQL.
_CREATE_TABLES = (
    """
    CREATE TABLE images (
        image_name TEXT NOT NULL PRIMARY KEY,
        image_origin TEXT NOT NULL CHECK (image_origin IN ('internal', 'external')),
        image_category TEXT NOT NULL CHECK (image_category IN ('general', 'mask', 'control', 'user', 'other')),
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        session_id TEXT,
        node_id TEXT,
        is_intermediate BOOLEAN NOT NULL DEFAULT FALSE,
        starred BOOLEAN NOT NULL DEFAULT FALSE,
        has_workflow BOOLEAN NOT NULL DEFAULT FALSE,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        deleted_at TEXT
    ){without_rowid}
    """,
    """
    CREATE TABLE boards (
        board_id TEXT NOT NULL PRIMARY KEY,
        board_name TEXT NOT NULL,
        archived BOOLEAN NOT NULL DEFAULT FALSE,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    # The image name is the key: an image is on one board at most. Deleting either side removes the link,
    # so deleting a board leaves its images, on no board.
    """
    CREATE TABLE board_images (
        image_name TEXT NOT NULL PRIMARY KEY REFERENCES images (image_name) ON DELETE CASCADE,
        board_id TEXT NOT NULL REFERENCES boards (board_id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ){without_rowid}
    """,
)
_CREATE_INDEXES = (
    # The gallery's order: the listing walks this index and stops after one page instead of sorting.
    "CREATE INDEX ix_images_order ON images (starred DESC, created_at DESC, image_name DESC)",
    "CREATE INDEX ix_images_intermediate ON images (is_intermediate)",
    # A board's images (its listing, count and cover), and the cascade when a board is deleted.
    "CREATE INDEX ix_board_images_board ON board_images (board_id, image_name)",
    "CREATE INDEX ix_boards_created ON boards (created_at DESC, board_id DESC)",
)


# SQLite otherwise stores a table keyed by text apart from its key's index, so every lookup by name searches
# two B-trees; a board's listing looks up each of its images, and this halves its time.
_WITHOUT_ROWID: dict[Dialect, str] = {"sqlite": " WITHOUT ROWID", "postgres": ""}


def up(cursor: DbCursor) -> None:
    """Creates the images, boards and board_images tables and their indexes."""
    for statement in _CREATE_TABLES:
        cursor.execute(statement.format(without_rowid=_WITHOUT_ROWID[cursor.dialect]))
    for statement in _CREATE_INDEXES:
        cursor.execute(statement)
