"""The session queue over HTTP, with InvokeAI's paths and operation ids, plus stats and submit-and-wait."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from nodeloom.app.api.dependencies import ServerShutdown, Services, Sockets
from nodeloom.app.invocations.limits import INT64_MAX
from nodeloom.app.services.events.events_common import QueueItemStatusChangedEvent
from nodeloom.app.services.session_processor.session_processor_common import SessionProcessorStatus
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import (
    QUEUE_ITEM_STATUS,
    Batch,
    BatchLimits,
    BatchStatus,
    CancelAllExceptCurrentResult,
    CancelByBatchIDsResult,
    ClearResult,
    EnqueueBatchResult,
    ItemIdsResult,
    ProcessorStatus,
    PruneResult,
    QueueItemOutcome,
    RetryItemsResult,
    SessionQueueItem,
    SessionQueueItemNotFoundError,
    SessionQueueItemUnreadableError,
    SessionQueueStatus,
)
from nodeloom.app.services.shared.pagination import CursorPaginatedResults

session_queue_router = APIRouter(prefix="/v1/queue", tags=["queue"])

# Item ids and priorities are stored as 64-bit integers: a larger number is refused as a bad request.
QueueId = Path(description="The queue to act on")
ItemId = Path(ge=0, le=INT64_MAX, description="The queue item")
StoredInt = Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)]
MAX_ITEM_IDS = 1000


class SessionQueueAndProcessorStatus(BaseModel):
    queue: SessionQueueStatus
    processor: SessionProcessorStatus


class WaitBatchResult(BaseModel):
    queue_id: str
    batch_id: str
    finished: bool = Field(description="Whether every item of the batch has finished")
    timed_out: bool = Field(description="Whether the wait ended because the timeout passed first")
    items: list[QueueItemOutcome]


def _in_queue(queue: SessionQueueBase, queue_id: str, item_id: int) -> SessionQueueItem:
    item = queue.get_queue_item(item_id)
    if item.queue_id != queue_id:
        raise _not_in_queue(queue_id, item_id)
    return item


def _check_in_queue(queue: SessionQueueBase, queue_id: str, item_id: int) -> None:
    """Raises unless the item is in the queue; an item that cannot be read passes, as it may still be canceled
    or deleted."""
    try:
        _in_queue(queue, queue_id, item_id)
    except SessionQueueItemUnreadableError as error:
        if error.queue_id != queue_id:
            raise _not_in_queue(queue_id, item_id) from None


def _not_in_queue(queue_id: str, item_id: int) -> SessionQueueItemNotFoundError:
    return SessionQueueItemNotFoundError(f"Queue item {item_id} is not in queue '{queue_id}'")


async def _counts_within_limits(request: Request, services: Services) -> None:
    """Refuses a batch of too many nodes or data items from the counts of its JSON, before FastAPI validates each
    of its values (a million items take seconds). FastAPI has parsed the JSON already and kept it."""
    try:
        body = await request.json()
    except ValueError:
        return  # no JSON: validation says so
    BatchLimits.from_config(services.config).check_json(body)


@session_queue_router.post(
    "/{queue_id}/enqueue_batch", operation_id="enqueue_batch", dependencies=[Depends(_counts_within_limits)]
)
def enqueue_batch(
    services: Services,
    queue_id: str = QueueId,
    batch: Batch = Body(description="The batch to enqueue"),
    prepend: bool = Body(default=False, description="Run the batch before everything pending"),
    all_or_nothing: bool = Body(
        default=False, description="Enqueue nothing (409) rather than the first sessions that fit, if not all fit"
    ),
) -> EnqueueBatchResult:
    """Expands the batch into sessions and enqueues them, or as many of the first as the queue has room for."""
    return services.session_queue.enqueue_batch(queue_id, batch, prepend, all_or_nothing)


@session_queue_router.get("/{queue_id}/list", operation_id="list_queue_items")
def list_queue_items(
    services: Services,
    queue_id: str = QueueId,
    limit: int = Query(default=50, ge=1, le=1000, description="The most items to return"),
    status: QUEUE_ITEM_STATUS | None = Query(default=None, description="Only items with this status"),
    cursor: int | None = Query(default=None, ge=0, le=INT64_MAX, description="The last item id of the previous page"),
    priority: int = Query(
        default=0, ge=-INT64_MAX, le=INT64_MAX, description="The last item priority of the previous page"
    ),
    destination: str | None = Query(default=None, description="Only items with this destination"),
) -> CursorPaginatedResults[SessionQueueItem]:
    """A page of items in run order."""
    return services.session_queue.list_queue_items(
        queue_id, limit, priority if cursor is not None else None, cursor, status, destination
    )


@session_queue_router.get("/{queue_id}/list_all", operation_id="list_all_queue_items")
def list_all_queue_items(
    services: Services,
    queue_id: str = QueueId,
    destination: str | None = Query(default=None, description="Only items with this destination"),
) -> list[SessionQueueItem]:
    """Every item of the queue in run order."""
    return services.session_queue.list_all_queue_items(queue_id, destination)


@session_queue_router.get("/{queue_id}/item_ids", operation_id="get_queue_item_ids")
def get_queue_item_ids(
    services: Services,
    queue_id: str = QueueId,
    order_dir: Literal["ASC", "DESC"] = Query(default="DESC", description="The order of the ids"),
) -> ItemIdsResult:
    """The ids of every item of the queue."""
    ids = services.session_queue.get_queue_item_ids(queue_id, order_dir)
    return ItemIdsResult(item_ids=ids, total_count=len(ids))


@session_queue_router.post("/{queue_id}/items_by_ids", operation_id="get_queue_items_by_item_ids")
def get_queue_items_by_item_ids(
    services: Services,
    queue_id: str = QueueId,
    item_ids: list[StoredInt] = Body(embed=True, max_length=MAX_ITEM_IDS, description="The item ids to fetch"),
) -> list[SessionQueueItem]:
    """The items of this queue among `item_ids`, in the order asked; unknown ids are skipped."""
    items = services.session_queue.get_queue_items_by_item_ids(item_ids)
    return [item for item in items if item.queue_id == queue_id]


@session_queue_router.put("/{queue_id}/retry_items_by_id", operation_id="retry_items_by_id")
def retry_items_by_id(
    services: Services,
    queue_id: str = QueueId,
    item_ids: list[StoredInt] = Body(max_length=MAX_ITEM_IDS, description="The failed or canceled items to retry"),
) -> RetryItemsResult:
    """Enqueues each failed or canceled item again as a new item with the same graph and field values."""
    return services.session_queue.retry_items_by_id(queue_id, item_ids)


@session_queue_router.put("/{queue_id}/processor/resume", operation_id="resume")
def resume(services: Services, queue_id: str = QueueId) -> SessionProcessorStatus:
    """Lets the processor take new sessions again."""
    return services.session_processor.resume()


@session_queue_router.put("/{queue_id}/processor/pause", operation_id="pause")
def pause(services: Services, queue_id: str = QueueId) -> SessionProcessorStatus:
    """Lets the current session finish and takes no new one until resumed."""
    return services.session_processor.pause()


@session_queue_router.put("/{queue_id}/cancel_all_except_current", operation_id="cancel_all_except_current")
def cancel_all_except_current(services: Services, queue_id: str = QueueId) -> CancelAllExceptCurrentResult:
    """Cancels every pending item, leaving the running one."""
    return services.session_queue.cancel_all_except_current(queue_id)


@session_queue_router.put("/{queue_id}/cancel_by_batch_ids", operation_id="cancel_by_batch_ids")
def cancel_by_batch_ids(
    services: Services,
    queue_id: str = QueueId,
    batch_ids: list[str] = Body(embed=True, max_length=MAX_ITEM_IDS, description="The batches to cancel"),
) -> CancelByBatchIDsResult:
    """Cancels every unfinished item of the batches, stopping the running one."""
    return services.session_queue.cancel_by_batch_ids(queue_id, batch_ids)


@session_queue_router.put("/{queue_id}/clear", operation_id="clear")
def clear(services: Services, queue_id: str = QueueId) -> ClearResult:
    """Deletes every item of the queue, stopping the running one, but those whose webhook is still due."""
    return services.session_queue.clear(queue_id)


@session_queue_router.put("/{queue_id}/prune", operation_id="prune")
def prune(services: Services, queue_id: str = QueueId) -> PruneResult:
    """Deletes the finished items, but those whose webhook is still due."""
    return services.session_queue.prune(queue_id)


@session_queue_router.get("/{queue_id}/current", operation_id="get_current_queue_item")
def get_current_queue_item(services: Services, queue_id: str = QueueId) -> SessionQueueItem | None:
    """The running item, if any."""
    return services.session_queue.get_current(queue_id)


@session_queue_router.get("/{queue_id}/next", operation_id="get_next_queue_item")
def get_next_queue_item(services: Services, queue_id: str = QueueId) -> SessionQueueItem | None:
    """The item that runs next, if any."""
    return services.session_queue.get_next(queue_id)


@session_queue_router.get("/{queue_id}/processors", operation_id="list_processors")
def list_processors(services: Services, queue_id: str = QueueId) -> list[ProcessorStatus]:
    """Every processor registered on the database, in any process or machine, oldest first: whether its lease holds
    and the items it runs. Processors take items of every queue; each item names its own."""
    return services.session_queue.list_processors()


@session_queue_router.get("/{queue_id}/status", operation_id="get_queue_status")
def get_queue_status(services: Services, queue_id: str = QueueId) -> SessionQueueAndProcessorStatus:
    """Counts by status, the running item and the processor's state."""
    return SessionQueueAndProcessorStatus(
        queue=services.session_queue.get_queue_status(queue_id), processor=services.session_processor.get_status()
    )


@session_queue_router.get("/{queue_id}/b/{batch_id}/status", operation_id="get_batch_status")
def get_batch_status(
    services: Services, queue_id: str = QueueId, batch_id: str = Path(description="The batch")
) -> BatchStatus:
    """Counts by status for one batch."""
    return services.session_queue.get_batch_status(queue_id, batch_id)


@session_queue_router.get(
    "/{queue_id}/b/{batch_id}/wait",
    operation_id="wait_for_batch",
    responses={503: {"description": "The server began to shut down before the batch finished"}},
)
async def wait_for_batch(
    services: Services,
    sockets: Sockets,
    shutdown: ServerShutdown,
    queue_id: str = QueueId,
    batch_id: str = Path(description="The batch"),
    timeout: float = Query(default=60, gt=0, le=3600, description="The most seconds to wait"),
) -> WaitBatchResult:
    """Returns when every item of the batch has finished, or when `timeout` passes, saying which.

    When the server begins to shut down first, answers 503 at once: its items may yet be interrupted, so the state
    now is not the outcome; wait again once the server is back.
    """
    queue = services.session_queue
    changed = asyncio.Event()

    def on_change(event: QueueItemStatusChangedEvent) -> None:
        if event.batch_id == batch_id:
            changed.set()

    remove = sockets.add_status_listener(on_change)
    deadline = time.monotonic() + timeout
    try:
        while True:
            changed.clear()
            status = await asyncio.to_thread(queue.get_batch_status, queue_id, batch_id)
            finished = status.pending + status.in_progress == 0
            remaining = deadline - time.monotonic()
            if finished or remaining <= 0:
                break
            if shutdown.began:
                raise HTTPException(
                    status_code=503,
                    detail=f"The server is shutting down before batch {batch_id} finished: wait again once it is back",
                )
            # Wake at least each second: a change may have come before the listener was in place.
            await shutdown.wait(changed, timeout_s=min(remaining, 1.0))
    finally:
        remove()
    items = await asyncio.to_thread(queue.get_batch_items, queue_id, batch_id)
    return WaitBatchResult(
        queue_id=queue_id,
        batch_id=batch_id,
        finished=finished,
        timed_out=not finished,
        items=[QueueItemOutcome.from_item(item) for item in items],
    )


@session_queue_router.get("/{queue_id}/i/{item_id}", operation_id="get_queue_item")
def get_queue_item(services: Services, queue_id: str = QueueId, item_id: int = ItemId) -> SessionQueueItem:
    """One item, with its session."""
    return _in_queue(services.session_queue, queue_id, item_id)


@session_queue_router.get("/{queue_id}/i/{item_id}/stats", operation_id="get_queue_item_stats")
def get_queue_item_stats(services: Services, queue_id: str = QueueId, item_id: int = ItemId) -> dict[str, Any]:
    """The item's invocation stats (`InvocationStatsSummary` as JSON), kept when the item finished."""
    _check_in_queue(services.session_queue, queue_id, item_id)
    stats = services.session_queue.get_queue_item_stats(item_id)
    if stats is None:
        raise HTTPException(status_code=404, detail=f"Queue item {item_id} has no stats yet: no node of it has run")
    return stats


@session_queue_router.delete("/{queue_id}/i/{item_id}", operation_id="delete_queue_item")
def delete_queue_item(services: Services, queue_id: str = QueueId, item_id: int = ItemId) -> None:
    """Deletes the item, stopping it first if it is running; 409 when its webhook is still due (it is kept)."""
    _check_in_queue(services.session_queue, queue_id, item_id)
    services.session_queue.delete_queue_item(item_id)


@session_queue_router.put("/{queue_id}/i/{item_id}/cancel", operation_id="cancel_queue_item")
def cancel_queue_item(services: Services, queue_id: str = QueueId, item_id: int = ItemId) -> SessionQueueItem:
    """Cancels the item, stopping it at its next step if it is running."""
    _check_in_queue(services.session_queue, queue_id, item_id)
    return services.session_queue.cancel_queue_item(item_id)
