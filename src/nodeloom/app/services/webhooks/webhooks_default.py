"""Webhook delivery with httpx on one thread, a few tries with backoff."""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable

import httpx

from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import BatchEnqueuedEvent, EventBase, QueueItemStatusChangedEvent
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import FINISHED_STATUSES, QueueItemOutcome
from nodeloom.app.services.webhooks.webhooks_base import WebhookServiceBase

logger = logging.getLogger(__name__)

MAX_REMEMBERED_BATCHES = 100_000
"""Batches with a webhook remembered, oldest forgotten first: an item of a batch forgotten gets no call."""


class HttpWebhookService(WebhookServiceBase):
    def __init__(
        self,
        events: EventServiceBase,
        session_queue: SessionQueueBase,
        tries: int = 3,
        first_backoff_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> None:
        self._events = events
        self._queue = session_queue
        self._tries = tries
        self._first_backoff_s = first_backoff_s
        self._timeout_s = timeout_s
        self._pending: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._batches_with_webhooks: OrderedDict[str, None] = OrderedDict()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._stopping.clear()
        # Items enqueued before this process started are announced by no event.
        self._batches_with_webhooks.update(dict.fromkeys(self._queue.get_unfinished_webhook_batch_ids()))
        self._unsubscribe = self._events.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._deliver_forever, name="nodeloom-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._thread is not None:
            self._stopping.set()
            self._pending.put(None)
            self._thread.join()
            self._thread = None

    def _on_event(self, event: EventBase) -> None:
        # Batches are enqueued (and announced) before any of their items change, so the set is complete when
        # an item finishes; only the item id travels, and the item is read when the call is made.
        if isinstance(event, BatchEnqueuedEvent):
            if event.has_webhook:
                self._batches_with_webhooks[event.batch_id] = None
                while len(self._batches_with_webhooks) > MAX_REMEMBERED_BATCHES:
                    self._batches_with_webhooks.popitem(last=False)
        elif (
            isinstance(event, QueueItemStatusChangedEvent)
            and event.status in FINISHED_STATUSES
            and event.batch_id in self._batches_with_webhooks
        ):
            self._pending.put(event.item_id)

    def _deliver_forever(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            while (item_id := self._pending.get()) is not None:
                try:
                    self._deliver(client, item_id)
                except Exception:
                    logger.exception("Webhook for item %s failed", item_id)

    def _deliver(self, client: httpx.Client, item_id: int) -> None:
        url = self._queue.get_callback_url(item_id)
        if url is None:
            return
        body = QueueItemOutcome.from_item(self._queue.get_queue_item(item_id)).model_dump(mode="json")
        backoff = self._first_backoff_s
        for attempt in range(1, self._tries + 1):
            try:
                response = client.post(url, json=body)
                if response.status_code < 300:
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
            logger.warning(
                "Webhook %s for item %s failed (try %d of %d): %s",
                url,
                item_id,
                attempt,
                self._tries,
                problem,
            )
            if attempt < self._tries and self._stopping.wait(backoff):
                return
            backoff *= 2
        logger.error("Gave up on the webhook %s for item %s", url, item_id)
