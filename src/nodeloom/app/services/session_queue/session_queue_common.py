"""Batches, queue items, queue and batch status, and the queue's errors."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import socket
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    HttpUrl,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nodeloom.app.invocations.fields import ImageField
from nodeloom.app.invocations.limits import check_limit
from nodeloom.app.services.shared.graph import Graph, GraphExecutionState
from nodeloom.app.services.shared.graph_common import uuid_string
from nodeloom.app.services.shared.timestamps import utc_now
from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    from nodeloom.app.services.config.config_default import NodeloomConfig

DEFAULT_QUEUE_ID = "default"

QUEUE_ITEM_STATUS = Literal["pending", "in_progress", "completed", "failed", "canceled"]
QUEUE_ITEM_STATUSES: tuple[QUEUE_ITEM_STATUS, ...] = ("pending", "in_progress", "completed", "failed", "canceled")
FINISHED_STATUSES: frozenset[QUEUE_ITEM_STATUS] = frozenset({"completed", "failed", "canceled"})


class SessionQueueError(NodeloomError):
    """The session queue refused the request."""


class SessionQueueItemNotFoundError(SessionQueueError):
    """No queue item has that id."""


class SessionQueueItemTakenError(SessionQueueError):
    """The processor no longer holds the queue item: it was taken from it (its lease lapsed), so what the processor
    would write of it is dropped."""


class BatchNotFoundError(SessionQueueError):
    """No queue item belongs to that batch."""


class QueueFullError(SessionQueueError):
    """The queue cannot take that many more sessions."""


class BatchExistsError(SessionQueueError):
    """The queue already holds a batch with that id."""


class BatchValidationError(SessionQueueError):
    """The batch's data does not fit its graph."""


class WebhookDueError(SessionQueueError):
    """The queue item's webhook is still to be called, so the item is kept until the call is made or given up."""


class SessionQueueItemUnreadableError(SessionQueueError):
    """A queue item is stored but cannot be read back (its session no longer loads)."""

    def __init__(self, item_id: int, queue_id: str, reason: str) -> None:
        super().__init__(
            f"Queue item {item_id} is stored but cannot be read: {reason}. It can still be canceled or deleted"
        )
        self.item_id = item_id
        self.queue_id = queue_id
        self.reason = reason


# Batch values are strict so that "1" stays a string and 1 stays an int when a batch is read from JSON.
BatchDataType = StrictStr | StrictBool | StrictInt | StrictFloat | ImageField


class NodeFieldValue(BaseModel):
    node_path: str = Field(description="The node the value was put into")
    field_name: str = Field(description="The field the value was put into")
    value: BatchDataType = Field(description="The value")


class BatchDatum(BaseModel):
    node_path: str = Field(description="The node to put each item into")
    field_name: str = Field(description="The field to put each item into")
    items: list[BatchDataType] = Field(default_factory=list, description="The values, one per session")


BatchDataCollection = list[list[BatchDatum]]


class Batch(BaseModel):
    """One graph and the field values to run it with.

    Each inner list of `data` is zipped (its items taken in step), the inner lists are combined as a
    Cartesian product, and the whole repeated `runs` times: one session per combination and run.
    """

    batch_id: str = Field(default_factory=uuid_string, min_length=1, description="The id of the batch")
    origin: str | None = Field(default=None, description="Where the batch came from, for the client's use")
    destination: str | None = Field(default=None, description="Where results should go, for the client's use")
    data: BatchDataCollection | None = Field(default=None, description="The field values to run the graph with")
    graph: Graph = Field(description="The graph to run")
    workflow: dict[str, Any] | None = Field(default=None, description="The workflow the graph was made from")
    runs: int = Field(default=1, ge=1, description="How many times to run every combination of the data")
    timeout: float | None = Field(
        default=None, gt=0, description="The most seconds a session may run before it is stopped and failed"
    )
    callback_url: HttpUrl | None = Field(
        default=None, description="POSTed each item's status and outputs when it finishes"
    )

    @field_validator("callback_url")
    @classmethod
    def _callback_url_has_no_credentials(cls, url: HttpUrl | None) -> HttpUrl | None:
        # Credentials would be stored with every item and sent in clear over plain http; sign calls instead.
        if url is not None and (url.username or url.password):
            raise ValueError("a callback URL must not hold credentials (user:password@); use webhook_secret")
        return url

    @field_validator("graph")
    @classmethod
    def _graph_is_valid(cls, graph: Graph, info: ValidationInfo) -> Graph:
        # `data` is declared first, so it has been read: the inputs it sets need no value in the graph.
        if "data" not in info.data:
            return graph  # the data was invalid: that is the error to report, not the inputs it would have set
        data: BatchDataCollection = info.data["data"] or []
        graph.validate_self(filled={(datum.node_path, datum.field_name) for group in data for datum in group})
        return graph

    @field_validator("data")
    @classmethod
    def _data_is_consistent(cls, data: BatchDataCollection | None) -> BatchDataCollection | None:
        seen: set[tuple[str, str]] = set()
        for zipped in data or []:
            if not zipped:
                raise ValueError("a zipped group of batch data is empty")
            length = len(zipped[0].items)
            for datum in zipped:
                where = f"node '{datum.node_path}' field '{datum.field_name}'"
                if len(datum.items) != length:
                    raise ValueError(
                        f"zipped batch data must have equal lengths: {where} has {len(datum.items)} items, "
                        f"'{zipped[0].node_path}.{zipped[0].field_name}' has {length}"
                    )
                if not datum.items:
                    raise ValueError(f"batch data for {where} has no items")
                numbers = all(isinstance(i, int | float) and not isinstance(i, bool) for i in datum.items)
                if not numbers and len({type(i) for i in datum.items}) > 1:
                    raise ValueError(f"batch data for {where} mixes item types")
                if (datum.node_path, datum.field_name) in seen:
                    raise ValueError(f"batch data sets {where} more than once")
                seen.add((datum.node_path, datum.field_name))
        return data

    @model_validator(mode="after")
    def _data_targets_exist(self) -> Batch:
        for zipped in self.data or []:
            for datum in zipped:
                node = self.graph.nodes.get(datum.node_path)
                if node is None:
                    raise ValueError(f"batch data names node '{datum.node_path}', which is not in the graph")
                if datum.field_name not in type(node).model_fields or datum.field_name in ("id", "type"):
                    raise ValueError(
                        f"batch data names field '{datum.field_name}', which node '{datum.node_path}' "
                        f"({node.invocation_type}) has not (or may not be set)"
                    )
        return self

    def session_count(self) -> int:
        """How many sessions the batch expands to."""
        count = self.runs
        for zipped in self.data or []:
            count *= len(zipped[0].items)
        return count


class SessionQueueItem(BaseModel):
    """One session in the queue, with where it stands."""

    item_id: int = Field(description="The id of the queue item")
    queue_id: str = Field(description="The id of the queue the item is in")
    batch_id: str = Field(description="The id of the batch the item came from")
    session_id: str = Field(description="The id of the item's session")
    status: QUEUE_ITEM_STATUS = Field(default="pending", description="Where the item stands")
    priority: int = Field(default=0, description="Higher runs first; equal priorities run oldest first")
    origin: str | None = Field(default=None, description="Where the batch came from, for the client's use")
    destination: str | None = Field(default=None, description="Where results should go, for the client's use")
    field_values: list[NodeFieldValue] | None = Field(default=None, description="The batch values of this item")
    session: GraphExecutionState = Field(description="The session, as far as it has run")
    workflow: dict[str, Any] | None = Field(default=None, description="The workflow the graph was made from")
    error_type: str | None = Field(default=None, description="The kind of error, if the item failed")
    error_message: str | None = Field(default=None, description="The error message, if the item failed")
    error_traceback: str | None = Field(default=None, description="The traceback, if the item failed")
    timeout: float | None = Field(default=None, description="The most seconds the session may run")
    callback_url: str | None = Field(default=None, description="Where the item's outcome is POSTed when it finishes")
    attempts: int = Field(default=0, description="How many times the item was interrupted and requeued")
    retried_from_item_id: int | None = Field(default=None, description="The item this one retries")
    created_at: datetime.datetime = Field(description="When the item was enqueued")
    updated_at: datetime.datetime = Field(description="When the item last changed")
    started_at: datetime.datetime | None = Field(default=None, description="When the item started running")
    completed_at: datetime.datetime | None = Field(default=None, description="When the item finished")
    processor_id: str | None = Field(
        default=None, description="The processor that holds the item while it is in progress (its last one after)"
    )


class StatusCounts(BaseModel):
    pending: int = Field(description="Items waiting to run")
    in_progress: int = Field(description="Items running")
    completed: int = Field(description="Items that completed")
    failed: int = Field(description="Items that failed")
    canceled: int = Field(description="Items that were canceled")
    total: int = Field(description="All items")


class SessionQueueStatus(StatusCounts):
    queue_id: str = Field(description="The id of the queue")
    item_id: int | None = Field(default=None, description="The id of the item in progress")
    batch_id: str | None = Field(default=None, description="The batch of the item in progress")
    session_id: str | None = Field(default=None, description="The session of the item in progress")


class BatchStatus(StatusCounts):
    queue_id: str = Field(description="The id of the queue")
    batch_id: str = Field(description="The id of the batch")
    origin: str | None = Field(default=None, description="Where the batch came from")
    destination: str | None = Field(default=None, description="Where results should go")


class EnqueueBatchResult(BaseModel):
    queue_id: str = Field(description="The id of the queue")
    enqueued: int = Field(
        description="How many items were enqueued: fewer than requested when only the batch's first sessions fit"
    )
    requested: int = Field(description="How many items the batch asked for")
    batch: Batch = Field(description="The batch")
    priority: int = Field(description="The priority of the enqueued items")
    item_ids: list[int] = Field(description="The ids of the enqueued items, in order")


class ClearResult(BaseModel):
    deleted: int = Field(description="How many items were deleted")


class PruneResult(ClearResult):
    pass


class CancelByBatchIDsResult(BaseModel):
    canceled: int = Field(description="How many items were canceled")


class CancelByQueueIDResult(CancelByBatchIDsResult):
    pass


class CancelAllExceptCurrentResult(CancelByBatchIDsResult):
    pass


class RetryItemsResult(BaseModel):
    queue_id: str = Field(description="The id of the queue")
    retried_item_ids: list[int] = Field(
        description="The items retried (failed or canceled ones); each new copy names its own in `retried_from_item_id`"
    )


class IsEmptyResult(BaseModel):
    is_empty: bool = Field(description="Whether the queue has no items")


class IsFullResult(BaseModel):
    is_full: bool = Field(description="Whether the queue holds as many unfinished items as it may")


class ItemIdsResult(BaseModel):
    item_ids: list[int] = Field(description="The item ids, in the order asked for")
    total_count: int = Field(description="How many ids there are")


class ProcessorInfo(BaseModel):
    """Who a processor is, as it registers itself: every API server and worker sharing the database sees it."""

    processor_id: str = Field(description="The processor's id, new at each start")
    host: str = Field(description="The host name of the machine it runs on")
    pid: int = Field(description="The id of the process it runs in")
    devices: list[str] = Field(description="The devices its models run on")
    started_at: datetime.datetime = Field(description="When it started")


class ProcessorItem(BaseModel):
    """An item a processor holds."""

    item_id: int = Field(description="The id of the queue item")
    queue_id: str = Field(description="The queue the item is in")
    batch_id: str = Field(description="The batch the item came from")
    session_id: str = Field(description="The item's session")
    node_id: str | None = Field(
        default=None, description="The graph's node it ran at the processor's last heartbeat, if it ran one"
    )


class ProcessorStatus(ProcessorInfo):
    """A registered processor, whether its lease holds, and what it runs."""

    heartbeat_at: datetime.datetime = Field(description="When it last reported alive")
    seconds_since_heartbeat: float = Field(description="How long ago that was")
    is_alive: bool = Field(description="Whether its last heartbeat is within the lease (`lease_s`)")
    items: list[ProcessorItem] = Field(description="The items it holds in progress (one, or none)")


@dataclass(frozen=True)
class WebhookClaimant:
    """One run of a webhook service, as its claims on due calls name it: where it runs and since when, so that a
    server starting on the same host can tell that the process which made a claim is gone and free its calls."""

    host: str
    pid: int
    started_at: str
    """When the run started, as records store time."""
    token: str
    """Tells apart runs started at one moment in one process."""

    @classmethod
    def new(cls) -> WebhookClaimant:
        """A run starting now in this process."""
        return cls(socket.gethostname(), os.getpid(), utc_now(), secrets.token_hex(4))

    @property
    def id(self) -> str:
        """The claimant as stored; neither a host name nor a timestamp holds a space."""
        return f"{self.host} {self.pid} {self.started_at} {self.token}"

    @classmethod
    def parse(cls, claimant_id: str) -> WebhookClaimant | None:
        """The claimant that `id` made `claimant_id`; None for any other text."""
        parts = claimant_id.split(" ")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3])


class QueueItemOutcome(BaseModel):
    """How an item ended and what it produced: the answer of submit-and-wait and the body of a webhook call."""

    queue_id: str
    batch_id: str
    item_id: int
    session_id: str
    status: QUEUE_ITEM_STATUS
    error_type: str | None = None
    error_message: str | None = None
    outputs: dict[str, list[dict[str, Any]]] = Field(
        description="Each source node's outputs, one per prepared copy in execution order"
    )

    @classmethod
    def from_item(cls, item: SessionQueueItem) -> QueueItemOutcome:
        session = item.session
        outputs: dict[str, list[dict[str, Any]]] = {}
        for prepared_id, output in session.results.items():
            source_id = session.prepared_source_mapping[prepared_id]
            outputs.setdefault(source_id, []).append(output.model_dump(mode="json"))
        return cls(
            queue_id=item.queue_id,
            batch_id=item.batch_id,
            item_id=item.item_id,
            session_id=item.session_id,
            status=item.status,
            error_type=item.error_type,
            error_message=item.error_message,
            outputs=outputs,
        )


@dataclass(frozen=True)
class BatchLimits:
    """The most work one batch may ask for; each is the setting of the same name.

    Every limit is checked when the batch is enqueued, each node's inputs against the node limits (see
    `BaseInvocation.check_limits`); the counts are checked on the request's JSON too, before any value of it is
    validated, so that a batch of a million items is refused at the cost of counting them.
    """

    max_graph_nodes: int
    max_batch_items: int
    max_batch_runs: int
    max_workflow_kb: int
    max_batch_timeout_s: float
    max_string_length: int
    max_collection_size: int
    max_image_pixels: int

    @classmethod
    def from_config(cls, config: NodeloomConfig) -> BatchLimits:
        return cls(**{field.name: getattr(config, field.name) for field in fields(cls)})

    def _check_counts(self, nodes: int, items: int) -> None:
        check_limit("The number of nodes in the graph", nodes, self.max_graph_nodes, "max_graph_nodes")
        check_limit("The number of batch data items", items, self.max_batch_items, "max_batch_items")

    def check_json(self, body: Any) -> None:
        """Checks the counts of an `enqueue_batch` request's JSON (`{"batch": {...}}`); a body of another shape
        is left for validation to refuse."""
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            return
        graph = batch.get("graph")
        nodes = graph.get("nodes") if isinstance(graph, dict) else None
        data = batch.get("data")
        items = 0
        for group in data if isinstance(data, list) else ():
            for datum in group if isinstance(group, list) else ():
                values = datum.get("items") if isinstance(datum, dict) else None
                items += len(values) if isinstance(values, list) else 0
        self._check_counts(len(nodes) if isinstance(nodes, dict) else 0, items)

    def check(self, batch: Batch) -> None:
        """Checks the whole batch but the values batch data sets, which are checked as each is validated."""
        self._check_counts(len(batch.graph.nodes), sum(len(d.items) for group in batch.data or [] for d in group))
        check_limit("The number of runs", batch.runs, self.max_batch_runs, "max_batch_runs")
        if batch.timeout is not None:
            check_limit("The timeout in seconds", batch.timeout, self.max_batch_timeout_s, "max_batch_timeout_s")
        if batch.workflow is not None:
            size = len(json.dumps(batch.workflow)) / 1024
            check_limit("The size of the workflow in KB", size, self.max_workflow_kb, "max_workflow_kb")
        for node in batch.graph.nodes.values():
            node.check_limits(self)
