"""Migration 4, each image's board on its row: `images.board_id` replaces the board_images table.

An image is on one board at most, so its board lives on its row. A board's listing then walks one index in the
gallery's order and stops after the page, where joining the links sorted the whole board. Deleting a board sets
its images' board to null (they stay, on no board); deleting an image takes its board with it.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

_MOVE_BOARDS_TO_IMAGES = (
    # SQLite adds a column with a REFERENCES clause only if its default is null, which this one's is.
    "ALTER TABLE images ADD COLUMN board_id TEXT REFERENCES boards (board_id) ON DELETE SET NULL",
    """
    UPDATE images SET board_id = (
        SELECT board_images.board_id FROM board_images WHERE board_images.image_name = images.image_name
    )
    WHERE image_name IN (SELECT image_name FROM board_images)
    """,
    "DROP TABLE board_images",
    # A board's listing (board, intermediate flag, then the gallery's order: see `IMAGE_ORDER`), its count and
    # cover, the images on no board (board_id IS NULL), and the foreign key's lookup when a board is deleted.
    "CREATE INDEX ix_images_board_order ON images (board_id, is_intermediate, starred DESC, created_at DESC, "
    "image_name DESC)",
)


def up(cursor: DbCursor) -> None:
    """Moves each image's board from the board_images table onto its row (`images.board_id`), and indexes it."""
    for statement in _MOVE_BOARDS_TO_IMAGES:
        cursor.execute(statement)
