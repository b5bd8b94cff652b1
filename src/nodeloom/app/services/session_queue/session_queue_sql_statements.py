"""The SQL of `SqlSessionQueue`, once for every engine (see `DatabaseBase`); its tables are made by migrations 1,
5, 7 and 9 (`shared/database/migrations`).

Named constants, so that a test can EXPLAIN the hot queries and check that they search an index.
"""

from __future__ import annotations

import functools
from typing import Literal

from nodeloom.app.services.shared.database.database_base import Dialect

QUEUE_TOTAL = ""
"""The batch id of a queue's own rows in session_queue_counts, which no batch has (a batch id is never empty)."""

# --- Items --------------------------------------------------------------------------------------------------

ITEM_COLUMN_NAMES = (
    "item_id, queue_id, batch_id, session_id, status, priority, origin, destination, field_values, session, "
    "workflow, error_type, error_message, error_traceback, timeout, callback_url, attempts, retried_from_item_id, "
    "created_at, updated_at, started_at, completed_at, processor_id"
)
"""An item's fields as `ITEM_COLUMNS` names them, for a query over a sub-select of them."""
# The workflow is stored once per batch; a correlated sub-select (valid in RETURNING too) reads it back by key.
_WORKFLOW = (
    "(SELECT workflow FROM session_queue_batches b "
    "WHERE b.queue_id = session_queue.queue_id AND b.batch_id = session_queue.batch_id) AS workflow"
)
ITEM_COLUMNS = ITEM_COLUMN_NAMES.replace("workflow", _WORKFLOW)
INSERT_ITEM = (
    "INSERT INTO session_queue (queue_id, batch_id, session_id, priority, origin, destination, field_values, "
    "session, timeout, callback_url, retried_from_item_id, created_at, updated_at) "
    "VALUES (:queue_id, :batch_id, :session_id, :priority, :origin, :destination, :field_values, "
    ":session, :timeout, :callback_url, :retried_from_item_id, :created_at, :updated_at)"
)
"""Bound to the row of `NewItem.row`."""
SELECT_BATCH_EXISTS = "SELECT batch_id FROM session_queue_batches WHERE queue_id = ? AND batch_id = ?"
INSERT_BATCH = "INSERT INTO session_queue_batches (queue_id, batch_id, workflow) VALUES (?, ?, ?)"
INSERT_ITEM_RETURNING = f"{INSERT_ITEM} RETURNING {ITEM_COLUMNS}"
# The last statement of a retry: locks the row of the retried items' batch, or puts it back (with the workflow read
# from the original) where another transaction deleted it with the batch's last item meanwhile.
KEEP_BATCH = (
    "INSERT INTO session_queue_batches (queue_id, batch_id, workflow) VALUES (?, ?, ?) "
    "ON CONFLICT (queue_id, batch_id) DO UPDATE SET workflow = session_queue_batches.workflow"
)
SELECT_BATCH_SESSION_IDS = "SELECT item_id, session_id FROM session_queue WHERE queue_id = ? AND batch_id = ?"
SELECT_MAX_PENDING_PRIORITY = (
    "SELECT MAX(priority) AS priority FROM session_queue WHERE queue_id = ? AND status = 'pending'"
)

# The claim: one statement, so no two dequeuers take one item; SQLite runs one writer at a time. PostgreSQL runs
# transactions concurrently: there the sub-select locks its row and skips rows other claims hold, so that concurrent
# claims take different items rather than wait for one another and then find theirs gone.
# Nothing is claimed while the processors are paused: the pause holds for every process from its commit on.
_DEQUEUE = """
UPDATE session_queue SET status = 'in_progress', started_at = :now, updated_at = :now, processor_id = :processor_id
WHERE item_id = (
    SELECT item_id FROM session_queue WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM processing_paused)
    ORDER BY priority DESC, item_id ASC LIMIT 1{lock}
) AND status = 'pending'
RETURNING {columns}
"""
DEQUEUE: dict[Dialect, str] = {
    "sqlite": _DEQUEUE.format(lock="", columns=ITEM_COLUMNS),
    "postgres": _DEQUEUE.format(lock=" FOR UPDATE SKIP LOCKED", columns=ITEM_COLUMNS),
}
# Guarded by the status the caller read, so that a change made meanwhile by another process is never undone, and,
# where a processor makes it, by the processor holding the item. An item with a webhook that finishes has its call
# due in the same write, so a crash cannot lose the call. An item taken from its processor (`release`) is held by
# none: the processor's late writes then change nothing. A processor finishing its item stores the session as far
# as it ran and its stats with it (`session`, `stats`: NULL keeps those stored).
_SET_STATUS = """
UPDATE session_queue
SET status = :status, updated_at = :updated_at, completed_at = :completed_at,
    error_type = :error_type, error_message = :error_message, error_traceback = :error_traceback,
    session = COALESCE(:session, session), stats = COALESCE(:stats, stats),
    webhook_state = CASE WHEN :finishing AND callback_url IS NOT NULL THEN 'pending' ELSE webhook_state END,
    processor_id = CASE WHEN :release THEN NULL ELSE processor_id END
WHERE item_id = :item_id AND status = :old_status{held}
RETURNING {columns}
"""
SET_STATUS: dict[bool, str] = {
    held: _SET_STATUS.format(held=" AND processor_id = :processor_id" if held else "", columns=ITEM_COLUMNS)
    for held in (False, True)
}
"""Keyed by whether the processor that holds the item makes the change (bound as `processor_id`)."""
HELD_BY = " AND processor_id = ?"
"""Ends an update of one item (`... WHERE item_id = ?`) that the processor holding it makes, bound last: a processor
that no longer holds the item changes nothing."""
_REQUEUE_INTERRUPTED = """
UPDATE session_queue SET status = 'pending', attempts = attempts + 1, updated_at = ?, processor_id = NULL
WHERE item_id = ? AND status = 'in_progress'{held}
RETURNING {columns}
"""
REQUEUE_INTERRUPTED: dict[bool, str] = {
    held: _REQUEUE_INTERRUPTED.format(held=HELD_BY if held else "", columns=ITEM_COLUMNS) for held in (False, True)
}
"""Keyed as `SET_STATUS`; the processor id is bound last."""
# The items in progress that no live processor holds: their processor's heartbeat is older than the cutoff, or it
# is not registered (it deregistered, was forgotten, or the item was claimed before processors registered). On
# PostgreSQL the rows are locked and those another sweep holds skipped, so that one sweep alone handles each.
_ORPHANED = """
SELECT item_id, attempts, processor_id FROM session_queue WHERE status = 'in_progress' AND NOT EXISTS (
    SELECT 1 FROM session_processors p
    WHERE p.processor_id = session_queue.processor_id AND p.heartbeat_at >= ?
) ORDER BY item_id{lock}
"""
SELECT_ORPHANED: dict[Dialect, str] = {
    "sqlite": _ORPHANED.format(lock=""),
    "postgres": _ORPHANED.format(lock=" FOR UPDATE SKIP LOCKED"),
}
PAUSE = "INSERT INTO processing_paused (id, paused_at) VALUES (1, ?) ON CONFLICT (id) DO NOTHING"
RESUME = "DELETE FROM processing_paused"
SELECT_PAUSED = "SELECT paused_at FROM processing_paused"
SET_SESSION = "UPDATE session_queue SET session = ?, updated_at = ? WHERE item_id = ?"
SET_STATS = "UPDATE session_queue SET stats = ? WHERE item_id = ?"
SET_RUN = "UPDATE session_queue SET session = ?, updated_at = ?, stats = ? WHERE item_id = ?"
"""`SET_SESSION` and `SET_STATS` in one statement."""

SELECT_ITEM = f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE item_id = ?"
SELECT_STATS = "SELECT stats FROM session_queue WHERE item_id = ?"
SELECT_WEBHOOK_DUE_URL = (
    "SELECT CASE WHEN webhook_state = 'pending' THEN callback_url END AS callback_url FROM session_queue "
    "WHERE item_id = ?"
)
# A due call is free to a claimant when no claim holds it, or the claim has lapsed, or it is the claimant's own.
# Several API servers share the calls: a claim (by item id, so no SKIP LOCKED: a concurrent claim of the same row
# waits, then finds it taken) makes one server alone call it, and only a claimant to whom it is free records it.
_WEBHOOK_FREE = (
    "webhook_state = 'pending' AND (webhook_claimed_until IS NULL OR webhook_claimed_until < :now "
    "OR webhook_claimed_by = :claimant)"
)
SELECT_WEBHOOKS_DUE = (
    "SELECT item_id FROM session_queue WHERE webhook_state = 'pending' "
    "AND (webhook_claimed_until IS NULL OR webhook_claimed_until < ?) ORDER BY item_id"
)
CLAIM_WEBHOOK = (
    "UPDATE session_queue SET webhook_claimed_by = :claimant, webhook_claimed_until = :until "
    f"WHERE item_id = :item_id AND {_WEBHOOK_FREE}"
)
SET_WEBHOOK_STATE = f"UPDATE session_queue SET webhook_state = :state WHERE item_id = :item_id AND {_WEBHOOK_FREE}"
SELECT_WEBHOOK_CLAIMANTS = (
    "SELECT DISTINCT webhook_claimed_by FROM session_queue "
    "WHERE webhook_state = 'pending' AND webhook_claimed_by IS NOT NULL"
)
RELEASE_WEBHOOK_CLAIMS = (
    "UPDATE session_queue SET webhook_claimed_by = NULL, webhook_claimed_until = NULL "
    "WHERE webhook_state = 'pending' AND webhook_claimed_by = ?"
)
SELECT_UNFINISHED_WEBHOOK_BATCHES = (
    "SELECT DISTINCT batch_id FROM session_queue "
    "WHERE callback_url IS NOT NULL AND status IN ('pending', 'in_progress')"
)
SELECT_CURRENT = (
    f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE queue_id = ? AND status = 'in_progress' "
    "ORDER BY priority DESC, item_id LIMIT 1"
)
SELECT_NEXT = (
    f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE queue_id = ? AND status = 'pending' "
    "ORDER BY priority DESC, item_id LIMIT 1"
)
SELECT_IN_PROGRESS = "SELECT item_id, status FROM session_queue WHERE queue_id = ? AND status = 'in_progress'"
SELECT_PENDING = "SELECT item_id, status FROM session_queue WHERE queue_id = ? AND status = 'pending'"
SELECT_UNFINISHED = (
    "SELECT item_id, status FROM session_queue WHERE queue_id = ? AND status IN ('pending', 'in_progress')"
)
SELECT_UNFINISHED_IN_BATCH = (
    "SELECT item_id, status FROM session_queue "
    "WHERE queue_id = ? AND batch_id = ? AND status IN ('pending', 'in_progress')"
)
SELECT_BATCH_ORIGIN = "SELECT origin, destination FROM session_queue WHERE queue_id = ? AND batch_id = ? LIMIT 1"
SELECT_BATCH_ITEMS = f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE queue_id = ? AND batch_id = ? ORDER BY item_id"
SELECT_ITEM_IDS: dict[Literal["ASC", "DESC"], str] = {
    "ASC": "SELECT item_id FROM session_queue WHERE queue_id = ? ORDER BY item_id ASC",
    "DESC": "SELECT item_id FROM session_queue WHERE queue_id = ? ORDER BY item_id DESC",
}
SELECT_ALL = f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE queue_id = ? ORDER BY priority DESC, item_id"
SELECT_ALL_FOR_DESTINATION = (
    f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE queue_id = ? AND destination = ? ORDER BY priority DESC, item_id"
)


def _page(by_status: bool, by_destination: bool, after_cursor: bool) -> str:
    where = "queue_id = :queue_id"
    if by_status:
        where += " AND status = :status"
    if by_destination:
        where += " AND destination = :destination"
    if not after_cursor:
        return f"SELECT {ITEM_COLUMNS} FROM session_queue WHERE {where} ORDER BY priority DESC, item_id LIMIT :limit"
    # Two index seeks (the rest of the cursor's priority, then the lower priorities) rather than one
    # `priority < :priority OR (priority = :priority AND item_id > :item_id)`, which would step over every item
    # before the cursor.
    return (
        f"SELECT {ITEM_COLUMN_NAMES} FROM ("
        f"SELECT * FROM (SELECT {ITEM_COLUMNS} FROM session_queue WHERE {where} AND priority = :priority "
        "AND item_id > :item_id ORDER BY item_id LIMIT :limit) AS same_priority "
        "UNION ALL "
        f"SELECT * FROM (SELECT {ITEM_COLUMNS} FROM session_queue WHERE {where} AND priority < :priority "
        "ORDER BY priority DESC, item_id LIMIT :limit) AS lower_priority"
        ") AS page ORDER BY priority DESC, item_id LIMIT :limit"
    )


LIST_PAGE: dict[tuple[bool, bool, bool], str] = {
    (by_status, by_destination, after_cursor): _page(by_status, by_destination, after_cursor)
    for by_status in (False, True)
    for by_destination in (False, True)
    for after_cursor in (False, True)
}
"""Keyed by (filtered by a status, filtered by a destination, after a cursor); bound by name: `queue_id`,
`status`, `destination`, the cursor's `priority` and `item_id`, and the `limit`."""

# An item whose webhook is still to be called stays until the call is made or given up on: the call reads it.
# Every delete keeps it: of one item, of a queue, of its finished items, and pruning.
_NO_WEBHOOK_DUE = "(webhook_state IS NULL OR webhook_state <> 'pending')"
_DELETED = "RETURNING queue_id, batch_id, status"
DELETE_ITEM = f"DELETE FROM session_queue WHERE item_id = ? AND {_NO_WEBHOOK_DUE} {_DELETED}"
_FINISHED = "status IN ('completed', 'failed', 'canceled')"
DELETE_NOT_RUNNING = (
    f"DELETE FROM session_queue WHERE queue_id = ? AND status <> 'in_progress' AND {_NO_WEBHOOK_DUE} {_DELETED}"
)
DELETE_FINISHED = f"DELETE FROM session_queue WHERE queue_id = ? AND {_FINISHED} AND {_NO_WEBHOOK_DUE} {_DELETED}"


def _oldest_finished(older_than: bool, of_statuses: bool, in_batches: bool) -> str:
    """The oldest finished items of a queue (finished before a time, if `older_than`; of the statuses bound, if
    `of_statuses`; of the batches bound, if `in_batches`) that pruning may delete, bound in that order and then to
    the most to take.

    Never an item of a batch that still has items to run: a client following the batch reads all of them.
    """
    before = " AND completed_at < ?" if older_than else ""
    statuses = " AND status = ANY(?)" if of_statuses else ""
    batches = " AND batch_id = ANY(?)" if in_batches else ""
    return (
        "SELECT item_id, batch_id FROM session_queue q WHERE queue_id = ? AND completed_at IS NOT NULL"
        f"{before}{statuses}{batches} AND {_NO_WEBHOOK_DUE} AND NOT EXISTS ("
        "SELECT 1 FROM session_queue_counts c WHERE c.queue_id = q.queue_id AND c.batch_id = q.batch_id "
        "AND c.status IN ('pending', 'in_progress') AND c.n > 0"
        ") ORDER BY completed_at, item_id LIMIT ?"
    )


PRUNE_HISTORY: dict[tuple[bool, bool], str] = {
    (older_than, locked): (
        "DELETE FROM session_queue WHERE item_id IN ("
        f"SELECT item_id FROM ({_oldest_finished(older_than, locked, locked)}"
        f"{' FOR UPDATE SKIP LOCKED' if locked else ''}) AS oldest"
        ") RETURNING queue_id, batch_id, status"
    )
    for older_than in (False, True)
    for locked in (False, True)
}
"""Keyed by (finished before a time, of the statuses and batches bound, and but for the items another write
holds: PostgreSQL, where pruning never waits and takes only what it has locked, see `QueueHistory.prune`); bound
as `_oldest_finished` says."""
PRUNE_OLDEST = PRUNE_HISTORY[False, False]
PRUNE_OLDER_THAN = PRUNE_HISTORY[True, False]
# PostgreSQL: the batches pruning would take items of, then those of them it may prune, each locked for the rest
# of the transaction unless a retry holds it (`LOCK_RETRIED_BATCH`); the delete that follows, its snapshot taken
# after the locks, sees the items of a retry that committed meanwhile.
PRUNE_CANDIDATE_BATCHES: dict[bool, str] = {
    older_than: (
        f"SELECT DISTINCT batch_id FROM ({_oldest_finished(older_than, True, False)}) AS oldest ORDER BY batch_id"
    )
    for older_than in (False, True)
}
_QUEUE_LOCK_KEY = "hashtextextended(?, 1)"
LOCK_QUEUE_BULK = f"SELECT pg_advisory_xact_lock({_QUEUE_LOCK_KEY})"
"""PostgreSQL: taken first, before any row, by every write that deletes a queue's items or changes several of them
(prune, clear, the delete of an item, the cancel of a batch or queue): one at a time, so that no two of them lock
the items they share in different orders."""
TRY_LOCK_QUEUE_BULK = f"SELECT pg_try_advisory_xact_lock({_QUEUE_LOCK_KEY}) AS locked"
"""PostgreSQL: `LOCK_QUEUE_BULK` as pruning the history takes it, holding rows already: it never waits, and leaves
the history to a later pruning while another such write runs."""
LOCK_FINISHED_COUNTS = (
    f"SELECT status FROM session_queue_counts WHERE queue_id = ? AND batch_id = '{QUEUE_TOTAL}' "
    "AND status IN ('canceled', 'completed', 'failed') ORDER BY status FOR UPDATE SKIP LOCKED"
)
"""PostgreSQL: the queue's finished counts that pruning the history may take items from, locked, but for those
another write holds: it never waits for them (see `QueueHistory.prune`)."""
_BATCH_LOCK_KEY = "hashtextextended({queue_id} || ' ' || {batch_id}, 0)"
TRY_LOCK_PRUNED_BATCHES = (
    "SELECT batch_id FROM unnest(?::text[]) AS batches(batch_id) "
    f"WHERE pg_try_advisory_xact_lock({_BATCH_LOCK_KEY.format(queue_id='?', batch_id='batch_id')})"
)
"""Bound to the batch ids and the queue id; answers the batches locked. It never waits: a batch a retry holds is
left for a later pruning."""
SELECT_RETRIED_BATCHES = (
    "SELECT DISTINCT batch_id FROM session_queue WHERE queue_id = ? AND item_id = ANY(?) ORDER BY batch_id"
)
LOCK_RETRIED_BATCH = f"SELECT pg_advisory_xact_lock_shared({_BATCH_LOCK_KEY.format(queue_id='?', batch_id='?')})"
"""PostgreSQL: taken by a retry on each of its items' batches, first (`SELECT_RETRIED_BATCHES` names them), shared
(retries wait for no other): pruning then leaves the batch's finished items alone until the retry has committed,
after which it sees the batch has items to run again; a retry that waited for a pruning reads what it left."""
# PostgreSQL: taken on a batch's row before `DELETE_EMPTY_BATCH`, in a statement of its own, so that the delete's
# snapshot, taken after the lock, sees the items of a retry that held the row (by `KEEP_BATCH`) and committed.
LOCK_BATCH = "SELECT batch_id FROM session_queue_batches WHERE queue_id = ? AND batch_id = ? FOR UPDATE"
DELETE_EMPTY_BATCH = (
    "DELETE FROM session_queue_batches WHERE queue_id = ? AND batch_id = ? AND NOT EXISTS ("
    "SELECT 1 FROM session_queue q "
    "WHERE q.queue_id = session_queue_batches.queue_id AND q.batch_id = session_queue_batches.batch_id)"
)

# --- Processors ---------------------------------------------------------------------------------------------

# Registers a processor or renews its lease; a processor that was forgotten while silent registers again.
HEARTBEAT = """
INSERT INTO session_processors
    (processor_id, host, pid, devices, started_at, heartbeat_at, current_item_id, current_node_id)
VALUES (:processor_id, :host, :pid, :devices, :started_at, :heartbeat_at, :current_item_id, :current_node_id)
ON CONFLICT (processor_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    current_item_id = excluded.current_item_id, current_node_id = excluded.current_node_id
"""
DELETE_PROCESSOR = "DELETE FROM session_processors WHERE processor_id = ?"
SELECT_HOST_PROCESSORS = "SELECT processor_id, pid, started_at FROM session_processors WHERE host = ?"
DELETE_SILENT_PROCESSORS = "DELETE FROM session_processors WHERE heartbeat_at < ?"
SELECT_PROCESSORS = (
    "SELECT processor_id, host, pid, devices, started_at, heartbeat_at, current_item_id, current_node_id "
    "FROM session_processors ORDER BY started_at, processor_id"
)
SELECT_HELD_ITEMS = (
    "SELECT item_id, queue_id, batch_id, session_id, processor_id FROM session_queue "
    "WHERE status = 'in_progress' AND processor_id IS NOT NULL ORDER BY item_id"
)

# --- Counts -------------------------------------------------------------------------------------------------

SELECT_COUNTS = "SELECT status, n FROM session_queue_counts WHERE queue_id = ? AND batch_id = ?"
# Only queues with items: the rows of a queue or batch whose last item is deleted are deleted with it.
SELECT_ALL_QUEUE_COUNTS = (
    f"SELECT queue_id, status, n FROM session_queue_counts WHERE batch_id = '{QUEUE_TOTAL}' ORDER BY queue_id"
)


@functools.cache
def add_counts(rows: int) -> str:
    """Adds `rows` (queue id, batch id, status, n) deltas to their counts in one statement."""
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO session_queue_counts (queue_id, batch_id, status, n) VALUES {values} "
        "ON CONFLICT (queue_id, batch_id, status) DO UPDATE SET n = session_queue_counts.n + excluded.n"
    )


ADD_COUNT = add_counts(1)


@functools.cache
def select_statuses(batches: int) -> str:
    """The counts of a queue and of `batches` of its batches, and the ids of its current item as a row of status
    `CURRENT`: bound to the queue id, `QUEUE_TOTAL` and the batch ids, then the queue id again.

    What a status event tells, read in one statement."""
    return _select_statuses(batches, "")


@functools.cache
def add_counts_select_statuses(rows: int, batches: int) -> str:
    """PostgreSQL: `add_counts` and then `select_statuses` in one statement, bound as they are in turn. The rows
    added must be of that queue and its batches."""
    return (
        f"WITH added AS ({add_counts(rows)} RETURNING batch_id, status, n) "
        "SELECT batch_id, status, n, CAST(NULL AS BIGINT) AS item_id, CAST(NULL AS TEXT) AS session_id FROM added "
        "UNION ALL "
        # The statement's other parts read the counts as they were before it: a row it changed is read from
        # what the change returned.
        + _select_statuses(
            batches,
            " AND NOT EXISTS (SELECT 1 FROM added WHERE added.batch_id = c.batch_id AND added.status = c.status)",
        )
    )


def _select_statuses(batches: int, also: str) -> str:
    batch_ids = ", ".join(["?"] * (batches + 1))
    return (
        "SELECT batch_id, status, n, NULL AS item_id, NULL AS session_id FROM session_queue_counts c "
        f"WHERE queue_id = ? AND batch_id IN ({batch_ids}){also} "
        f"UNION ALL SELECT * FROM (SELECT batch_id, '{CURRENT}' AS status, 0 AS n, item_id, session_id "
        "FROM session_queue WHERE queue_id = ? AND status = 'in_progress' ORDER BY priority DESC, item_id LIMIT 1"
        ") AS current_item"
    )


CURRENT = "current"
"""The status of the row of `select_statuses` that names the queue's current item."""
DELETE_EMPTY_COUNTS: dict[Dialect, str] = {
    "sqlite": "DELETE FROM session_queue_counts WHERE queue_id = ? AND batch_id = ? AND n = 0",
    # A row another write holds is left, never waited for (the delete holds count rows already): that write changes
    # an item of the batch or queue, which is not empty then, and the zero rows of one with items are kept anyway.
    "postgres": (
        "DELETE FROM session_queue_counts WHERE (queue_id, batch_id, status) IN ("
        "SELECT queue_id, batch_id, status FROM session_queue_counts WHERE queue_id = ? AND batch_id = ? AND n = 0 "
        "FOR UPDATE SKIP LOCKED)"
    ),
}
