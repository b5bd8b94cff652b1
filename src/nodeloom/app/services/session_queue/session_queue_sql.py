"""The session queue on the database port (SQLite; PostgreSQL, for several processors on one queue, is planned).

Counts by status are kept per queue and per batch, changed in the same transaction as the items, so that a
status change and its event cost a few indexed rows however long the queue is. The SQL is in
`session_queue_sql_statements`.

Only unfinished items count toward `max_queue_size`. Finished items are the queue's history: past
`max_history` of them (or past `max_history_days` old), the oldest are deleted as items finish, a bounded chunk
every `_prune_step` finishes (see `_prune_history`), so the queue's table and file stay bounded however many
sessions run.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from nodeloom.app.invocations.baseinvocation import describe_error
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import (
    BatchEnqueuedEvent,
    EventBase,
    QueueClearedEvent,
    QueueItemsRetriedEvent,
    QueueItemStatusChangedEvent,
)
from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import (
    FINISHED_STATUSES,
    QUEUE_ITEM_STATUS,
    QUEUE_ITEM_STATUSES,
    Batch,
    BatchExistsError,
    BatchLimits,
    BatchNotFoundError,
    BatchStatus,
    BatchValidationError,
    CancelAllExceptCurrentResult,
    CancelByBatchIDsResult,
    CancelByQueueIDResult,
    ClearResult,
    EnqueueBatchResult,
    IsEmptyResult,
    IsFullResult,
    PruneResult,
    QueueFullError,
    RetryItemsResult,
    SessionQueueError,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemUnreadableError,
    SessionQueueStatus,
)
from nodeloom.app.services.session_queue.session_queue_sql_batch import BatchSessions, new_session_json
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow
from nodeloom.app.services.shared.graph import STORED_SESSION, GraphExecutionState
from nodeloom.app.services.shared.graph_common import uuid_string
from nodeloom.app.services.shared.pagination import CursorPaginatedResults
from nodeloom.app.services.shared.timestamps import to_timestamp, utc_now

_UNFINISHED: frozenset[QUEUE_ITEM_STATUS] = frozenset({"pending", "in_progress"})

logger = logging.getLogger(__name__)

PRUNE_CHUNK = 1000
"""The most items one write deletes from a queue's history: pruning never stalls the write it rides on."""
PRUNE_STEP_MAX = 100
"""History is pruned each time this many more items of a queue have finished (fewer for a small history)."""


def _item_from_row(row: DbRow) -> SessionQueueItem:
    """The item of a row; raises `SessionQueueItemUnreadableError` when what is stored does not load."""
    data = dict(row)
    try:
        data["session"] = GraphExecutionState.model_validate_json(data["session"], context=STORED_SESSION)
        for key in ("field_values", "workflow"):
            if data[key] is not None:
                data[key] = json.loads(data[key])
        return SessionQueueItem.model_validate(data)
    except ValueError as error:  # a ValidationError, or a JSONDecodeError
        raise SessionQueueItemUnreadableError(row["item_id"], row["queue_id"], describe_error(error)) from error


def _readable_items(rows: Iterable[DbRow]) -> list[SessionQueueItem]:
    """The items of the rows, leaving out (and logging) those that cannot be read: one bad row must not make
    every listing that holds it fail."""
    items: list[SessionQueueItem] = []
    for row in rows:
        try:
            items.append(_item_from_row(row))
        except SessionQueueItemUnreadableError as error:
            logger.warning("Left out of a listing: %s", error)
    return items


@dataclass(frozen=True)
class _Error:
    type: str | None = None
    message: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class _Write:
    """A write transaction and the events to dispatch once it has committed."""

    cursor: DbCursor
    events: list[EventBase]


class SqlSessionQueue(SessionQueueBase):
    """The session queue on any `DatabaseBase`; its schema is `migrate_session_queue`.

    With `requeue_interrupted`, an item whose run was cut short (found in progress at start-up, or stopped by a
    shutdown) goes back to pending, keeping its place and its saved session, as long as it has run fewer than
    `max_attempts` times; then it is failed, so that an item that crashes the process cannot crash it forever.
    A batch over `limits` is refused (None: no limits). An item whose stored data does not load is left out of
    listings and fails when dequeued; read alone, it raises `SessionQueueItemUnreadableError`.
    """

    def __init__(
        self,
        db: DatabaseBase,
        events: EventServiceBase,
        max_queue_size: int = 10_000,
        requeue_interrupted: bool = False,
        max_attempts: int = 3,
        max_history: int | None = 10_000,
        max_history_days: float | None = None,
        limits: BatchLimits | None = None,
    ) -> None:
        self._db = db
        self._events = events
        self._max_queue_size = max_queue_size
        self._requeue_interrupted = requeue_interrupted
        self._max_attempts = max_attempts
        self._max_history = max_history
        self._max_history_age = None if max_history_days is None else timedelta(days=max_history_days)
        # A history of N items grows by up to N/100 (at most PRUNE_STEP_MAX) before it is cut back: each pruning
        # deletes enough rows to be worth its statements, and a small history stays at its limit.
        self._prune_step = PRUNE_STEP_MAX if max_history is None else min(PRUNE_STEP_MAX, max(1, max_history // 100))
        self._limits = limits
        # Held from a write's start until its events are dispatched, so that events go out in the order their
        # changes were committed: a client never sees an item's older status last.
        self._in_order = threading.Lock()

    @contextmanager
    def _write(self) -> Iterator[_Write]:
        events: list[EventBase] = []
        with self._in_order:
            with self._db.transaction() as cursor:
                yield _Write(cursor, events)
            # Only after the commit: a subscriber reacting to an event must find the change in the database.
            for event in events:
                self._events.dispatch(event)

    # --- status changes, counts and their events

    def _record(self, write: _Write, changes: list[tuple[QUEUE_ITEM_STATUS | None, DbRow]]) -> None:
        """Counts the changed rows (old status None: a new item), prunes the history of the queues where items
        finished, and queues one status event for each row.

        The events of one operation all carry the counts as they are after the whole operation.
        """
        deltas: Counter[tuple[str, str, str]] = Counter()
        finished: Counter[str] = Counter()
        for old_status, row in changes:
            if old_status is not None:
                deltas[row["queue_id"], row["batch_id"], old_status] -= 1
            deltas[row["queue_id"], row["batch_id"], row["status"]] += 1
            if row["status"] in FINISHED_STATUSES and old_status not in FINISHED_STATUSES:
                finished[row["queue_id"]] += 1
        _add_counts(write.cursor, deltas)
        queue_ids = {row["queue_id"] for _, row in changes}
        queues = {queue_id: _queue_status(write.cursor, queue_id) for queue_id in queue_ids}
        for queue_id, newly_finished in finished.items():
            if self._prune_history(write, queues[queue_id], newly_finished):
                queues[queue_id] = _queue_status(write.cursor, queue_id)
        batch_rows = {(row["queue_id"], row["batch_id"]): row for _, row in changes}
        batches = {
            key: _batch_status(write.cursor, *key, row["origin"], row["destination"]) for key, row in batch_rows.items()
        }
        write.events.extend(
            _status_event(row, old_status, batches[row["queue_id"], row["batch_id"]], queues[row["queue_id"]])
            for old_status, row in changes
        )

    def _change_status(
        self,
        write: _Write,
        targets: Iterable[tuple[int, QUEUE_ITEM_STATUS]],
        status: QUEUE_ITEM_STATUS,
        error: _Error = _Error(),
    ) -> list[DbRow]:
        """Moves each (item id, status it was read in) to `status`, with its counts and its event; the rows."""
        now = utc_now()
        completed_at = now if status in FINISHED_STATUSES else None
        changes: list[tuple[QUEUE_ITEM_STATUS | None, DbRow]] = []
        finishing = status in FINISHED_STATUSES
        for item_id, old_status in targets:
            write.cursor.execute(
                sql.SET_STATUS,
                (status, now, completed_at, error.type, error.message, error.traceback, finishing, item_id, old_status),
            )
            row = write.cursor.fetchone()
            if row is not None:
                changes.append((old_status, row))
        self._record(write, changes)
        return [row for _, row in changes]

    def _forget(self, write: _Write, deleted: list[DbRow]) -> None:
        """Takes deleted rows out of the counts, dropping the count and batch rows of batches left with no items."""
        deltas: Counter[tuple[str, str, str]] = Counter()
        for row in deleted:
            deltas[row["queue_id"], row["batch_id"], row["status"]] -= 1
        _add_counts(write.cursor, deltas)
        batches = {(row["queue_id"], row["batch_id"]) for row in deleted}
        queues = {(queue_id, sql.QUEUE_TOTAL) for queue_id, _ in batches}
        write.cursor.executemany(sql.DELETE_EMPTY_COUNTS, [*batches, *queues])
        write.cursor.executemany(sql.DELETE_EMPTY_BATCH, batches)

    def _prune_history(self, write: _Write, counts: SessionQueueStatus, newly_finished: int) -> bool:
        """Deletes a chunk of the queue's oldest finished items past the history's limits; whether any went.

        Runs only when the queue's finished count crosses a multiple of `_prune_step`, so that most finishes cost
        nothing more, and one that finds only items it must keep (of batches still running, or whose webhook is
        due) is not repeated by the very next finish.
        """
        finished = counts.completed + counts.failed + counts.canceled
        step = self._prune_step
        if finished // step == (finished - newly_finished) // step:
            return False
        deleted: list[DbRow] = []
        if self._max_history is not None and finished > self._max_history:
            excess = min(finished - self._max_history, PRUNE_CHUNK)
            write.cursor.execute(sql.PRUNE_OLDEST, (counts.queue_id, excess))
            deleted += write.cursor.fetchall()
        if self._max_history_age is not None and len(deleted) < PRUNE_CHUNK:
            cutoff = to_timestamp(datetime.now(UTC) - self._max_history_age)
            write.cursor.execute(sql.PRUNE_OLDER_THAN, (counts.queue_id, cutoff, PRUNE_CHUNK - len(deleted)))
            deleted += write.cursor.fetchall()
        if not deleted:
            return False
        self._forget(write, deleted)
        return True

    def _change_one(
        self,
        item_id: int,
        from_statuses: frozenset[QUEUE_ITEM_STATUS],
        change: Callable[[_Write, DbRow], list[DbRow]],
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
    ) -> DbRow:
        """Stores the session and stats, if given, and applies `change` to the item if it is in one of
        `from_statuses`, in one transaction; the item's row as it is then."""
        with self._write() as write:
            _keep_run(write.cursor, item_id, session, stats)
            row = _fetch_item_row(write.cursor, item_id)
            changed = change(write, row) if row["status"] in from_statuses else []
        return changed[0] if changed else row

    def _finish(
        self,
        item_id: int,
        status: QUEUE_ITEM_STATUS,
        from_statuses: frozenset[QUEUE_ITEM_STATUS],
        error: _Error = _Error(),
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
    ) -> DbRow:
        return self._change_one(
            item_id,
            from_statuses,
            lambda write, row: self._change_status(write, [(item_id, row["status"])], status, error),
            session,
            stats,
        )

    def _interrupt(self, write: _Write, item_id: int, attempts: int) -> list[DbRow]:
        """Requeues an in-progress item whose run was cut short, or fails it when it may not run again."""
        interruptions = attempts + 1
        if not self._requeue_interrupted:
            message = "The server stopped while this item was running"
        elif interruptions >= self._max_attempts:
            message = (
                f"The item was interrupted {interruptions} times, each time it ran, and is not retried again "
                f"(at most {self._max_attempts} attempts)"
            )
        else:
            write.cursor.execute(sql.REQUEUE_INTERRUPTED, (utc_now(), item_id))
            requeued = write.cursor.fetchall()
            self._record(write, [("in_progress", row) for row in requeued])
            return requeued
        return self._change_status(write, [(item_id, "in_progress")], "failed", _Error("Interrupted", message))

    def _room(self, cursor: DbCursor, queue_id: str) -> int:
        """How many more unfinished items the queue may take."""
        return max(0, self._max_queue_size - _queue_unfinished(cursor, queue_id))

    def _check_room(self, cursor: DbCursor, queue_id: str, requested: int) -> None:
        room = self._room(cursor, queue_id)
        if requested > room:
            raise QueueFullError(
                f"Queue '{queue_id}' has room for {room} more unfinished items (at most {self._max_queue_size}) "
                f"and {requested} were asked for"
            )

    # --- SessionQueueBase

    def recover_interrupted(self) -> list[int]:
        with self._write() as write:
            write.cursor.execute(sql.SELECT_ALL_IN_PROGRESS)
            rows = write.cursor.fetchall()
            for row in rows:
                self._interrupt(write, row["item_id"], row["attempts"])
        return [row["item_id"] for row in rows]

    def interrupt_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
    ) -> QUEUE_ITEM_STATUS:
        row = self._change_one(
            item_id,
            frozenset({"in_progress"}),
            lambda write, row: self._interrupt(write, item_id, row["attempts"]),
            session,
            stats,
        )
        status: QUEUE_ITEM_STATUS = row["status"]
        return status

    def enqueue_batch(
        self, queue_id: str, batch: Batch, prepend: bool, all_or_nothing: bool = False
    ) -> EnqueueBatchResult:
        if batch.batch_id == sql.QUEUE_TOTAL:
            raise BatchValidationError("A batch id must not be empty")
        sessions = BatchSessions(batch, self._limits)
        requested = batch.session_count()
        with self._write() as write:
            cursor = write.cursor
            room = self._room(cursor, queue_id)
            if room == 0:
                raise QueueFullError(
                    f"Queue '{queue_id}' is full: it holds {self._max_queue_size} unfinished items, its maximum, "
                    f"so none of the batch's {requested} sessions fit"
                )
            if all_or_nothing and requested > room:
                raise QueueFullError(
                    f"Queue '{queue_id}' has room for {room} of the batch's {requested} sessions (it holds at most "
                    f"{self._max_queue_size} unfinished items) and all_or_nothing was asked"
                )
            cursor.execute(sql.SELECT_BATCH_EXISTS, (queue_id, batch.batch_id))
            if cursor.fetchone() is not None:
                raise BatchExistsError(
                    f"Queue '{queue_id}' already holds batch '{batch.batch_id}': enqueue it under a new batch id"
                )
            priority = 0
            if prepend:
                cursor.execute(sql.SELECT_MAX_PENDING_PRIORITY, (queue_id,))
                row = cursor.fetchone()
                priority = 0 if row is None or row["priority"] is None else row["priority"] + 1
            now = utc_now()
            workflow = None if batch.workflow is None else json.dumps(batch.workflow)
            cursor.execute(sql.INSERT_BATCH, (queue_id, batch.batch_id, workflow))
            callback_url = None if batch.callback_url is None else str(batch.callback_url)
            session_ids: list[str] = []
            rows = []
            # What does not fit is left out from the end: the first sessions of the expansion, in order.
            for session_id, session, field_values in itertools.islice(sessions, room):
                session_ids.append(session_id)
                rows.append(
                    (
                        queue_id,
                        batch.batch_id,
                        session_id,
                        priority,
                        batch.origin,
                        batch.destination,
                        field_values,
                        session,
                        batch.timeout,
                        callback_url,
                        None,
                        now,
                        now,
                    )
                )
            cursor.executemany(sql.INSERT_ITEM, rows)
            _add_counts(cursor, Counter({(queue_id, batch.batch_id, "pending"): len(rows)}))
            # executemany returns no rows, RETURNING included; the session ids tell the new items apart.
            cursor.execute(sql.SELECT_BATCH_SESSION_IDS, (queue_id, batch.batch_id))
            item_ids = {row["session_id"]: row["item_id"] for row in cursor.fetchall()}
            result = EnqueueBatchResult(
                queue_id=queue_id,
                enqueued=len(session_ids),
                requested=requested,
                batch=batch,
                priority=priority,
                item_ids=[item_ids[session_id] for session_id in session_ids],
            )
            write.events.append(BatchEnqueuedEvent.build(result))
        return result

    def dequeue(self) -> SessionQueueItem | None:
        while True:
            with self._write() as write:
                now = utc_now()
                write.cursor.execute(sql.DEQUEUE, (now, now))
                row = write.cursor.fetchone()
                if row is None:
                    return None
                self._record(write, [("pending", row)])
            try:
                return _item_from_row(row)
            except SessionQueueItemUnreadableError as e:
                # An item whose session no longer loads (stored by an older nodeloom, a node pack gone) must
                # not block the queue: it fails, saying why, and the next item is taken.
                error = _Error("InvalidSession", f"The stored session could not be loaded: {e.reason}", "")
                self._finish(row["item_id"], "failed", _UNFINISHED, error)

    def get_current(self, queue_id: str) -> SessionQueueItem | None:
        return self._select_one(sql.SELECT_CURRENT, queue_id)

    def get_next(self, queue_id: str) -> SessionQueueItem | None:
        return self._select_one(sql.SELECT_NEXT, queue_id)

    def _select_one(self, select: str, queue_id: str) -> SessionQueueItem | None:
        with self._db.read() as cursor:
            cursor.execute(select, (queue_id,))
            row = cursor.fetchone()
        return None if row is None else _item_from_row(row)

    def get_queue_item(self, item_id: int) -> SessionQueueItem:
        with self._db.read() as cursor:
            row = _fetch_item_row(cursor, item_id)
        return _item_from_row(row)

    def get_queue_items_by_item_ids(self, item_ids: list[int]) -> list[SessionQueueItem]:
        rows: list[DbRow] = []
        with self._db.read() as cursor:
            for item_id in item_ids:
                cursor.execute(sql.SELECT_ITEM, (item_id,))
                rows += cursor.fetchall()
        return _readable_items(rows)

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
        where = (queue_id, *(value for value in (status, destination) if value is not None))
        items: list[SessionQueueItem] = []
        while True:
            wanted = limit - len(items)
            # One row more than the page tells whether another page follows.
            if cursor is None:
                params = (*where, wanted + 1)
            else:
                params = (*where, priority, cursor, wanted + 1, *where, priority, wanted + 1, wanted + 1)
            with self._db.read() as db_cursor:
                query = sql.LIST_PAGE[status is not None, destination is not None, cursor is not None]
                db_cursor.execute(query, params)
                rows = db_cursor.fetchall()
            items += _readable_items(rows[:wanted])
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
        return _readable_items(rows)

    def get_queue_item_ids(self, queue_id: str, order_dir: Literal["ASC", "DESC"] = "DESC") -> list[int]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_ITEM_IDS[order_dir], (queue_id,))
            return [row["item_id"] for row in cursor.fetchall()]

    def get_queue_status(self, queue_id: str) -> SessionQueueStatus:
        with self._db.read() as cursor:
            return _queue_status(cursor, queue_id)

    def get_all_queue_counts(self) -> dict[str, dict[str, int]]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_ALL_QUEUE_COUNTS)
            rows = cursor.fetchall()
        by_queue: dict[str, list[DbRow]] = {}
        for row in rows:
            by_queue.setdefault(row["queue_id"], []).append(row)
        return {queue_id: _by_status(queue_rows) for queue_id, queue_rows in by_queue.items()}

    def get_batch_items(self, queue_id: str, batch_id: str) -> list[SessionQueueItem]:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_BATCH_ITEMS, (queue_id, batch_id))
            rows = cursor.fetchall()
        if not rows:
            raise BatchNotFoundError(f"Queue '{queue_id}' has no item of batch '{batch_id}'")
        return _readable_items(rows)

    def get_batch_status(self, queue_id: str, batch_id: str) -> BatchStatus:
        with self._db.read() as cursor:
            cursor.execute(sql.SELECT_BATCH_ORIGIN, (queue_id, batch_id))
            origin = cursor.fetchone()
            if origin is None:
                raise BatchNotFoundError(f"Queue '{queue_id}' has no item of batch '{batch_id}'")
            return _batch_status(cursor, queue_id, batch_id, origin["origin"], origin["destination"])

    def set_queue_item_session(self, item_id: int, session: GraphExecutionState) -> None:
        self._update_item(sql.SET_SESSION, (session.model_dump_json(), utc_now(), item_id), item_id)

    def set_queue_item_stats(self, item_id: int, stats: InvocationStatsSummary) -> None:
        self._update_item(sql.SET_STATS, (json.dumps(stats.as_dict()), item_id), item_id)

    def _update_item(self, update: str, params: tuple[object, ...], item_id: int) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(update, params)
            if cursor.rowcount == 0:
                raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")

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
            cursor.execute(sql.SELECT_WEBHOOKS_DUE)
            return [row["item_id"] for row in cursor.fetchall()]

    def set_webhook_done(self, item_id: int, delivered: bool) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(sql.SET_WEBHOOK_STATE, ("delivered" if delivered else "given_up", item_id))

    def _read_column(self, select: str, item_id: int) -> str | None:
        """The one column `select` reads from the item's row; raises if there is no such item."""
        with self._db.read() as cursor:
            cursor.execute(select, (item_id,))
            row = cursor.fetchone()
        if row is None:
            raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")
        value: str | None = next(iter(dict(row).values()))
        return value

    def complete_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
    ) -> QUEUE_ITEM_STATUS:
        with self._write() as write:
            _keep_run(write.cursor, item_id, session, stats)
            row = _fetch_item_row(write.cursor, item_id)
            if row["status"] == "in_progress":
                row = self._change_status(write, [(item_id, "in_progress")], "completed")[0]
        status: QUEUE_ITEM_STATUS = row["status"]
        return status

    def fail_queue_item(
        self,
        item_id: int,
        error_type: str,
        error_message: str,
        error_traceback: str,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
    ) -> SessionQueueItem:
        error = _Error(error_type, error_message, error_traceback)
        return _item_from_row(self._finish(item_id, "failed", _UNFINISHED, error, session, stats))

    def cancel_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
    ) -> SessionQueueItem:
        return _item_from_row(self._finish(item_id, "canceled", _UNFINISHED, _Error(), session, stats))

    def cancel_by_batch_ids(self, queue_id: str, batch_ids: list[str]) -> CancelByBatchIDsResult:
        with self._write() as write:
            targets: list[DbRow] = []
            for batch_id in dict.fromkeys(batch_ids):
                write.cursor.execute(sql.SELECT_UNFINISHED_IN_BATCH, (queue_id, batch_id))
                targets += write.cursor.fetchall()
            canceled = self._cancel(write, targets)
        return CancelByBatchIDsResult(canceled=canceled)

    def cancel_by_queue_id(self, queue_id: str) -> CancelByQueueIDResult:
        return CancelByQueueIDResult(canceled=self._cancel_selected(sql.SELECT_UNFINISHED, queue_id))

    def cancel_all_except_current(self, queue_id: str) -> CancelAllExceptCurrentResult:
        return CancelAllExceptCurrentResult(canceled=self._cancel_selected(sql.SELECT_PENDING, queue_id))

    def _cancel_selected(self, select: str, queue_id: str) -> int:
        with self._write() as write:
            write.cursor.execute(select, (queue_id,))
            return self._cancel(write, write.cursor.fetchall())

    def _cancel(self, write: _Write, rows: list[DbRow]) -> int:
        return len(self._change_status(write, [(row["item_id"], row["status"]) for row in rows], "canceled"))

    def retry_items_by_id(self, queue_id: str, item_ids: list[int]) -> RetryItemsResult:
        with self._write() as write:
            cursor = write.cursor
            originals: list[DbRow] = []
            for item_id in dict.fromkeys(item_ids):
                cursor.execute(sql.SELECT_ITEM, (item_id,))
                row = cursor.fetchone()
                if row is not None and row["queue_id"] == queue_id and row["status"] in ("failed", "canceled"):
                    originals.append(row)
            self._check_room(cursor, queue_id, len(originals))
            now = utc_now()
            inserted: list[tuple[QUEUE_ITEM_STATUS | None, DbRow]] = []
            for row in originals:
                # The stored graph already holds the item's field values; only the execution starts afresh.
                graph_json = json.dumps(json.loads(row["session"])["graph"], separators=(",", ":"))
                session_id = uuid_string()
                cursor.execute(
                    sql.INSERT_ITEM_RETURNING,
                    (
                        queue_id,
                        row["batch_id"],
                        session_id,
                        row["priority"],
                        row["origin"],
                        row["destination"],
                        row["field_values"],
                        new_session_json(session_id, graph_json),
                        row["timeout"],
                        row["callback_url"],
                        row["item_id"],
                        now,
                        now,
                    ),
                )
                inserted += [(None, new_row) for new_row in cursor.fetchall()]
            self._record(write, inserted)
            retried = [row["item_id"] for row in originals]
            if retried:
                write.events.append(QueueItemsRetriedEvent(queue_id=queue_id, retried_item_ids=retried))
        return RetryItemsResult(queue_id=queue_id, retried_item_ids=retried)

    def delete_queue_item(self, item_id: int) -> None:
        with self._write() as write:
            write.cursor.execute(sql.SELECT_STATUS, (item_id,))
            row = write.cursor.fetchone()
            if row is None:
                raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")
            if row["status"] not in FINISHED_STATUSES:
                self._change_status(write, [(item_id, row["status"])], "canceled")
            write.cursor.execute(sql.DELETE_ITEM, (item_id,))
            self._forget(write, write.cursor.fetchall())

    def clear(self, queue_id: str) -> ClearResult:
        with self._write() as write:
            # Canceled first so that the processor hears it and stops the session it is running.
            write.cursor.execute(sql.SELECT_IN_PROGRESS, (queue_id,))
            self._cancel(write, write.cursor.fetchall())
            write.cursor.execute(sql.DELETE_QUEUE, (queue_id,))
            deleted = write.cursor.fetchall()
            self._forget(write, deleted)
            write.events.append(QueueClearedEvent(queue_id=queue_id))
        return ClearResult(deleted=len(deleted))

    def prune(self, queue_id: str) -> PruneResult:
        with self._write() as write:
            write.cursor.execute(sql.DELETE_FINISHED, (queue_id,))
            deleted = write.cursor.fetchall()
            self._forget(write, deleted)
        return PruneResult(deleted=len(deleted))

    def is_empty(self, queue_id: str) -> IsEmptyResult:
        with self._db.read() as cursor:
            return IsEmptyResult(is_empty=_queue_total(cursor, queue_id) == 0)

    def is_full(self, queue_id: str) -> IsFullResult:
        with self._db.read() as cursor:
            return IsFullResult(is_full=self._room(cursor, queue_id) == 0)


def _keep_run(
    cursor: DbCursor, item_id: int, session: GraphExecutionState | None, stats: InvocationStatsSummary | None
) -> None:
    """Stores the session as far as it ran and its stats, those given, in the caller's transaction."""
    if session is not None:
        cursor.execute(sql.SET_SESSION, (session.model_dump_json(), utc_now(), item_id))
    if stats is not None:
        cursor.execute(sql.SET_STATS, (json.dumps(stats.as_dict()), item_id))


def _fetch_item_row(cursor: DbCursor, item_id: int) -> DbRow:
    cursor.execute(sql.SELECT_ITEM, (item_id,))
    row = cursor.fetchone()
    if row is None:
        raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")
    return row


# The event's fields about the item, named as the item's columns are. The event is made from the row rather than
# from the item, which needs the item's session parsed: canceling 10,000 items
# parsed 10,000 sessions (5.6 s) while holding the database.
_EVENT_ITEM_FIELDS = tuple(
    name for name in QueueItemStatusChangedEvent.model_fields if name in SessionQueueItem.model_fields
)


def _status_event(
    row: DbRow, old_status: QUEUE_ITEM_STATUS | None, batch_status: BatchStatus, queue_status: SessionQueueStatus
) -> QueueItemStatusChangedEvent:
    return QueueItemStatusChangedEvent(
        **{name: row[name] for name in _EVENT_ITEM_FIELDS},
        old_status=old_status,
        batch_status=batch_status,
        queue_status=queue_status,
    )


def _add_counts(cursor: DbCursor, deltas: Counter[tuple[str, str, str]]) -> None:
    """Adds the (queue id, batch id, status) deltas to the batches' counts and their sums to the queues'."""
    totals: Counter[tuple[str, str, str]] = Counter()
    for (queue_id, _, status), n in deltas.items():
        totals[queue_id, sql.QUEUE_TOTAL, status] += n
    cursor.executemany(sql.ADD_COUNT, [(*key, n) for key, n in (*totals.items(), *deltas.items()) if n])


def _counts(cursor: DbCursor, queue_id: str, batch_id: str) -> dict[str, int]:
    cursor.execute(sql.SELECT_COUNTS, (queue_id, batch_id))
    return _by_status(cursor.fetchall())


def _by_status(rows: Iterable[DbRow]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(QUEUE_ITEM_STATUSES, 0)
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def _queue_total(cursor: DbCursor, queue_id: str) -> int:
    return sum(_counts(cursor, queue_id, sql.QUEUE_TOTAL).values())


def _queue_unfinished(cursor: DbCursor, queue_id: str) -> int:
    counts = _counts(cursor, queue_id, sql.QUEUE_TOTAL)
    return counts["pending"] + counts["in_progress"]


def _queue_status(cursor: DbCursor, queue_id: str) -> SessionQueueStatus:
    counts = _counts(cursor, queue_id, sql.QUEUE_TOTAL)
    cursor.execute(sql.SELECT_CURRENT_IDS, (queue_id,))
    current = cursor.fetchone()
    return SessionQueueStatus(
        queue_id=queue_id,
        item_id=current["item_id"] if current else None,
        batch_id=current["batch_id"] if current else None,
        session_id=current["session_id"] if current else None,
        total=sum(counts.values()),
        **counts,
    )


def _batch_status(
    cursor: DbCursor, queue_id: str, batch_id: str, origin: str | None, destination: str | None
) -> BatchStatus:
    counts = _counts(cursor, queue_id, batch_id)
    return BatchStatus(
        queue_id=queue_id,
        batch_id=batch_id,
        origin=origin,
        destination=destination,
        total=sum(counts.values()),
        **counts,
    )
