"""Image records on the database port; migrations 2 and 4 (`shared/database/migrations`) make the `images` table."""

from __future__ import annotations

from typing import Any

from nodeloom.app.services.image_records.image_records_base import ImageRecordStorageBase
from nodeloom.app.services.image_records.image_records_common import (
    BOARD_ID_NONE,
    IMAGE_ORDER,
    ImageCategory,
    ImageFilter,
    ImageListQuery,
    ImageNamesQuery,
    ImageNamesResult,
    ImageRecord,
    ImageRecordChanges,
    ImageRecordNotFoundError,
    ResourceOrigin,
)
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor
from nodeloom.app.services.shared.pagination import OffsetPaginatedResults
from nodeloom.app.services.shared.timestamps import utc_now

_COLUMNS = (
    "image_name",
    "image_origin",
    "image_category",
    "width",
    "height",
    "session_id",
    "node_id",
    "is_intermediate",
    "starred",
    "has_workflow",
    "created_at",
    "updated_at",
    "deleted_at",
)
_RECORD_COLUMNS = ", ".join(f"images.{column}" for column in _COLUMNS)
_INSERT = (
    f"INSERT INTO images ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    f"RETURNING {', '.join(_COLUMNS)}"
)
_SELECT = f"SELECT {_RECORD_COLUMNS} FROM images WHERE image_name = ?"
_DELETE = "DELETE FROM images WHERE image_name = ?"
_SELECT_INTERMEDIATES = "SELECT image_name FROM images WHERE is_intermediate = ?"
_SELECT_ALL_NAMES = "SELECT image_name FROM images"
# No index: it runs at start-up only, once for each item a crash interrupted.
_SELECT_BY_SESSION = f"SELECT {_RECORD_COLUMNS} FROM images WHERE session_id = ?"
_UPDATABLE = ("image_category", "is_intermediate", "starred")
# The page's names are found first, walking an index (covering, for a board's gallery: `ix_images_board_order`)
# past the offset without reading a row, and only the page's rows are then read and put back in order. Reading
# every skipped row made a deep page cost ten times as much.
LIST_PAGE = (
    f"SELECT {_RECORD_COLUMNS} FROM images WHERE images.image_name IN "
    "(SELECT images.image_name {source} ORDER BY {order} LIMIT ? OFFSET ?) "
    "ORDER BY {order}"
)
"""A page of a listing: `source` is `listing_source`'s clauses, bound to its parameters, then limit and offset;
`order` one of `NAMES_ORDERS`."""
LIST_COUNT = "SELECT COUNT(*) AS total {source}"
"""The number of images in a listing: `source` is `listing_source`'s clauses, bound to its parameters."""


def listing_source(query: ImageFilter) -> tuple[str, list[Any]]:
    """The FROM and WHERE clauses selecting the images that match the query's filters, with their parameters."""
    board_id = query.board_id
    # With the board and the intermediate flag fixed, `ix_images_board_order` yields the rows in the gallery's order.
    if board_id == BOARD_ID_NONE:
        conditions = ["images.board_id IS NULL"]
        params: list[Any] = []
    elif board_id is not None:
        conditions, params = ["images.board_id = ?"], [board_id]
    else:
        conditions, params = [], []
    if query.image_origin is not None:
        conditions.append("images.image_origin = ?")
        params.append(query.image_origin.value)
    if query.categories is not None:
        conditions.append(f"images.image_category IN ({', '.join('?' for _ in query.categories)})")
        params.extend(category.value for category in query.categories)
    if query.is_intermediate is not None:
        conditions.append("images.is_intermediate = ?")
        params.append(query.is_intermediate)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"FROM images{where}", params


NAMES_ORDERS: dict[tuple[bool, str], str] = {
    (True, "DESC"): IMAGE_ORDER,
    (True, "ASC"): "images.starred DESC, images.created_at ASC, images.image_name ASC",
    (False, "DESC"): "images.created_at DESC, images.image_name DESC",
    (False, "ASC"): "images.created_at ASC, images.image_name ASC",
}
"""The ORDER BY of each (starred first, direction), for pages and names; the name breaks ties, so the order is the
same every time. The gallery's default, `IMAGE_ORDER`, is the one `ix_images_board_order` walks."""

SELECT_NAMES = "SELECT images.image_name, images.starred {source} ORDER BY {order}"
"""The names: `source` is `names_source`'s clauses, `order` one of `NAMES_ORDERS`.

With a board and the intermediate flag given, as InvokeAI's gallery asks, `ix_images_board_order` yields the images
newest and starred first, and holds every column read but the category and origin; the other orders sort the names.
"""

# Case-insensitive, as InvokeAI's search is; LOWER rather than relying on LIKE, which ignores case on SQLite only.
_SEARCH = "(LOWER(images.image_name) LIKE ? ESCAPE '\\' OR LOWER(images.created_at) LIKE ? ESCAPE '\\')"


def _like_pattern(term: str) -> str:
    """`term` anywhere, its LIKE wildcards and the escape character taken literally."""
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def names_source(query: ImageNamesQuery) -> tuple[str, list[Any]]:
    """The FROM and WHERE clauses selecting the images `query` selects, with their parameters."""
    source, params = listing_source(query)
    if query.search_term:
        pattern = _like_pattern(query.search_term)
        source = f"{source} {'AND' if ' WHERE ' in source else 'WHERE'} {_SEARCH}"
        params = [*params, pattern, pattern]
    return source, params


class SqlImageRecordStorage(ImageRecordStorageBase):
    """Image records in the `images` table, on any engine the database port speaks."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db

    def get(self, image_name: str) -> ImageRecord:
        with self._db.read() as cursor:
            return _get(cursor, image_name)

    def save(
        self,
        image_name: str,
        image_origin: ResourceOrigin,
        image_category: ImageCategory,
        width: int,
        height: int,
        has_workflow: bool,
        is_intermediate: bool = False,
        starred: bool = False,
        session_id: str | None = None,
        node_id: str | None = None,
    ) -> ImageRecord:
        now = utc_now()
        values = {
            "image_name": image_name,
            "image_origin": ResourceOrigin(image_origin).value,
            "image_category": ImageCategory(image_category).value,
            "width": width,
            "height": height,
            "session_id": session_id,
            "node_id": node_id,
            "is_intermediate": is_intermediate,
            "starred": starred,
            "has_workflow": has_workflow,
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }
        with self._db.transaction() as cursor:
            cursor.execute(_INSERT, [values[column] for column in _COLUMNS])
            row = cursor.fetchone()
        assert row is not None, "INSERT ... RETURNING returns the row it inserted"
        return ImageRecord.model_validate(dict(row))

    def update(self, image_name: str, changes: ImageRecordChanges) -> ImageRecord:
        values = changes.model_dump(include=set(_UPDATABLE), exclude_none=True, mode="json")
        with self._db.transaction() as cursor:
            if values:
                assignments = ", ".join(f"{column} = ?" for column in values)
                cursor.execute(
                    f"UPDATE images SET {assignments}, updated_at = ? WHERE image_name = ?",
                    [*values.values(), utc_now(), image_name],
                )
            return _get(cursor, image_name)

    def delete(self, image_name: str) -> bool:
        with self._db.transaction() as cursor:
            cursor.execute(_DELETE, (image_name,))
            return cursor.rowcount > 0

    def delete_many(self, image_names: list[str]) -> list[str]:
        deleted: list[str] = []
        # One statement per name: an IN list would hit the engines' limits on parameters.
        with self._db.transaction() as cursor:
            for image_name in image_names:
                cursor.execute(_DELETE, (image_name,))
                if cursor.rowcount > 0:
                    deleted.append(image_name)
        return deleted

    def get_intermediates(self) -> list[str]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_INTERMEDIATES, (True,))
            return [row["image_name"] for row in cursor.fetchall()]

    def get_all_names(self) -> set[str]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_ALL_NAMES)
            return {row["image_name"] for row in cursor.fetchall()}

    def get_by_session(self, session_id: str) -> list[ImageRecord]:
        with self._db.read() as cursor:
            cursor.execute(_SELECT_BY_SESSION, (session_id,))
            return [ImageRecord.model_validate(dict(row)) for row in cursor.fetchall()]

    def get_many(self, query: ImageListQuery) -> OffsetPaginatedResults[ImageRecord]:
        limit, offset = query.limit, query.offset
        if query.categories is not None and not query.categories:
            return OffsetPaginatedResults(limit=limit, offset=offset, total=0, items=[])
        source, params = listing_source(query)
        with self._db.read() as cursor:
            order = NAMES_ORDERS[query.starred_first, query.order_dir]
            cursor.execute(LIST_PAGE.format(source=source, order=order), [*params, limit, offset])
            items = [ImageRecord.model_validate(dict(row)) for row in cursor.fetchall()]
            cursor.execute(LIST_COUNT.format(source=source), params)
            total_row = cursor.fetchone()
        assert total_row is not None, "an aggregate query always returns one row"
        return OffsetPaginatedResults(limit=limit, offset=offset, total=int(total_row["total"]), items=items)

    def get_image_names(self, query: ImageNamesQuery) -> ImageNamesResult:
        if query.categories is not None and not query.categories:
            return ImageNamesResult(image_names=[], starred_count=0, total_count=0)
        source, params = names_source(query)
        with self._db.read() as cursor:
            order = NAMES_ORDERS[query.starred_first, query.order_dir]
            cursor.execute(SELECT_NAMES.format(source=source, order=order), params)
            rows = cursor.fetchall()
        # As in InvokeAI, the starred are counted only when they come first.
        starred = sum(1 for row in rows if row["starred"]) if query.starred_first else 0
        names = [row["image_name"] for row in rows]
        return ImageNamesResult(image_names=names, starred_count=starred, total_count=len(names))


def _get(cursor: DbCursor, image_name: str) -> ImageRecord:
    cursor.execute(_SELECT, (image_name,))
    row = cursor.fetchone()
    if row is None:
        raise ImageRecordNotFoundError(image_name)
    return ImageRecord.model_validate(dict(row))
