"""Migration 5, the queue's history: each batch's workflow moves to a batches table, items get a webhook
state, and the indexes that pruning the history and resuming webhooks walk are added.

Frozen: released databases ran these statements as they are. A change to the schema is a new migration.
"""

from __future__ import annotations

from nodeloom.app.services.shared.database.database_base import DbCursor

# One row per batch of a queue, for what all its items share; deleted with the batch's last item.
_CREATE_BATCHES = """
CREATE TABLE session_queue_batches (
    queue_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    workflow TEXT,
    PRIMARY KEY (queue_id, batch_id)
)
"""
_MOVE_WORKFLOWS = (
    # The items of one batch hold one workflow; MAX picks it without a second pass.
    "INSERT INTO session_queue_batches (queue_id, batch_id, workflow) "
    "SELECT queue_id, batch_id, MAX(workflow) FROM session_queue GROUP BY queue_id, batch_id",
    "ALTER TABLE session_queue DROP COLUMN workflow",
)
# NULL: the item has no webhook to call (yet); 'pending' from the moment it finishes until the call is made.
_ADD_WEBHOOK_STATE = (
    "ALTER TABLE session_queue ADD COLUMN webhook_state TEXT "
    "CHECK (webhook_state IN ('pending', 'delivered', 'given_up'))"
)
_CREATE_HISTORY_INDEXES = (
    # the finished items of a queue, oldest first: what pruning the history walks.
    "CREATE INDEX ix_session_queue_history ON session_queue (queue_id, completed_at, item_id) "
    "WHERE completed_at IS NOT NULL",
    # the webhooks still to call, read at start-up: only those rows are in the index.
    "CREATE INDEX ix_session_queue_webhooks_due ON session_queue (item_id) WHERE webhook_state = 'pending'",
)


def up(cursor: DbCursor) -> None:
    """Moves each batch's workflow from its items to a batches table; adds the webhook state and history indexes."""
    for statement in (_CREATE_BATCHES, *_MOVE_WORKFLOWS, _ADD_WEBHOOK_STATE, *_CREATE_HISTORY_INDEXES):
        cursor.execute(statement)
