"""The queue's history, its finished items, kept within its limits as items finish.

Past `max_history` finished items of a queue (or past `max_history_days` old), the oldest are deleted, a bounded
chunk every few finishes, in the transaction that finished them: the queue's table and file stay bounded however
many sessions run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nodeloom.app.services.session_queue import session_queue_sql_counts as counts
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import FINISHED_STATUSES, SessionQueueStatus
from nodeloom.app.services.shared.database.database_base import DbCursor, DbRow
from nodeloom.app.services.shared.timestamps import to_timestamp

PRUNE_CHUNK = 1000
"""The most items one write deletes from a queue's history: pruning never stalls the write it rides on."""
PRUNE_STEP_MAX = 100
"""History is pruned each time this many more items of a queue have finished (fewer for a small history)."""


class QueueHistory:
    """The limits of each queue's history (None: no limit), and the pruning that keeps it within them."""

    def __init__(self, max_history: int | None, max_history_days: float | None) -> None:
        self._max_history = max_history
        self._max_age = None if max_history_days is None else timedelta(days=max_history_days)
        # A history of N items grows by up to N/100 (at most PRUNE_STEP_MAX) before it is cut back: each pruning
        # deletes enough rows to be worth its statements, and a small history stays at its limit.
        self._step = PRUNE_STEP_MAX if max_history is None else min(PRUNE_STEP_MAX, max(1, max_history // 100))
        # The queues whose pruning was left for later, as it would have waited for a lock: the next finish prunes.
        self._put_off: set[str] = set()

    def due(self, queue: SessionQueueStatus, newly_finished: int) -> bool:
        """Whether the queue's history is pruned once `newly_finished` more of its items have finished, leaving it
        as `queue` tells: when its finished count crosses a multiple of the step, so that most finishes cost
        nothing more, and one that finds only items it must keep (of batches still running, or whose webhook is
        due) is not repeated by the very next finish; or when a pruning was put off for a lock."""
        finished = _finished(queue)
        crossed = finished // self._step != (finished - newly_finished) // self._step
        return crossed or queue.queue_id in self._put_off

    def prune(self, cursor: DbCursor, queue: SessionQueueStatus, newly_finished: int) -> bool:
        """Deletes a chunk of the queue's oldest finished items past the limits, in the caller's transaction, with
        their counts, where it is `due`; whether any went."""
        if not self.due(queue, newly_finished):
            return False
        finished = _finished(queue)
        statuses = _lock(cursor, queue)
        if statuses is None:
            self._put_off.add(queue.queue_id)
            return False
        self._put_off.discard(queue.queue_id)
        deleted: list[DbRow] = []
        if self._max_history is not None and finished > self._max_history:
            excess = min(finished - self._max_history, PRUNE_CHUNK)
            deleted += _delete_oldest(cursor, queue.queue_id, statuses, None, excess)
        if self._max_age is not None and len(deleted) < PRUNE_CHUNK:
            cutoff = to_timestamp(datetime.now(UTC) - self._max_age)
            deleted += _delete_oldest(cursor, queue.queue_id, statuses, cutoff, PRUNE_CHUNK - len(deleted))
        if not deleted:
            return False
        counts.count_deleted(cursor, deleted)
        return True


def _finished(queue: SessionQueueStatus) -> int:
    return queue.completed + queue.failed + queue.canceled


def _lock(cursor: DbCursor, queue: SessionQueueStatus) -> list[str] | None:
    """PostgreSQL: what pruning the queue's history takes, locked; the finished statuses whose items it may delete,
    or None where it is left for a later pruning (on SQLite, the one writer, every status).

    The write it rides on holds the rows of its own change, counts included, and another write waiting for those
    may hold what pruning needs: so pruning never waits. It takes at once, or leaves the history for later, the
    queue's lock of deletes (see `LOCK_QUEUE_BULK`) and the queue's counts of each finished status it has items of
    (no other write then holds a count row it changes: a batch whose items it deletes has none to run, and a retry
    of one leaves it alone, see `LOCK_RETRIED_BATCH`), and it skips the items another write holds. It deletes items
    of those statuses only, as a status's first item may finish meanwhile, its new count row not locked.
    """
    if cursor.dialect != "postgres":  # SQLite runs one writer at a time: nothing else holds a row
        return sorted(FINISHED_STATUSES)
    cursor.execute(sql.TRY_LOCK_QUEUE_BULK, (queue.queue_id,))
    row = cursor.fetchone()
    if row is None or not row["locked"]:
        return None
    cursor.execute(sql.LOCK_FINISHED_COUNTS, (queue.queue_id,))
    statuses = [row["status"] for row in cursor.fetchall()]
    if any(getattr(queue, status) > 0 and status not in statuses for status in FINISHED_STATUSES):
        return None
    return statuses


def _delete_oldest(cursor: DbCursor, queue_id: str, statuses: list[str], cutoff: str | None, limit: int) -> list[DbRow]:
    """Deletes up to `limit` of the queue's oldest finished items that may go (of the `statuses` pruning locked;
    finished before `cutoff`, if given); their rows."""
    older_than = cutoff is not None
    before = () if cutoff is None else (cutoff,)
    if cursor.dialect != "postgres":  # SQLite runs one writer at a time: no retry runs meanwhile
        cursor.execute(sql.PRUNE_HISTORY[older_than, False], (queue_id, *before, limit))
        return cursor.fetchall()
    # A retry in another process may be running a batch again, its new items not committed yet: pruning takes only
    # the batches it can lock, which a retry holds from its start (see `LOCK_RETRIED_BATCH`).
    cursor.execute(sql.PRUNE_CANDIDATE_BATCHES[older_than], (queue_id, *before, statuses, limit))
    candidates = [row["batch_id"] for row in cursor.fetchall()]
    if not candidates:
        return []
    cursor.execute(sql.TRY_LOCK_PRUNED_BATCHES, (candidates, queue_id))
    locked = [row["batch_id"] for row in cursor.fetchall()]
    if not locked:
        return []
    cursor.execute(sql.PRUNE_HISTORY[older_than, True], (queue_id, *before, statuses, locked, limit))
    return cursor.fetchall()
