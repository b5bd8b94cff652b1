"""Which board each image is on, on the database port: `images.board_id` (see migration 4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nodeloom.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from nodeloom.app.services.board_image_records.board_image_records_common import BoardImageSummary
from nodeloom.app.services.board_records.board_records_common import BoardRecordNotFoundError
from nodeloom.app.services.image_records.image_records_common import (
    IMAGE_ORDER,
    ImageCategory,
    ImageRecordNotFoundError,
)
from nodeloom.app.services.shared.database.database_base import DatabaseBase

# IN lists are cut into chunks of this many parameters: SQLite refuses statements with too many.
_CHUNK = 500

_BOARD_EXISTS = "SELECT board_id FROM boards WHERE board_id = ?"
# An image already on a board moves: an image row holds one board.
_SET_BOARD = "UPDATE images SET board_id = ? WHERE image_name = ?"
_CLEAR_BOARD = "UPDATE images SET board_id = NULL WHERE image_name = ? AND board_id IS NOT NULL"
_SELECT_BOARD = "SELECT board_id FROM images WHERE image_name = ?"
_SELECT_BOARDS = "SELECT image_name, board_id FROM images WHERE board_id IS NOT NULL AND image_name IN ({placeholders})"
# The count and the newest image of each board in one pass; window functions exist on both engines.
_SUMMARIES = """
SELECT board_id, image_name AS cover_image_name, image_count FROM (
    SELECT board_id, image_name,
        COUNT(*) OVER (PARTITION BY board_id) AS image_count,
        ROW_NUMBER() OVER (PARTITION BY board_id ORDER BY created_at DESC, image_name DESC) AS rank_in_board
    FROM images
    WHERE is_intermediate = ? AND board_id IN ({placeholders})
) AS ranked
WHERE rank_in_board = 1
"""


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _placeholders(values: list[Any]) -> str:
    return ", ".join("?" for _ in values)


class SqlBoardImageRecordStorage(BoardImageRecordStorageBase):
    """Links in the `board_id` column of the `images` table, on any engine the database port speaks."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db

    def add_image_to_board(self, board_id: str, image_name: str) -> None:
        with self._db.transaction() as cursor:
            # Checked first so that an unknown id is a "not found", not a foreign-key error.
            cursor.execute(_BOARD_EXISTS, (board_id,))
            if cursor.fetchone() is None:
                raise BoardRecordNotFoundError(board_id)
            cursor.execute(_SET_BOARD, (board_id, image_name))
            if cursor.rowcount == 0:
                raise ImageRecordNotFoundError(image_name)

    def remove_image_from_board(self, image_name: str) -> bool:
        with self._db.transaction() as cursor:
            cursor.execute(_CLEAR_BOARD, (image_name,))
            return cursor.rowcount > 0

    def get_all_board_image_names_for_board(
        self, board_id: str, categories: list[ImageCategory] | None = None, is_intermediate: bool | None = None
    ) -> list[str]:
        if categories is not None and not categories:
            return []
        conditions = ["board_id = ?"]
        params: list[Any] = [board_id]
        if categories is not None:
            conditions.append(f"image_category IN ({_placeholders(categories)})")
            params.extend(ImageCategory(category).value for category in categories)
        if is_intermediate is not None:
            conditions.append("is_intermediate = ?")
            params.append(is_intermediate)
        with self._db.read() as cursor:
            cursor.execute(
                f"SELECT image_name FROM images WHERE {' AND '.join(conditions)} ORDER BY {IMAGE_ORDER}", params
            )
            return [row["image_name"] for row in cursor.fetchall()]

    def get_board_for_image(self, image_name: str) -> str | None:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_BOARD, (image_name,))
            row = cursor.fetchone()
        # No row (no such image) and a null board both mean "on no board".
        return None if row is None or row["board_id"] is None else str(row["board_id"])

    def get_boards_for_images(self, image_names: list[str]) -> dict[str, str]:
        boards: dict[str, str] = {}
        with self._db.read() as cursor:
            for chunk in _chunks(image_names):
                cursor.execute(_SELECT_BOARDS.format(placeholders=_placeholders(chunk)), chunk)
                boards.update((row["image_name"], row["board_id"]) for row in cursor.fetchall())
        return boards

    def get_summaries(self, board_ids: list[str]) -> dict[str, BoardImageSummary]:
        summaries = {
            board_id: BoardImageSummary(board_id=board_id, image_count=0, cover_image_name=None)
            for board_id in board_ids
        }
        with self._db.read() as cursor:
            for chunk in _chunks(board_ids):
                cursor.execute(_SUMMARIES.format(placeholders=_placeholders(chunk)), [False, *chunk])
                for row in cursor.fetchall():
                    summaries[row["board_id"]] = BoardImageSummary.model_validate(dict(row))
        return summaries
