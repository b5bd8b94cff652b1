"""The session queue: where enqueued sessions wait, run and finish."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.session_queue.session_queue_common import (
        QUEUE_ITEM_STATUS,
        Batch,
        BatchStatus,
        CancelAllExceptCurrentResult,
        CancelByBatchIDsResult,
        CancelByQueueIDResult,
        ClearResult,
        EnqueueBatchResult,
        IsEmptyResult,
        IsFullResult,
        ProcessorInfo,
        ProcessorStatus,
        PruneResult,
        RetryItemsResult,
        SessionQueueItem,
        SessionQueueStatus,
    )
    from nodeloom.app.services.shared.graph import GraphExecutionState
    from nodeloom.app.services.shared.pagination import CursorPaginatedResults


class SessionQueueBase(ABC):
    """Every status change emits `QueueItemStatusChanged`; enqueueing emits `BatchEnqueued`, clearing `QueueCleared`.

    Finishing operations (`complete_queue_item`, `fail_queue_item`, cancels) only act on items that have not
    finished yet, so a late completion never overwrites a cancel.
    """

    @abstractmethod
    def recover_interrupted(self) -> list[int]:
        """Fails (or requeues, as configured) every item in progress that no live processor holds, in one
        transaction; their ids.

        Run at start-up and by every processor's periodic sweep. A processor is gone when its lease expired (no
        heartbeat for `lease_s`), when it deregistered, or when it is known dead: registered on this host by a
        process that has ended, or by an earlier process with this process's id. Items that a live processor holds,
        in this process or another, are left alone.
        """

    @abstractmethod
    def heartbeat(self, processor: ProcessorInfo, item_id: int | None = None, node_id: str | None = None) -> None:
        """Registers the processor or renews its lease, noting the item and node it runs, if any."""

    @abstractmethod
    def deregister_processor(self, processor_id: str) -> None:
        """Removes the processor's registration: an item it still holds is recovered by the next sweep."""

    @abstractmethod
    def list_processors(self) -> list[ProcessorStatus]:
        """Every registered processor, oldest first, with whether its lease holds and the items it holds."""

    @abstractmethod
    def interrupt_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> QUEUE_ITEM_STATUS:
        """Fails (or requeues, as configured) an in-progress item whose run was cut short, storing the session as far
        as it ran and its stats, if given, in the same transaction; its new status. See `complete_queue_item` for
        `processor_id`."""

    @abstractmethod
    def enqueue_batch(
        self, queue_id: str, batch: Batch, prepend: bool, all_or_nothing: bool = False
    ) -> EnqueueBatchResult:
        """Expands the batch into sessions and stores them in one transaction; `prepend` runs them first.

        Only unfinished items count toward the queue's size. When the batch does not fit whole, its first sessions
        that fit are enqueued, or with `all_or_nothing` none; `QueueFullError` when none are. `BatchExistsError`
        when the queue already holds the batch's id.
        """

    @abstractmethod
    def set_processing_paused(self, paused: bool) -> None:
        """Pauses or resumes the processors of every process sharing the queue, emitting
        `ProcessingPausedChanged` when that changes: while paused, `dequeue` claims nothing. The pause is stored,
        so it outlasts a restart."""

    @abstractmethod
    def is_processing_paused(self) -> bool:
        """Whether the processors are paused."""

    @abstractmethod
    def dequeue(self, processor_id: str) -> SessionQueueItem | None:
        """Atomically takes the highest-priority, oldest pending item of any queue and marks it in progress, held by
        the processor."""

    @abstractmethod
    def get_current(self, queue_id: str) -> SessionQueueItem | None:
        """The item in progress, if any."""

    @abstractmethod
    def get_next(self, queue_id: str) -> SessionQueueItem | None:
        """The item `dequeue` would take next, if any."""

    @abstractmethod
    def get_queue_item(self, item_id: int) -> SessionQueueItem:
        """The item; raises `SessionQueueItemNotFoundError`."""

    @abstractmethod
    def get_queue_items_by_item_ids(self, item_ids: list[int]) -> list[SessionQueueItem]:
        """The items that exist among `item_ids`, in the order asked."""

    @abstractmethod
    def list_queue_items(
        self,
        queue_id: str,
        limit: int,
        priority: int | None = None,
        cursor: int | None = None,
        status: QUEUE_ITEM_STATUS | None = None,
        destination: str | None = None,
    ) -> CursorPaginatedResults[SessionQueueItem]:
        """A page in run order (priority, then item id); pass the last item's priority and id to get the next."""

    @abstractmethod
    def list_all_queue_items(self, queue_id: str, destination: str | None = None) -> list[SessionQueueItem]:
        """Every item of the queue in run order."""

    @abstractmethod
    def get_queue_item_ids(self, queue_id: str, order_dir: Literal["ASC", "DESC"] = "DESC") -> list[int]:
        """The ids of every item of the queue, newest first by default."""

    @abstractmethod
    def get_queue_status(self, queue_id: str) -> SessionQueueStatus:
        """Counts by status and the item in progress."""

    @abstractmethod
    def get_all_queue_counts(self) -> dict[str, dict[str, int]]:
        """Item counts by status for every queue that has items: {queue_id: {status: count}}."""

    @abstractmethod
    def get_batch_items(self, queue_id: str, batch_id: str) -> list[SessionQueueItem]:
        """The items of one batch in enqueue order; raises `BatchNotFoundError`."""

    @abstractmethod
    def get_batch_status(self, queue_id: str, batch_id: str) -> BatchStatus:
        """Counts by status for one batch; raises `BatchNotFoundError`."""

    @abstractmethod
    def set_queue_item_session(
        self, item_id: int, session: GraphExecutionState, processor_id: str | None = None
    ) -> None:
        """Saves the session as far as it has run. See `complete_queue_item` for `processor_id`."""

    @abstractmethod
    def set_queue_item_stats(self, item_id: int, stats: InvocationStatsSummary) -> None:
        """Keeps the item's invocation stats with it."""

    @abstractmethod
    def get_queue_item_stats(self, item_id: int) -> dict[str, object] | None:
        """The item's invocation stats as JSON, if any were kept; raises `SessionQueueItemNotFoundError`."""

    @abstractmethod
    def get_webhook_due_url(self, item_id: int) -> str | None:
        """Where the item's outcome is to be POSTed, if its webhook is due (neither made nor given up on yet)."""

    @abstractmethod
    def get_unfinished_webhook_batch_ids(self) -> list[str]:
        """The batches with a callback URL that still have items to finish."""

    @abstractmethod
    def get_webhooks_due(self) -> list[int]:
        """The finished items whose webhook has been neither delivered nor given up on and that no claim holds,
        oldest first.

        An item's webhook falls due in the write that finishes it; until it is done the item is never pruned.
        """

    @abstractmethod
    def claim_webhook(self, item_id: int, claimant: str, lease_s: float) -> bool:
        """Claims the item's due call for `lease_s` seconds, so that no other claimant makes it meanwhile; whether
        it was due and free (unclaimed, its claim lapsed, or the claimant's own)."""

    @abstractmethod
    def set_webhook_done(self, item_id: int, delivered: bool, claimant: str) -> None:
        """Records that the item's due webhook was delivered (or given up on); nothing if none was due, or another
        claimant's claim holds it (that one makes the call again)."""

    @abstractmethod
    def release_webhook_claims(self, claimant: str) -> None:
        """Frees the calls the claimant holds and has not made, for any claimant to take at once."""

    @abstractmethod
    def release_gone_webhook_claims(self) -> None:
        """Frees the calls held by claimants known to be gone: on this host, a process that no longer runs or an
        earlier process with this one's id. Claims made elsewhere are left to lapse."""

    @abstractmethod
    def complete_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> QUEUE_ITEM_STATUS:
        """Stores the finished session and its stats, if given, and marks the in-progress item completed, all in
        one transaction; the item's status after (canceled, if it was canceled meanwhile).

        The processor running the item passes its id: if the item was taken from it meanwhile (its lease lapsed,
        and the item was recovered, maybe run again by another processor), nothing is changed and
        `SessionQueueItemTakenError` is raised."""

    @abstractmethod
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
        """Marks an unfinished item failed, keeping the error, and stores the session as far as it ran and its stats,
        if given, all in one transaction. See `complete_queue_item` for `processor_id`."""

    @abstractmethod
    def cancel_queue_item(
        self,
        item_id: int,
        session: GraphExecutionState | None = None,
        stats: InvocationStatsSummary | None = None,
        processor_id: str | None = None,
    ) -> SessionQueueItem:
        """Marks an unfinished item canceled, and stores the session as far as it ran and its stats, if given, all in
        one transaction (they are stored on an item canceled already, too). See `complete_queue_item` for
        `processor_id`."""

    @abstractmethod
    def cancel_by_batch_ids(self, queue_id: str, batch_ids: list[str]) -> CancelByBatchIDsResult:
        """Cancels every unfinished item of the batches."""

    @abstractmethod
    def cancel_by_queue_id(self, queue_id: str) -> CancelByQueueIDResult:
        """Cancels every unfinished item of the queue."""

    @abstractmethod
    def cancel_all_except_current(self, queue_id: str) -> CancelAllExceptCurrentResult:
        """Cancels every pending item of the queue, leaving the one in progress to run."""

    @abstractmethod
    def retry_items_by_id(self, queue_id: str, item_ids: list[int]) -> RetryItemsResult:
        """Enqueues a fresh copy of each failed or canceled item, with its graph and field values."""

    @abstractmethod
    def delete_queue_item(self, item_id: int) -> None:
        """Deletes the item, canceling it first if it is unfinished; raises `WebhookDueError` and keeps the item
        when its webhook is still due (the call reads it)."""

    @abstractmethod
    def clear(self, queue_id: str) -> ClearResult:
        """Deletes every item of the queue (canceling the one in progress), but those whose webhook is still due,
        and emits `QueueCleared`."""

    @abstractmethod
    def prune(self, queue_id: str) -> PruneResult:
        """Deletes the finished items of the queue, but those whose webhook is still due."""

    @abstractmethod
    def is_empty(self, queue_id: str) -> IsEmptyResult:
        """Whether the queue has no items."""

    @abstractmethod
    def is_full(self, queue_id: str) -> IsFullResult:
        """Whether the queue holds as many unfinished items as it may."""
