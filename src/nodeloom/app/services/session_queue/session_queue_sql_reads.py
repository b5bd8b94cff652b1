"""The queries of `SqlSessionQueue` that change nothing: its items, pages of them, statuses and counts."""

from __future__ import annotations

import json
from typing import Literal

from nodeloom.app.services.session_queue import session_queue_sql_counts as counts
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import (
    QUEUE_ITEM_STATUS,
    BatchNotFoundError,
    BatchStatus,
    IsEmptyResult,
    SessionQueueError,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueStatus,
)
from nodeloom.app.services.session_queue.session_queue_sql_rows import fetch_item_row, item_from_row, readable_items
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbRow
from nodeloom.app.services.shared.pagination import CursorPaginatedResults
from nodeloom.app.services.shared.timestamps import utc_now


class SqlSessionQueueReads(SessionQueueBase):
    """The reading half of `SqlSessionQueue`, which adds every change: each query runs in one `read()` block."""

    def __init__(self, db: DatabaseBase) -> None:
        self._db = db

    def is_processing_paused(self) -> bool:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_PAUSED)
            return cursor.fetchone() is not None

    def get_current(self, queue_id: str) -> SessionQueueItem | None:
        return self._select_one(sql.SELECT_CURRENT, queue_id)

    def get_next(self, queue_id: str) -> SessionQueueItem | None:
        return self._select_one(sql.SELECT_NEXT, queue_id)

    def _select_one(self, select: str, queue_id: str) -> SessionQueueItem | None:
        with self._db.read() as cursor:
            cursor.execute(select, (queue_id,))
            row = cursor.fetchone()
        return None if row is None else item_from_row(row)

    def get_queue_item(self, item_id: int) -> SessionQueueItem:
        with self._db.read() as cursor:
            row = fetch_item_row(cursor, item_id)
        return item_from_row(row)

    def get_queue_items_by_item_ids(self, item_ids: list[int]) -> list[SessionQueueItem]:
        rows: list[DbRow] = []
        with self._db.read() as cursor:
            for item_id in item_ids:
                cursor.execute(sql.SELECT_ITEM, (item_id,))
                rows += cursor.fetchall()
        return readable_items(rows)

    def list_queue_items(
        self,
        queue_id: str,
        limit: int,
        priority: int | None = None,
        cursor: int | None = None,
        status: QUEUE_ITEM_STATUS | None = None,
        destination: str | None = None,
    ) -> CursorPaginatedResults[SessionQueueItem]:
        if (priority is None) != (cursor is None):
            raise SessionQueueError("A page after a cursor needs both the last item's priority and its id")
        if limit < 1:
            raise SessionQueueError(f"A page holds at least one item, not {limit}")
        items: list[SessionQueueItem] = []
        while True:
            wanted = limit - len(items)
            # One row more than the page tells whether another page follows.
            params = {
                "queue_id": queue_id,
                "status": status,
                "destination": destination,
                "priority": priority,
                "item_id": cursor,
                "limit": wanted + 1,
            }
            with self._db.read() as db_cursor:
                query = sql.LIST_PAGE[status is not None, destination is not None, cursor is not None]
                db_cursor.execute(query, params)
                rows = db_cursor.fetchall()
            items += readable_items(rows[:wanted])
            if len(rows) <= wanted or len(items) == limit:
                return CursorPaginatedResults(limit=limit, has_more=len(rows) > wanted, items=items)
            # Unreadable rows were left out: the page is filled from the rows after them.
            priority, cursor = rows[wanted - 1]["priority"], rows[wanted - 1]["item_id"]

    def list_all_queue_items(self, queue_id: str, destination: str | None = None) -> list[SessionQueueItem]:
        with self._db.read() as cursor:
            if destination is None:
                cursor.execute(sql.SELECT_ALL, (queue_id,))
            else:
                cursor.execute(sql.SELECT_ALL_FOR_DESTINATION, (queue_id, destination))
            rows = cursor.fetchall()
        return readable_items(rows)

    def get_queue_item_ids(self, queue_id: str, order_dir: Literal["ASC", "DESC"] = "DESC") -> list[int]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_ITEM_IDS[order_dir], (queue_id,))
            return [row["item_id"] for row in cursor.fetchall()]

    def get_queue_status(self, queue_id: str) -> SessionQueueStatus:
        with self._db.read() as cursor:
            return counts.queue_status(cursor, queue_id)

    def get_all_queue_counts(self) -> dict[str, dict[str, int]]:
        with self._db.read() as cursor:
            return counts.all_queue_counts(cursor)

    def get_batch_items(self, queue_id: str, batch_id: str) -> list[SessionQueueItem]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_BATCH_ITEMS, (queue_id, batch_id))
            rows = cursor.fetchall()
        if not rows:
            raise BatchNotFoundError(f"Queue '{queue_id}' has no item of batch '{batch_id}'")
        return readable_items(rows)

    def get_batch_status(self, queue_id: str, batch_id: str) -> BatchStatus:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_BATCH_ORIGIN, (queue_id, batch_id))
            origin = cursor.fetchone()
            if origin is None:
                raise BatchNotFoundError(f"Queue '{queue_id}' has no item of batch '{batch_id}'")
            return counts.batch_status(cursor, queue_id, batch_id, origin["origin"], origin["destination"])

    def get_queue_item_stats(self, item_id: int) -> dict[str, object] | None:
        stored = self._read_column(sql.SELECT_STATS, item_id)
        stats: dict[str, object] | None = None if stored is None else json.loads(stored)
        return stats

    def get_webhook_due_url(self, item_id: int) -> str | None:
        return self._read_column(sql.SELECT_WEBHOOK_DUE_URL, item_id)

    def get_unfinished_webhook_batch_ids(self) -> list[str]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_UNFINISHED_WEBHOOK_BATCHES)
            return [row["batch_id"] for row in cursor.fetchall()]

    def get_webhooks_due(self) -> list[int]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_WEBHOOKS_DUE, (utc_now(),))
            return [row["item_id"] for row in cursor.fetchall()]

    def _read_column(self, select: str, item_id: int) -> str | None:
        """The one column `select` reads from the item's row; raises if there is no such item."""
        with self._db.read() as cursor:
            cursor.execute(select, (item_id,))
            row = cursor.fetchone()
        if row is None:
            raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")
        value: str | None = next(iter(dict(row).values()))
        return value

    def is_empty(self, queue_id: str) -> IsEmptyResult:
        with self._db.read() as cursor:
            return IsEmptyResult(is_empty=counts.queue_total(cursor, queue_id) == 0)
