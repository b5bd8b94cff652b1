"""Webhook delivery with httpx on one thread, a few tries with backoff."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import httpx

from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import EventBase, QueueItemStatusChangedEvent
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import FINISHED_STATUSES, QueueItemOutcome
from nodeloom.app.services.webhooks.webhooks_base import WebhookServiceBase

logger = logging.getLogger(__name__)


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
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._stopping.clear()
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
        # Only the item id travels: the item is read when the call is made, so the bus thread does no I/O.
        if isinstance(event, QueueItemStatusChangedEvent) and event.status in FINISHED_STATUSES:
            self._pending.put(event.item_id)

    def _deliver_forever(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            while (item_id := self._pending.get()) is not None:
                try:
                    self._deliver(client, item_id)
                except Exception:
                    logger.exception("Webhook for item %s failed", item_id)

    def _deliver(self, client: httpx.Client, item_id: int) -> None:
        # Most items have no webhook: the cheap read spares parsing their sessions.
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
