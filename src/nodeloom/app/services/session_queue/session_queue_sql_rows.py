"""A queue item's row: made for a new item, read back into a `SessionQueueItem`, and told in a status event."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from nodeloom.app.invocations.baseinvocation import describe_error
from nodeloom.app.services.events.events_common import QueueItemStatusChangedEvent
from nodeloom.app.services.session_queue import session_queue_sql_statements as sql
from nodeloom.app.services.session_queue.session_queue_common import (
    QUEUE_ITEM_STATUS,
    Batch,
    BatchStatus,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemUnreadableError,
    SessionQueueStatus,
)
from nodeloom.app.services.shared.database.database_base import DbCursor, DbRow
from nodeloom.app.services.shared.graph import STORED_SESSION, Graph, GraphExecutionState
from nodeloom.app.services.shared.graph_common import uuid_string

logger = logging.getLogger(__name__)

# A session that has not started, but for its id and graph, as `GraphExecutionState` writes it. The execution
# graph's id is left out, to be made when the session is loaded.
_UNSTARTED = GraphExecutionState(graph=Graph()).model_dump_json(
    exclude={"id": True, "graph": True, "execution_graph": {"id"}}
)


def new_session_json(session_id: str, graph_json: str) -> str:
    """The JSON of a `GraphExecutionState` of the graph that has not started, made without building one."""
    return f'{{"id":{json.dumps(session_id)},"graph":{graph_json},{_UNSTARTED[1:]}'


@dataclass(frozen=True)
class NewItem:
    """What new items share but their graph and field values: their batch's settings, or those of the item they
    retry."""

    queue_id: str
    batch_id: str
    priority: int
    origin: str | None
    destination: str | None
    timeout: float | None
    callback_url: str | None
    retried_from_item_id: int | None = None

    @classmethod
    def of_batch(cls, queue_id: str, batch: Batch, priority: int) -> NewItem:
        callback_url = None if batch.callback_url is None else str(batch.callback_url)
        return cls(queue_id, batch.batch_id, priority, batch.origin, batch.destination, batch.timeout, callback_url)

    @classmethod
    def retry_row(cls, original: DbRow, now: str) -> dict[str, object]:
        """The row of the retry of a finished item, from its row: a fresh copy that runs from the start."""
        new = cls(
            original["queue_id"],
            original["batch_id"],
            original["priority"],
            original["origin"],
            original["destination"],
            original["timeout"],
            original["callback_url"],
            retried_from_item_id=original["item_id"],
        )
        # The stored graph already holds the item's field values; only the execution starts afresh.
        graph_json = json.dumps(json.loads(original["session"])["graph"], separators=(",", ":"))
        return new.row(graph_json, original["field_values"], now)

    def row(self, graph_json: str, field_values: str | None, now: str) -> dict[str, object]:
        """The row of a new pending item that runs `graph_json` from its start under a new session id, for
        `INSERT_ITEM`."""
        session_id = uuid_string()
        return {
            "queue_id": self.queue_id,
            "batch_id": self.batch_id,
            "session_id": session_id,
            "priority": self.priority,
            "origin": self.origin,
            "destination": self.destination,
            "field_values": field_values,
            "session": new_session_json(session_id, graph_json),
            "timeout": self.timeout,
            "callback_url": self.callback_url,
            "retried_from_item_id": self.retried_from_item_id,
            "created_at": now,
            "updated_at": now,
        }


def fetch_item_row(cursor: DbCursor, item_id: int) -> DbRow:
    cursor.execute(sql.SELECT_ITEM, (item_id,))
    row = cursor.fetchone()
    if row is None:
        raise SessionQueueItemNotFoundError(f"No queue item has the id {item_id}")
    return row


def item_from_row(row: DbRow) -> SessionQueueItem:
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


def readable_items(rows: Iterable[DbRow]) -> list[SessionQueueItem]:
    """The items of the rows, leaving out (and logging) those that cannot be read: one bad row must not make
    every listing that holds it fail."""
    items: list[SessionQueueItem] = []
    for row in rows:
        try:
            items.append(item_from_row(row))
        except SessionQueueItemUnreadableError as error:
            logger.warning("Left out of a listing: %s", error)
    return items


# The event's fields about the item, named as the item's columns are. The event is made from the row rather than
# with `QueueItemStatusChangedEvent.build(item)`, which needs the item's session parsed: canceling 10,000 items
# parsed 10,000 sessions (5.6 s) while holding the database.
EVENT_ITEM_FIELDS = tuple(
    name for name in QueueItemStatusChangedEvent.model_fields if name in SessionQueueItem.model_fields
)


def status_event(
    row: DbRow, old_status: QUEUE_ITEM_STATUS | None, batch_status: BatchStatus, queue_status: SessionQueueStatus
) -> QueueItemStatusChangedEvent:
    return QueueItemStatusChangedEvent(
        **{name: row[name] for name in EVENT_ITEM_FIELDS},
        old_status=old_status,
        batch_status=batch_status,
        queue_status=queue_status,
    )
