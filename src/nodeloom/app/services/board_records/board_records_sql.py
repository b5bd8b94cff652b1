"""Board records on the database port; the `boards` table is made by migration 2 (`shared/database/migrations`)."""

from __future__ import annotations

import uuid

from nodeloom.app.services.board_records.board_records_base import BoardRecordStorageBase
from nodeloom.app.services.board_records.board_records_common import (
    BoardChanges,
    BoardRecord,
    BoardRecordNotFoundError,
    validate_board_name,
)
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor
from nodeloom.app.services.shared.pagination import OffsetPaginatedResults
from nodeloom.app.services.shared.timestamps import utc_now

_COLUMNS = "board_id, board_name, archived, created_at, updated_at"
_INSERT = f"INSERT INTO boards ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) RETURNING {_COLUMNS}"
_SELECT = f"SELECT {_COLUMNS} FROM boards WHERE board_id = ?"
_DELETE = "DELETE FROM boards WHERE board_id = ?"
# Bound to (include_archived, False): every board when archived ones are included, else the unarchived.
_LISTED = "WHERE (? OR archived = ?)"
_ORDER = "ORDER BY created_at DESC, board_id DESC"
_SELECT_PAGE = f"SELECT {_COLUMNS} FROM boards {_LISTED} {_ORDER} LIMIT ? OFFSET ?"
_SELECT_ALL = f"SELECT {_COLUMNS} FROM boards {_LISTED} {_ORDER}"
_COUNT = f"SELECT COUNT(*) AS total FROM boards {_LISTED}"
_UPDATABLE = ("board_name", "archived")


class SqlBoardRecordStorage(BoardRecordStorageBase):
    """Board records in the `boards` table, on any engine the database port speaks."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db

    def save(self, board_name: str) -> BoardRecord:
        now = utc_now()
        with self._db.transaction() as cursor:
            cursor.execute(_INSERT, (str(uuid.uuid4()), validate_board_name(board_name), False, now, now))
            row = cursor.fetchone()
        assert row is not None, "INSERT ... RETURNING returns the row it inserted"
        return BoardRecord.model_validate(dict(row))

    def get(self, board_id: str) -> BoardRecord:
        with self._db.read() as cursor:
            return _get(cursor, board_id)

    def update(self, board_id: str, changes: BoardChanges) -> BoardRecord:
        values = changes.model_dump(include=set(_UPDATABLE), exclude_none=True)
        with self._db.transaction() as cursor:
            if values:
                assignments = ", ".join(f"{column} = ?" for column in values)
                cursor.execute(
                    f"UPDATE boards SET {assignments}, updated_at = ? WHERE board_id = ?",
                    [*values.values(), utc_now(), board_id],
                )
            return _get(cursor, board_id)

    def delete(self, board_id: str) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(_DELETE, (board_id,))
            if cursor.rowcount == 0:
                raise BoardRecordNotFoundError(board_id)

    def get_many(
        self, offset: int = 0, limit: int = 10, include_archived: bool = False
    ) -> OffsetPaginatedResults[BoardRecord]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_PAGE, (include_archived, False, limit, offset))
            items = [BoardRecord.model_validate(dict(row)) for row in cursor.fetchall()]
            cursor.execute(_COUNT, (include_archived, False))
            total_row = cursor.fetchone()
        assert total_row is not None, "an aggregate query always returns one row"
        return OffsetPaginatedResults(limit=limit, offset=offset, total=int(total_row["total"]), items=items)

    def get_all(self, include_archived: bool = False) -> list[BoardRecord]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_ALL, (include_archived, False))
            return [BoardRecord.model_validate(dict(row)) for row in cursor.fetchall()]


def _get(cursor: DbCursor, board_id: str) -> BoardRecord:
    cursor.execute(_SELECT, (board_id,))
    row = cursor.fetchone()
    if row is None:
        raise BoardRecordNotFoundError(board_id)
    return BoardRecord.model_validate(dict(row))
