"""The queue's history, its finished items, kept within its limits as items finish.

Past `max_history` finished items of a queue (or past `max_history_days` old), the oldest are deleted, a bounded
chunk every few finishes, in the transaction that finished them: the queue's table and file stay bounded however
many sessions run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nodeloom.app.services.session_queue import session_queue_sql_counts as counts
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import SessionQueueStatus
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

    def prune(self, cursor: DbCursor, queue: SessionQueueStatus, newly_finished: int) -> bool:
        """Deletes a chunk of the queue's oldest finished items past the limits, in the caller's transaction, with
        their counts; whether any went.

        Runs only when the queue's finished count crosses a multiple of the step, so that most finishes cost
        nothing more, and one that finds only items it must keep (of batches still running, or whose webhook is
        due) is not repeated by the very next finish.
        """
        finished = queue.completed + queue.failed + queue.canceled
        if finished // self._step == (finished - newly_finished) // self._step:
            return False
        deleted: list[DbRow] = []
        if self._max_history is not None and finished > self._max_history:
            excess = min(finished - self._max_history, PRUNE_CHUNK)
            deleted += _delete_oldest(cursor, queue.queue_id, None, excess)
        if self._max_age is not None and len(deleted) < PRUNE_CHUNK:
            cutoff = to_timestamp(datetime.now(UTC) - self._max_age)
            deleted += _delete_oldest(cursor, queue.queue_id, cutoff, PRUNE_CHUNK - len(deleted))
        if not deleted:
            return False
        counts.count_deleted(cursor, deleted)
        return True


def _delete_oldest(cursor: DbCursor, queue_id: str, cutoff: str | None, limit: int) -> list[DbRow]:
    """Deletes up to `limit` of the queue's oldest finished items that may go (finished before `cutoff`, if given);
    their rows."""
    older_than = cutoff is not None
    before = () if cutoff is None else (cutoff,)
    if cursor.dialect != "postgres":  # SQLite runs one writer at a time: no retry runs meanwhile
        cursor.execute(sql.PRUNE_HISTORY[older_than, False], (queue_id, *before, limit))
        return cursor.fetchall()
    # A retry in another process may be running a batch again, its new items not committed yet: pruning takes only
    # the batches it can lock, which a retry holds from its start (see `LOCK_RETRIED_BATCH`).
    cursor.execute(sql.PRUNE_CANDIDATE_BATCHES[older_than], (queue_id, *before, limit))
    candidates = [row["batch_id"] for row in cursor.fetchall()]
    if not candidates:
        return []
    cursor.execute(sql.TRY_LOCK_PRUNED_BATCHES, (candidates, queue_id))
    locked = [row["batch_id"] for row in cursor.fetchall()]
    if not locked:
        return []
    cursor.execute(sql.PRUNE_HISTORY[older_than, True], (queue_id, *before, locked, limit))
    return cursor.fetchall()
