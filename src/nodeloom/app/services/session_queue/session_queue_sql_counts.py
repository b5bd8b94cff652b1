"""The counts of a queue's items by status, one row per queue and one per batch for each status.

They change in the same transaction as the items they count, so that a status read, and the counts every
`QueueItemStatusChanged` carries, cost a few indexed rows however long the queue is. A queue's own rows have the
batch id `QUEUE_TOTAL`, which no batch has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable

from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import (
    FINISHED_STATUSES,
    QUEUE_ITEM_STATUS,
    QUEUE_ITEM_STATUSES,
    BatchStatus,
    SessionQueueStatus,
)
from nodeloom.app.services.shared.database.database_base import DbCursor, DbRow

_CHUNK = 500
"""The most rows one counts statement adds or reads: within every engine's limit on bound values."""

StatusChange = tuple[QUEUE_ITEM_STATUS | None, DbRow]
"""An item's status before a change (None: a new item) and its row after it."""


def count_changes(
    cursor: DbCursor, changes: Iterable[StatusChange], deleted: Iterable[DbRow] = ()
) -> tuple[dict[str, tuple[SessionQueueStatus, dict[str, dict[str, int]]]], Counter[str]]:
    """Moves each changed item from its old status's counts to its new one's, and takes the `deleted` items (as
    they were deleted, after their changes) out of them: one upsert, whose rows are locked in key order. Answers,
    by queue, its status and the counts of its changed items' batches after the change (see `read_statuses`), and
    how many items of it finished."""
    deltas = _deleted_deltas(deleted)
    finished: Counter[str] = Counter()
    batch_ids: dict[str, set[str]] = {}
    for old_status, row in changes:
        if old_status is not None:
            deltas[row["queue_id"], row["batch_id"], old_status] -= 1
        deltas[row["queue_id"], row["batch_id"], row["status"]] += 1
        if row["status"] in FINISHED_STATUSES and old_status not in FINISHED_STATUSES:
            finished[row["queue_id"]] += 1
        batch_ids.setdefault(row["queue_id"], set()).add(row["batch_id"])
    rows = _count_rows(deltas)
    if cursor.dialect == "postgres" and len(batch_ids) == 1 and len(rows) <= _CHUNK:
        # Most changes are of one item: its counts changed and read back in one statement.
        [(queue_id, batches)] = batch_ids.items()
        if len(batches) <= _CHUNK and all(row[0] == queue_id for row in rows):
            ids = sorted(batches)
            params = [value for row in rows for value in row]
            cursor.execute(
                sql.add_counts_select_statuses(len(rows), len(ids)),
                (*params, queue_id, sql.QUEUE_TOTAL, *ids, queue_id),
            )
            return {queue_id: _statuses(queue_id, ids, cursor.fetchall())}, finished
    _add_rows(cursor, rows)
    statuses = {queue_id: read_statuses(cursor, queue_id, batches) for queue_id, batches in batch_ids.items()}
    return statuses, finished


def count_deleted(cursor: DbCursor, deleted: list[DbRow]) -> None:
    """Takes deleted items out of the counts, dropping the count and batch rows of batches left with no items."""
    add_counts(cursor, _deleted_deltas(deleted))
    drop_emptied(cursor, deleted)


def _deleted_deltas(deleted: Iterable[DbRow]) -> Counter[tuple[str, str, str]]:
    deltas: Counter[tuple[str, str, str]] = Counter()
    for row in deleted:
        deltas[row["queue_id"], row["batch_id"], row["status"]] -= 1
    return deltas


def drop_emptied(cursor: DbCursor, deleted: Iterable[DbRow]) -> None:
    """Drops the count and batch rows of the deleted items' batches and queues that are left with no items, once
    the deletes are counted."""
    batches = {(row["queue_id"], row["batch_id"]) for row in deleted}
    queues = {(queue_id, sql.QUEUE_TOTAL) for queue_id, _ in batches}
    cursor.executemany(sql.DELETE_EMPTY_COUNTS[cursor.dialect], [*batches, *queues])
    if cursor.dialect == "postgres":
        # A retry in another process may be adding items to the batch (see `LOCK_BATCH`); taken in sorted order,
        # so that two deletes locking several batch rows never deadlock.
        for batch in sorted(batches):
            cursor.execute(sql.LOCK_BATCH, batch)
    cursor.executemany(sql.DELETE_EMPTY_BATCH, batches)


def add_counts(cursor: DbCursor, deltas: Counter[tuple[str, str, str]]) -> None:
    """Adds the (queue id, batch id, status) deltas to the batches' counts and their sums to the queues'."""
    _add_rows(cursor, _count_rows(deltas))


def _count_rows(deltas: Counter[tuple[str, str, str]]) -> list[tuple[str, str, str, int]]:
    """The (queue id, batch id, status, n) rows that add the deltas to the batches' counts and their sums to the
    queues', in key order: two writes lock the count rows they share in the same order, so that on PostgreSQL they
    wait for one another rather than deadlock."""
    totals: Counter[tuple[str, str, str]] = Counter()
    for (queue_id, _, status), n in deltas.items():
        totals[queue_id, sql.QUEUE_TOTAL, status] += n
    return sorted((*key, n) for key, n in (*totals.items(), *deltas.items()) if n)


def _add_rows(cursor: DbCursor, rows: list[tuple[str, str, str, int]]) -> None:
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        cursor.execute(sql.add_counts(len(chunk)), [value for row in chunk for value in row])


def read_statuses(
    cursor: DbCursor, queue_id: str, batch_ids: Collection[str]
) -> tuple[SessionQueueStatus, dict[str, dict[str, int]]]:
    """The queue's status and the counts of the given batches of it, by batch id."""
    ids = sorted(batch_ids)
    rows: list[DbRow] = []
    for start in range(0, max(1, len(ids)), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        cursor.execute(sql.select_statuses(len(chunk)), (queue_id, sql.QUEUE_TOTAL, *chunk, queue_id))
        rows += cursor.fetchall()
    return _statuses(queue_id, ids, rows)


def _statuses(
    queue_id: str, batch_ids: list[str], rows: Iterable[DbRow]
) -> tuple[SessionQueueStatus, dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, int]] = {}
    current: DbRow | None = None
    for row in rows:
        if row["status"] == sql.CURRENT:
            current = row
        else:
            counts.setdefault(row["batch_id"], _by_status(()))[row["status"]] = row["n"]
    total = counts.pop(sql.QUEUE_TOTAL, _by_status(()))
    queue = SessionQueueStatus(
        queue_id=queue_id,
        item_id=current["item_id"] if current else None,
        batch_id=current["batch_id"] if current else None,
        session_id=current["session_id"] if current else None,
        total=sum(total.values()),
        **total,
    )
    return queue, {batch_id: counts.get(batch_id, _by_status(())) for batch_id in batch_ids}


def queue_total(cursor: DbCursor, queue_id: str) -> int:
    return sum(_counts(cursor, queue_id, sql.QUEUE_TOTAL).values())


def queue_unfinished(cursor: DbCursor, queue_id: str) -> int:
    counts = _counts(cursor, queue_id, sql.QUEUE_TOTAL)
    return counts["pending"] + counts["in_progress"]


def queue_status(cursor: DbCursor, queue_id: str) -> SessionQueueStatus:
    return read_statuses(cursor, queue_id, ())[0]


def batch_status(
    cursor: DbCursor, queue_id: str, batch_id: str, origin: str | None, destination: str | None
) -> BatchStatus:
    return status_of_batch(queue_id, batch_id, _counts(cursor, queue_id, batch_id), origin, destination)


def status_of_batch(
    queue_id: str, batch_id: str, counts: dict[str, int], origin: str | None, destination: str | None
) -> BatchStatus:
    return BatchStatus(
        queue_id=queue_id,
        batch_id=batch_id,
        origin=origin,
        destination=destination,
        total=sum(counts.values()),
        **counts,
    )


def all_queue_counts(cursor: DbCursor) -> dict[str, dict[str, int]]:
    """Each queue with items, and its counts by status."""
    cursor.execute(sql.SELECT_ALL_QUEUE_COUNTS)
    by_queue: dict[str, list[DbRow]] = {}
    for row in cursor.fetchall():
        by_queue.setdefault(row["queue_id"], []).append(row)
    return {queue_id: _by_status(rows) for queue_id, rows in by_queue.items()}


def _counts(cursor: DbCursor, queue_id: str, batch_id: str) -> dict[str, int]:
    cursor.execute(sql.SELECT_COUNTS, (queue_id, batch_id))
    return _by_status(cursor.fetchall())


def _by_status(rows: Iterable[DbRow]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(QUEUE_ITEM_STATUSES, 0)
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts
