"""The session queue on the database port (SQLite, or PostgreSQL for several processes sharing one queue).

The SQL is in `session_queue_sql_statements`; an item's row is made and read in `session_queue_sql_rows`; the
counts by status, changed in the same transaction as the items, are kept by `session_queue_sql_counts`, and the
history (finished items) within its limits by `session_queue_sql_history`. The queries that change nothing are
in `session_queue_sql_reads`; here are the changes, each one transaction whose events are dispatched after its
commit. Only unfinished items count toward `max_queue_size`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import (
    BatchEnqueuedEvent,
    EventBase,
    ProcessingPausedChangedEvent,
    QueueClearedEvent,
    QueueItemsRetriedEvent,
    QueueItemStatusChangedEvent,
)
from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
from nodeloom.app.services.session_queue import session_queue_sql_counts as counts
from nodeloom.app.services.session_queue import session_queue_sql_processors as processors
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import (
    FINISHED_STATUSES,
    QUEUE_ITEM_STATUS,
    Batch,
    BatchExistsError,
    BatchLimits,
    CancelAllExceptCurrentResult,
    CancelByBatchIDsResult,
    CancelByQueueIDResult,
    ClearResult,
    EnqueueBatchResult,
    IsFullResult,
    ProcessorInfo,
    ProcessorStatus,
    PruneResult,
    QueueFullError,
    RetryItemsResult,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemTakenError,
    SessionQueueItemUnreadableError,
    WebhookClaimant,
    WebhookDueError,
)
from nodeloom.app.services.session_queue.session_queue_sql_batch import BatchSessions
from nodeloom.app.services.session_queue.session_queue_sql_change import change_one
from nodeloom.app.services.session_queue.session_queue_sql_counts import StatusChange
from nodeloom.app.services.session_queue.session_queue_sql_history import QueueHistory
from nodeloom.app.services.session_queue.session_queue_sql_reads import SqlSessionQueueReads
from nodeloom.app.services.session_queue.session_queue_sql_rows import (
    NewItem,
    fetch_item_row,
    item_from_row,
    status_event,
)
from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow
from nodeloom.app.services.shared.graph import GraphExecutionState
from nodeloom.app.services.shared.timestamps import to_timestamp, utc_now

_UNFINISHED: frozenset[QUEUE_ITEM_STATUS] = frozenset({"pending", "in_progress"})


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


class SqlSessionQueue(SqlSessionQueueReads):
    """The session queue on any `DatabaseBase`; its tables are made by migrations 1, 5 and 7.

    A processor holds the items it claims for as long as its heartbeats keep its lease: an item whose processor is
    silent for longer than `lease_s`, or known to be gone, is recovered as interrupted by any processor's sweep.
    With `requeue_interrupted`, an item whose run was cut short (its processor gone, or stopped by a
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
        lease_s: float = 60.0,
    ) -> None:
        super().__init__(db)
        self._events = events
        self._max_queue_size = max_queue_size
        self._requeue_interrupted = requeue_interrupted
        self._max_attempts = max_attempts
        self._history = QueueHistory(max_history, max_history_days)
        self._limits = limits
        self._lease_s = lease_s
        # Held from a write's start until its events are dispatched, so that events go out in the order their
        # changes were committed: a client never sees an item's older status last.
        self._in_order = threading.Lock()

    @contextmanager
    def _write(self) -> Iterator[_Write]:
        events: list[EventBase] = []
        with self._in_order, self._events.writing():
            with self._db.transaction() as cursor:
                yield _Write(cursor, events)
                # Stored with the change, where events are stored; handed on only after the commit, as a subscriber
                # reacting to an event must find the change in the database.
                hand_on = self._events.dispatch_in(cursor, events)
            hand_on()

    # --- status changes, counts and their events

    def _record(self, write: _Write, changes: list[StatusChange], deleted: Iterable[DbRow] = ()) -> None:
        """Counts the changed rows, and the rows `deleted` after their changes, prunes the history of the queues
        where items finished, and queues one status event for each changed row.

        The events of one operation all carry the counts as they are after the whole operation.
        """
        statuses, finished = counts.count_changes(write.cursor, changes, deleted)
        for queue_id, newly_finished in finished.items():
            if self._history.prune(write.cursor, statuses[queue_id][0], newly_finished):
                statuses[queue_id] = counts.read_statuses(write.cursor, queue_id, statuses[queue_id][1])
        batches = {
            (row["queue_id"], row["batch_id"]): counts.status_of_batch(
                row["queue_id"],
                row["batch_id"],
                statuses[row["queue_id"]][1][row["batch_id"]],
                row["origin"],
                row["destination"],
            )
            for _, row in changes
        }
        write.events.extend(
            status_event(row, old_status, batches[row["queue_id"], row["batch_id"]], statuses[row["queue_id"]][0])
            for old_status, row in changes
        )

    def _change_status(
        self,
        write: _Write,
        targets: Iterable[tuple[int, QUEUE_ITEM_STATUS]],
        status: QUEUE_ITEM_STATUS,
        error: _Error = _Error(),
        processor_id: str | None = None,
        release: bool = False,
    ) -> list[DbRow]:
        """Moves each (item id, status it was read in) to `status`, with its counts and its event; the rows.

        Made by the processor `processor_id`, it changes only the items that processor holds; `release` leaves the
        items held by none."""
        changes = self._set_status(write, targets, status, error, processor_id, release)
        self._record(write, changes)
        return [row for _, row in changes]

    def _set_status(
        self,
        write: _Write,
        targets: Iterable[tuple[int, QUEUE_ITEM_STATUS]],
        status: QUEUE_ITEM_STATUS,
        error: _Error = _Error(),
        processor_id: str | None = None,
        release: bool = False,
    ) -> list[StatusChange]:
        """`_change_status` but for the counts and events: the changes, for `_record`."""
        change = _status_change(status, error, release)
        held = processor_id is not None
        if held:
            change["processor_id"] = processor_id
        changes: list[StatusChange] = []
        for item_id, old_status in targets:
            write.cursor.execute(sql.SET_STATUS[held], {**change, "item_id": item_id, "old_status": old_status})
            row = write.cursor.fetchone()
            if row is not None:
                changes.append((old_status, row))
        return changes

    def _change_one(self, change: str, params: dict[str, object], old_status: QUEUE_ITEM_STATUS) -> DbRow | None:
        """PostgreSQL: makes `change`, an update of one item from `old_status`, with its counts and its event in
        one statement (see `session_queue_sql_change`); the item's row, None where it changed nothing.

        The events dispatched before are stored first, in a transaction of their own, so that they are numbered
        before the change's. A finish that is due to prune the queue's history prunes it next, in its own write.
        """
        self._events.flush()
        store = self._events.stores_queue_events
        with self._in_order, self._events.writing():
            with self._db.statement() as cursor:
                params = {**params, "old_status": old_status, "timestamp": int(time.time()), "now": utc_now()}
                cursor.execute(change_one(change, store), params)
                row = cursor.fetchone()
                if row is None:
                    return None
                event = QueueItemStatusChangedEvent.model_validate_json(row["event"])
                hand_on = (
                    self._events.stored(row["event_id"], event) if store else self._events.dispatch_in(cursor, [event])
                )
            hand_on()
        if event.status in FINISHED_STATUSES and self._history.due(event.queue_status, 1):
            with self._write() as write:
                self._history.prune(write.cursor, event.queue_status, 1)
        return row

    def _finish(
        self,
        item_id: int,
        status: QUEUE_ITEM_STATUS,
        from_statuses: frozenset[QUEUE_ITEM_STATUS],
        error: _Error = _Error(),
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> DbRow:
        """Moves the item to `status` if it is in one of `from_statuses`, storing the session and stats given; the
        item's row as it is then. Made by the processor `processor_id`, it changes nothing of an item that
        processor no longer holds, and raises `SessionQueueItemTakenError`."""
        if processor_id is not None and "in_progress" in from_statuses and self._db.dialect == "postgres":
            # A processor finishing the item it runs, the most frequent change of all.
            finish = {
                **_status_change(status, error, session=session, stats=stats),
                "item_id": item_id,
                "processor_id": processor_id,
            }
            row = self._change_one(sql.SET_STATUS[True], finish, "in_progress")
            if row is not None:
                return row
        with self._write() as write:
            _keep_run(write.cursor, item_id, session, stats, processor_id)
            # Most often the item is running (a processor finishing it): the change guarded by that status needs
            # no read first.
            changed = (
                self._change_status(write, [(item_id, "in_progress")], status, error, processor_id)
                if "in_progress" in from_statuses
                else []
            )
            if changed:
                return changed[0]
            row = _held_row(write.cursor, item_id, processor_id)
            if row["status"] in from_statuses:
                changed = self._change_status(write, [(item_id, row["status"])], status, error, processor_id)
        return changed[0] if changed else row

    def _interrupt(
        self, write: _Write, item_id: int, attempts: int, why: str, processor_id: str | None = None
    ) -> list[DbRow]:
        """Requeues an in-progress item whose run was cut short (`why`), or fails it when it may not run again;
        either way its processor (`processor_id`, where it is the one interrupting) no longer holds it."""
        interruptions = attempts + 1
        if not self._requeue_interrupted:
            message = f"{why} while this item was running"
        elif interruptions >= self._max_attempts:
            message = (
                f"The item was interrupted {interruptions} times, each time it ran, and is not retried again "
                f"(at most {self._max_attempts} attempts)"
            )
        else:
            held = processor_id is not None
            params = (utc_now(), item_id, processor_id) if held else (utc_now(), item_id)
            write.cursor.execute(sql.REQUEUE_INTERRUPTED[held], params)
            requeued = write.cursor.fetchall()
            self._record(write, [("in_progress", row) for row in requeued])
            return requeued
        error = _Error("Interrupted", message)
        return self._change_status(write, [(item_id, "in_progress")], "failed", error, processor_id, release=True)

    def _room(self, cursor: DbCursor, queue_id: str) -> int:
        """How many more unfinished items the queue may take."""
        return max(0, self._max_queue_size - counts.queue_unfinished(cursor, queue_id))

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
            processors.forget_gone(write.cursor, self._lease_s)
            write.cursor.execute(sql.SELECT_ORPHANED[write.cursor.dialect], (processors.lease_cutoff(self._lease_s),))
            rows = write.cursor.fetchall()
            for row in rows:
                why = (
                    f"The processor {row['processor_id']} stopped, or went silent for longer than its lease "
                    f"({self._lease_s:g} s),"
                    if row["processor_id"] is not None
                    else "The server stopped"
                )
                self._interrupt(write, row["item_id"], row["attempts"], why)
        return [row["item_id"] for row in rows]

    def heartbeat(self, processor: ProcessorInfo, item_id: int | None = None, node_id: str | None = None) -> None:
        with self._db.transaction() as cursor:
            processors.heartbeat(cursor, processor, item_id, node_id)

    def deregister_processor(self, processor_id: str) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(sql.DELETE_PROCESSOR, (processor_id,))

    def list_processors(self) -> list[ProcessorStatus]:
        with self._db.read() as cursor:
            return processors.list_processors(cursor, self._lease_s)

    def interrupt_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> QUEUE_ITEM_STATUS:
        with self._write() as write:
            _keep_run(write.cursor, item_id, session, stats, processor_id)
            row = _held_row(write.cursor, item_id, processor_id)
            if row["status"] == "in_progress":
                why = "The server stopped"
                row = next(iter(self._interrupt(write, item_id, row["attempts"], why, processor_id)), row)
        status: QUEUE_ITEM_STATUS = row["status"]
        return status

    def enqueue_batch(
        self, queue_id: str, batch: Batch, prepend: bool, all_or_nothing: bool = False
    ) -> EnqueueBatchResult:
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
            new = NewItem.of_batch(queue_id, batch, priority)
            # What does not fit is left out from the end: the first sessions of the expansion, in order.
            rows = [new.row(graph, field_values, now) for graph, field_values in itertools.islice(sessions, room)]
            cursor.executemany(sql.INSERT_ITEM, rows)
            counts.add_counts(cursor, Counter({(queue_id, batch.batch_id, "pending"): len(rows)}))
            # executemany returns no rows, RETURNING included; the session ids tell the new items apart.
            cursor.execute(sql.SELECT_BATCH_SESSION_IDS, (queue_id, batch.batch_id))
            item_ids = {row["session_id"]: row["item_id"] for row in cursor.fetchall()}
            result = EnqueueBatchResult(
                queue_id=queue_id,
                enqueued=len(rows),
                requested=requested,
                batch=batch,
                priority=priority,
                item_ids=[item_ids[row["session_id"]] for row in rows],
            )
            write.events.append(BatchEnqueuedEvent.build(result))
        return result

    def set_processing_paused(self, paused: bool) -> None:
        with self._write() as write:
            if paused:
                write.cursor.execute(sql.PAUSE, (utc_now(),))
            else:
                write.cursor.execute(sql.RESUME)
            if write.cursor.rowcount > 0:
                write.events.append(ProcessingPausedChangedEvent(paused=paused))

    def dequeue(self, processor_id: str) -> SessionQueueItem | None:
        while True:
            claim: dict[str, object] = {"now": utc_now(), "processor_id": processor_id}
            if self._db.dialect == "postgres":
                row = self._change_one(sql.DEQUEUE["postgres"], claim, "pending")
            else:
                with self._write() as write:
                    write.cursor.execute(sql.DEQUEUE["sqlite"], claim)
                    row = write.cursor.fetchone()
                    if row is not None:
                        self._record(write, [("pending", row)])
            if row is None:
                return None
            try:
                return item_from_row(row)
            except SessionQueueItemUnreadableError as e:
                # An item whose session no longer loads (stored by an older nodeloom, a node pack gone) must
                # not block the queue: it fails, saying why, and the next item is taken.
                error = _Error("InvalidSession", f"The stored session could not be loaded: {e.reason}", "")
                self._finish(row["item_id"], "failed", _UNFINISHED, error)

    def set_queue_item_session(
        self, item_id: int, session: GraphExecutionState, processor_id: str | None = None
    ) -> None:
        with self._db.transaction() as cursor:
            _update_item(cursor, sql.SET_SESSION, (session.model_dump_json(), utc_now()), item_id, processor_id)

    def set_queue_item_stats(self, item_id: int, stats: InvocationStatsSummary) -> None:
        with self._db.transaction() as cursor:
            _update_item(cursor, sql.SET_STATS, (json.dumps(stats.as_dict()),), item_id)

    def claim_webhook(self, item_id: int, claimant: str, lease_s: float) -> bool:
        now = datetime.now(UTC)
        claim = {
            "item_id": item_id,
            "claimant": claimant,
            "now": to_timestamp(now),
            "until": to_timestamp(now + timedelta(seconds=lease_s)),
        }
        with self._db.transaction() as cursor:
            cursor.execute(sql.CLAIM_WEBHOOK, claim)
            return cursor.rowcount == 1

    def set_webhook_done(self, item_id: int, delivered: bool, claimant: str) -> None:
        state = "delivered" if delivered else "given_up"
        with self._db.transaction() as cursor:
            cursor.execute(
                sql.SET_WEBHOOK_STATE, {"state": state, "item_id": item_id, "claimant": claimant, "now": utc_now()}
            )

    def release_webhook_claims(self, claimant: str) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(sql.RELEASE_WEBHOOK_CLAIMS, (claimant,))

    def release_gone_webhook_claims(self) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(sql.SELECT_WEBHOOK_CLAIMANTS)
            for row in cursor.fetchall():
                claimant = WebhookClaimant.parse(row["webhook_claimed_by"])
                if (
                    claimant is not None
                    and claimant.host == processors.this_host()
                    and processors.process_gone(claimant.pid, claimant.started_at)
                ):
                    cursor.execute(sql.RELEASE_WEBHOOK_CLAIMS, (row["webhook_claimed_by"],))

    def complete_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> QUEUE_ITEM_STATUS:
        row = self._finish(item_id, "completed", frozenset({"in_progress"}), _Error(), session, stats, processor_id)
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
        processor_id: str | None = None,
    ) -> SessionQueueItem:
        error = _Error(error_type, error_message, error_traceback)
        return item_from_row(self._finish(item_id, "failed", _UNFINISHED, error, session, stats, processor_id))

    def cancel_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> SessionQueueItem:
        return item_from_row(self._finish(item_id, "canceled", _UNFINISHED, _Error(), session, stats, processor_id))

    def cancel_by_batch_ids(self, queue_id: str, batch_ids: list[str]) -> CancelByBatchIDsResult:
        with self._write() as write:
            _lock_bulk(write.cursor, queue_id)
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
            _lock_bulk(write.cursor, queue_id)
            write.cursor.execute(select, (queue_id,))
            return self._cancel(write, write.cursor.fetchall())

    def _cancel(self, write: _Write, rows: list[DbRow]) -> int:
        return len(self._change_status(write, [(row["item_id"], row["status"]) for row in rows], "canceled"))

    def retry_items_by_id(self, queue_id: str, item_ids: list[int]) -> RetryItemsResult:
        with self._write() as write:
            cursor = write.cursor
            if cursor.dialect == "postgres":
                # First, before the originals are read, so that a pruning of their batches' history in another
                # process leaves them alone until this retry commits (see `LOCK_RETRIED_BATCH`).
                cursor.execute(sql.SELECT_RETRIED_BATCHES, (queue_id, list(item_ids)))
                for batch in cursor.fetchall():
                    cursor.execute(sql.LOCK_RETRIED_BATCH, (queue_id, batch["batch_id"]))
            originals: list[DbRow] = []
            for item_id in dict.fromkeys(item_ids):
                cursor.execute(sql.SELECT_ITEM, (item_id,))
                row = cursor.fetchone()
                if row is not None and row["queue_id"] == queue_id and row["status"] in ("failed", "canceled"):
                    originals.append(row)
            self._check_room(cursor, queue_id, len(originals))
            now = utc_now()
            inserted: list[StatusChange] = []
            for row in originals:
                cursor.execute(sql.INSERT_ITEM_RETURNING, NewItem.retry_row(row, now))
                inserted += [(None, new_row) for new_row in cursor.fetchall()]
            self._record(write, inserted)
            # Last, once no other row is to be locked: a delete holding the batch's row waits for nothing here.
            batches = {row["batch_id"]: row["workflow"] for row in originals}
            cursor.executemany(sql.KEEP_BATCH, [(queue_id, *batch) for batch in sorted(batches.items())])
            retried = [row["item_id"] for row in originals]
            if retried:
                write.events.append(QueueItemsRetriedEvent(queue_id=queue_id, retried_item_ids=retried))
        return RetryItemsResult(queue_id=queue_id, retried_item_ids=retried)

    def delete_queue_item(self, item_id: int) -> None:
        with self._write() as write:
            row = fetch_item_row(write.cursor, item_id)
            if write.cursor.dialect == "postgres":
                _lock_bulk(write.cursor, row["queue_id"])
                # Read again once no other delete runs: one may have taken the item meanwhile.
                row = fetch_item_row(write.cursor, item_id)
            changes: list[StatusChange] = []
            while row["status"] not in FINISHED_STATUSES:
                changes = self._set_status(write, [(item_id, row["status"])], "canceled")
                if changes:
                    break
                # A processor claimed or finished it since it was read: canceled from what it is now.
                row = fetch_item_row(write.cursor, item_id)
            canceled = bool(changes)
            write.cursor.execute(sql.DELETE_ITEM, (item_id,))
            deleted = write.cursor.fetchall()
            # Counted with its cancel once deleted, so that the history pruning the cancel may set off cannot take it.
            self._record(write, changes, deleted)
            counts.drop_emptied(write.cursor, deleted)
        # Raised once the cancel has committed: the item stopped, and only its row is kept.
        if not deleted:
            raise WebhookDueError(
                f"Queue item {item_id} {'was canceled and ' if canceled else ''}is kept while its webhook is "
                "still to be called; it can be deleted once the call is made or given up"
            )

    def clear(self, queue_id: str) -> ClearResult:
        with self._write() as write:
            cursor = write.cursor
            _lock_bulk(cursor, queue_id)
            # The items not running go first, before the cancels lock count rows: a processor claiming one holds its
            # row while it waits for count rows.
            cursor.execute(sql.DELETE_NOT_RUNNING, (queue_id,))
            deleted = cursor.fetchall()
            # The running ones are canceled, so that their processors hear it and stop their sessions, and go too,
            # with those that finished, or went back to pending, since the first delete read them as running; all
            # are counted in one upsert, which locks its rows in key order.
            cursor.execute(sql.SELECT_IN_PROGRESS, (queue_id,))
            running = cursor.fetchall()
            changes = self._set_status(write, [(row["item_id"], row["status"]) for row in running], "canceled")
            cursor.execute(sql.DELETE_NOT_RUNNING, (queue_id,))
            deleted += cursor.fetchall()
            self._record(write, changes, deleted)
            counts.drop_emptied(cursor, deleted)
            write.events.append(QueueClearedEvent(queue_id=queue_id))
        return ClearResult(deleted=len(deleted))

    def prune(self, queue_id: str) -> PruneResult:
        with self._write() as write:
            _lock_bulk(write.cursor, queue_id)
            write.cursor.execute(sql.DELETE_FINISHED, (queue_id,))
            deleted = write.cursor.fetchall()
            counts.count_deleted(write.cursor, deleted)
        return PruneResult(deleted=len(deleted))

    def is_full(self, queue_id: str) -> IsFullResult:
        with self._db.read() as cursor:
            return IsFullResult(is_full=self._room(cursor, queue_id) == 0)


def _lock_bulk(cursor: DbCursor, queue_id: str) -> None:
    """Takes the queue's lock of the writes that delete items or change several (PostgreSQL, see
    `LOCK_QUEUE_BULK`), first in the transaction."""
    if cursor.dialect == "postgres":
        cursor.execute(sql.LOCK_QUEUE_BULK, (queue_id,))


def _status_change(
    status: QUEUE_ITEM_STATUS,
    error: _Error,
    release: bool = False,
    session: GraphExecutionState | None = None,
    stats: InvocationStatsSummary | None = None,
) -> dict[str, object]:
    """The values `SET_STATUS` binds but the item's id, its status read and its processor's id."""
    now = utc_now()
    finishing = status in FINISHED_STATUSES
    return {
        "status": status,
        "updated_at": now,
        "completed_at": now if finishing else None,
        "error_type": error.type,
        "error_message": error.message,
        "error_traceback": error.traceback,
        "finishing": finishing,
        "release": release,
        "session": None if session is None else session.model_dump_json(),
        "stats": None if stats is None else json.dumps(stats.as_dict()),
    }


def _keep_run(
    cursor: DbCursor,
    item_id: int,
    session: GraphExecutionState | None,
    stats: InvocationStatsSummary | None,
    processor_id: str | None = None,
) -> None:
    """Stores the session as far as it ran and its stats, those given, in the caller's transaction; where the
    processor `processor_id` stores them, only while it holds the item."""
    values: tuple[object, ...]
    if session is not None and stats is not None:
        update, values = sql.SET_RUN, (session.model_dump_json(), utc_now(), json.dumps(stats.as_dict()))
    elif session is not None:
        update, values = sql.SET_SESSION, (session.model_dump_json(), utc_now())
    elif stats is not None:
        update, values = sql.SET_STATS, (json.dumps(stats.as_dict()),)
    else:
        return
    _execute_held(cursor, update, values, item_id, processor_id)


def _update_item(
    cursor: DbCursor, update: str, values: tuple[object, ...], item_id: int, processor_id: str | None = None
) -> None:
    """Applies an update of one item (`... WHERE item_id = ?`, bound to `values` and the id); raises if the item
    is gone, or if the processor `processor_id` making it no longer holds it."""
    if _execute_held(cursor, update, values, item_id, processor_id) == 0:
        _held_row(cursor, item_id, processor_id)
        raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")


def _execute_held(
    cursor: DbCursor, update: str, values: tuple[object, ...], item_id: int, processor_id: str | None
) -> int:
    """Runs an update of one item, guarded by the processor holding it where one (`processor_id`) makes it; how
    many rows it changed."""
    if processor_id is None:
        cursor.execute(update, (*values, item_id))
    else:
        cursor.execute(update + sql.HELD_BY, (*values, item_id, processor_id))
    return cursor.rowcount


def _held_row(cursor: DbCursor, item_id: int, processor_id: str | None) -> DbRow:
    """The item's row; raises `SessionQueueItemTakenError` where the processor `processor_id` no longer holds it."""
    row = fetch_item_row(cursor, item_id)
    if processor_id is not None and row["processor_id"] != processor_id:
        held_by = "no processor" if row["processor_id"] is None else f"processor {row['processor_id']}"
        raise SessionQueueItemTakenError(
            f"Queue item {item_id} was taken from processor {processor_id}, whose lease lapsed (it is now "
            f"{row['status']}, held by {held_by}): what that processor would write of it is dropped"
        )
    return row
