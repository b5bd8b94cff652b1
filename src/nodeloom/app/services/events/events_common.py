"""The events nodeloom emits: typed models, each with a name and the ids it concerns."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, Field

from nodeloom.app.invocations.baseinvocation import AnyInvocation, AnyInvocationOutput
from nodeloom.app.services.model_install.model_install_common import ModelInstallJob, ModelSource
from nodeloom.app.services.session_queue.session_queue_common import (
    QUEUE_ITEM_STATUS,
    BatchStatus,
    SessionQueueStatus,
)
from nodeloom.backend.model_manager.configs import AnyModelConfig

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
    from nodeloom.app.services.session_queue.session_queue_common import EnqueueBatchResult, SessionQueueItem


def _now_s() -> int:
    return int(time.time())


class EventBase(BaseModel):
    """An event: `event_name` says which, the payload is the model's fields."""

    event_name: ClassVar[str] = ""

    timestamp: int = Field(default_factory=_now_s, description="When the event happened, in seconds since the epoch")


class QueueEventBase(EventBase):
    queue_id: str = Field(description="The id of the queue")
    seq: int | None = Field(
        default=None,
        description="The event's number in its queue, given when it is stored: the same in every process, growing "
        "in the order the queue's changes committed; what a reconnecting socket.io client passes as `after`",
    )


class QueueItemEventBase(QueueEventBase):
    item_id: int = Field(description="The id of the queue item")
    batch_id: str = Field(description="The id of the batch")
    origin: str | None = Field(default=None, description="Where the batch came from")
    destination: str | None = Field(default=None, description="Where results should go")
    session_id: str = Field(description="The id of the session")


class InvocationEventBase(QueueItemEventBase):
    invocation: AnyInvocation = Field(description="The prepared node, with its inputs")
    invocation_source_id: str = Field(description="The id of the node in the source graph")

    @classmethod
    def _ids(cls, queue_item: SessionQueueItem, invocation: BaseInvocation) -> dict[str, Any]:
        return {
            "queue_id": queue_item.queue_id,
            "item_id": queue_item.item_id,
            "batch_id": queue_item.batch_id,
            "origin": queue_item.origin,
            "destination": queue_item.destination,
            "session_id": queue_item.session_id,
            "invocation": invocation,
            "invocation_source_id": queue_item.session.prepared_source_mapping[invocation.id],
        }


class InvocationStartedEvent(InvocationEventBase):
    event_name = "invocation_started"

    @classmethod
    def build(cls, queue_item: SessionQueueItem, invocation: BaseInvocation) -> InvocationStartedEvent:
        return cls(**cls._ids(queue_item, invocation))


class ProgressImage(BaseModel):
    width: int = Field(description="The preview's width in pixels")
    height: int = Field(description="The preview's height in pixels")
    dataURL: str = Field(description="The preview as a data URL")


class InvocationProgressEvent(InvocationEventBase):
    event_name = "invocation_progress"

    message: str = Field(description="What the node is doing")
    percentage: float | None = Field(default=None, ge=0, le=1, description="How far it is, from 0 to 1")
    image: ProgressImage | None = Field(default=None, description="A preview of the result so far")

    @classmethod
    def build(
        cls,
        queue_item: SessionQueueItem,
        invocation: BaseInvocation,
        message: str,
        percentage: float | None = None,
        image: ProgressImage | None = None,
    ) -> InvocationProgressEvent:
        return cls(**cls._ids(queue_item, invocation), message=message, percentage=percentage, image=image)


class InvocationCompleteEvent(InvocationEventBase):
    event_name = "invocation_complete"

    result: AnyInvocationOutput = Field(description="The node's output")

    @classmethod
    def build(
        cls, queue_item: SessionQueueItem, invocation: BaseInvocation, result: BaseInvocationOutput
    ) -> InvocationCompleteEvent:
        return cls(**cls._ids(queue_item, invocation), result=result)


class InvocationErrorEvent(InvocationEventBase):
    event_name = "invocation_error"

    error_type: str = Field(description="The kind of error")
    error_message: str = Field(description="The error message")
    error_traceback: str = Field(description="The traceback")

    @classmethod
    def build(
        cls,
        queue_item: SessionQueueItem,
        invocation: BaseInvocation,
        error_type: str,
        error_message: str,
        error_traceback: str,
    ) -> InvocationErrorEvent:
        return cls(
            **cls._ids(queue_item, invocation),
            error_type=error_type,
            error_message=error_message,
            error_traceback=error_traceback,
        )


class QueueItemStatusChangedEvent(QueueItemEventBase):
    event_name = "queue_item_status_changed"

    status: QUEUE_ITEM_STATUS = Field(description="The new status")
    old_status: QUEUE_ITEM_STATUS | None = Field(description="The status before, None for a new item")
    error_type: str | None = Field(default=None, description="The kind of error, if the item failed")
    error_message: str | None = Field(default=None, description="The error message, if the item failed")
    error_traceback: str | None = Field(default=None, description="The traceback, if the item failed")
    created_at: str = Field(description="When the item was enqueued (ISO 8601)")
    updated_at: str = Field(description="When the item last changed (ISO 8601)")
    started_at: str | None = Field(default=None, description="When the item started running (ISO 8601)")
    completed_at: str | None = Field(default=None, description="When the item finished (ISO 8601)")
    batch_status: BatchStatus = Field(description="The counts of the item's batch")
    queue_status: SessionQueueStatus = Field(description="The counts of the item's queue")


class BatchEnqueuedEvent(QueueEventBase):
    event_name = "batch_enqueued"

    batch_id: str = Field(description="The id of the batch")
    enqueued: int = Field(description="How many items were enqueued")
    requested: int = Field(description="How many items the batch asked for")
    priority: int = Field(description="The priority of the items")
    origin: str | None = Field(default=None, description="Where the batch came from")
    has_webhook: bool = Field(default=False, description="Whether each item's outcome is POSTed to a callback URL")

    @classmethod
    def build(cls, result: EnqueueBatchResult) -> BatchEnqueuedEvent:
        return cls(
            queue_id=result.queue_id,
            batch_id=result.batch.batch_id,
            enqueued=result.enqueued,
            requested=result.requested,
            priority=result.priority,
            origin=result.batch.origin,
            has_webhook=result.batch.callback_url is not None,
        )


class QueueClearedEvent(QueueEventBase):
    event_name = "queue_cleared"


class QueueItemsRetriedEvent(QueueEventBase):
    event_name = "queue_items_retried"

    retried_item_ids: list[int] = Field(description="The items retried; each has a new pending copy")


class ProcessingPausedChangedEvent(EventBase):
    """The processors of every process were paused or resumed: sent to every client."""

    event_name = "processing_paused_changed"

    paused: bool = Field(description="Whether the processors now take no new items")


class ModelEventBase(EventBase):
    config: dict[str, Any] = Field(description="The model's config")
    submodel_type: str | None = Field(default=None, description="The part of the model, if only a part")


class ModelLoadStartedEvent(ModelEventBase):
    event_name = "model_load_started"


class ModelLoadCompleteEvent(ModelEventBase):
    event_name = "model_load_complete"


class ModelInstallEventBase(EventBase):
    """An event of a model install job (InvokeAI's payloads), sent to every client."""

    id: int = Field(description="The id of the install job")
    source: ModelSource = Field(description="Where the model comes from: a local path, a URL or a repo id")


class ModelInstallDownloadEventBase(ModelInstallEventBase):
    local_path: str = Field(description="Where the model is downloading to")
    bytes: int = Field(description="Bytes downloaded so far, all files together")
    total_bytes: int = Field(description="The size of the download, all files together")
    parts: list[dict[str, int | str]] = Field(
        description="Each file's progress: its url, local_path, bytes and total_bytes"
    )

    @classmethod
    def build(cls, job: ModelInstallJob) -> Self:
        parts: list[dict[str, int | str]] = [
            {"url": part.source, "local_path": part.dest, "bytes": part.bytes, "total_bytes": part.total_bytes}
            for part in job.download_parts
        ]
        return cls(
            id=job.id,
            source=job.source,
            local_path=job.local_path,
            bytes=job.bytes,
            total_bytes=job.total_bytes,
            parts=parts,
        )


class ModelInstallDownloadStartedEvent(ModelInstallDownloadEventBase):
    event_name = "model_install_download_started"


class ModelInstallDownloadProgressEvent(ModelInstallDownloadEventBase):
    event_name = "model_install_download_progress"


class ModelInstallDownloadsCompleteEvent(ModelInstallEventBase):
    event_name = "model_install_downloads_complete"


class ModelInstallStartedEvent(ModelInstallEventBase):
    event_name = "model_install_started"


class ModelInstallCompleteEvent(ModelInstallEventBase):
    event_name = "model_install_complete"

    key: str = Field(description="The installed model's key")
    total_bytes: int | None = Field(description="The size of the model in bytes")
    config: AnyModelConfig = Field(description="The installed model's config")


class ModelInstallCancelledEvent(ModelInstallEventBase):
    event_name = "model_install_cancelled"


class ModelInstallErrorEvent(ModelInstallEventBase):
    event_name = "model_install_error"

    error_type: str = Field(description="The kind of error")
    error: str = Field(description="What failed")


class ImageCreatedEvent(EventBase):
    event_name = "image_created"

    image_name: str = Field(description="The name of the new image")
    image_url: str = Field(description="The URL of the full image")
    thumbnail_url: str = Field(description="The URL of the image's thumbnail")
    board_id: str | None = Field(default=None, description="The board the image was put on, if any")
    image_origin: str = Field(description="Who made the image: internal or external")
    image_category: str = Field(description="What the image is for: general, mask, control, user or other")
    width: int = Field(description="The width of the image in pixels")
    height: int = Field(description="The height of the image in pixels")
    is_intermediate: bool = Field(description="Whether the image is an intermediate result")
    session_id: str | None = Field(default=None, description="The session that made the image, if one did")
    node_id: str | None = Field(default=None, description="The node that made the image, if one did")


class BulkDownloadEventBase(EventBase):
    """An event of a bulk download: a zip of images being made, sent to the socket.io room `bulk_download_id`."""

    bulk_download_id: str = Field(description="The id of the bulk download: its socket.io room")
    bulk_download_item_id: str = Field(description="The id of the archive")
    bulk_download_item_name: str = Field(description="The name of the archive, to fetch it by")


class BulkDownloadStartedEvent(BulkDownloadEventBase):
    event_name = "bulk_download_started"


class BulkDownloadCompleteEvent(BulkDownloadEventBase):
    event_name = "bulk_download_complete"


class BulkDownloadErrorEvent(BulkDownloadEventBase):
    event_name = "bulk_download_error"

    error: str = Field(description="Why the archive could not be made")


@dataclass(frozen=True, slots=True)
class StoredQueueEvent:
    """A queue's event as stored: its number, its name and its JSON payload (which carries the number too)."""

    seq: int
    event_name: str
    payload: str


@dataclass(frozen=True, slots=True)
class StoredQueueEvents:
    """A page of a queue's stored events, read in one snapshot with the numbers that bound what is stored."""

    oldest: int | None
    """The number of the queue's oldest stored event; None when none is stored."""
    last: int
    """The number of the queue's last event, stored or pruned since; 0 when it has none."""
    events: tuple[StoredQueueEvent, ...]
    """In their order."""


def _named_event_types(base: type[EventBase]) -> dict[str, type[EventBase]]:
    types = {base.event_name: base} if base.event_name else {}
    for subclass in base.__subclasses__():
        types.update(_named_event_types(subclass))
    return types


EVENT_TYPES: dict[str, type[EventBase]] = _named_event_types(EventBase)
"""Every event class by its `event_name`, to read stored events back."""
