"""Webhook delivery from a small pool of sender threads, a few tries with backoff, durable across restarts."""

from __future__ import annotations

import http.client
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import nodeloom
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import BatchEnqueuedEvent, EventBase, QueueItemStatusChangedEvent
from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
from nodeloom.app.services.session_queue.session_queue_common import (
    FINISHED_STATUSES,
    QueueItemOutcome,
    SessionQueueItemNotFoundError,
    SessionQueueItemUnreadableError,
    WebhookClaimant,
)
from nodeloom.app.services.webhooks.webhooks_base import WebhookServiceBase
from nodeloom.app.services.webhooks.webhooks_common import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookAddressError,
    signature,
)
from nodeloom.app.services.webhooks.webhooks_default_http import Endpoint, WebhookCaller

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REMEMBERED_BATCHES = 100_000
"""Batches with a webhook remembered, oldest forgotten first: the calls of a batch forgotten are made at the next
start, when the calls still due are read from the queue."""
CLAIM_MARGIN_S = 30.0
"""Added to the longest a call may take once claimed, for its database reads and writes and for the clocks of the
servers sharing the database, which judge one another's claims: they must agree to well within this."""
STOP_WAIT_S = 1.0
"""How long `stop()` waits for the senders once it has cut their calls; one still busy (resolving a name, which
cannot be cut) is left behind and touches nothing more."""


@dataclass(frozen=True)
class WebhookSettings:
    senders: int = 4
    """Calls under way at once; one target takes at most half of them, so a target that hangs leaves the rest."""
    timeout_s: float = 10.0
    """The most one call may take, from connecting to the answer's status."""
    tries: int = 3
    first_backoff_s: float = 0.5
    """The wait after the first failed try; each later wait doubles."""
    allow_private: bool = False
    secret: bytes | None = None
    """Signs every call when set."""
    sweep_interval_s: float = 30.0
    """How often the calls still due are read from the queue, besides at start-up: this makes those that no event
    announced (an item retried in a batch the service had forgotten) and retries those whose call broke."""


class _Stopped(Exception):
    """The run stopped: the call is left due, for the next start."""


class _Refused(Exception):
    """The target answered the call with a status other than 2xx."""


_Call = tuple[int, str, Endpoint]
"""A call to make: the item's id, its webhook's URL and the URL's endpoint."""


@dataclass
class _Run:
    """One start-to-stop of the service; a sender left behind by `stop()` holds its own run, never the next one."""

    caller: WebhookCaller
    claimant: str
    """This run's `WebhookClaimant` id: the calls it claims, and those it may still record, are its own."""
    stopping: threading.Event = field(default_factory=threading.Event)
    pending: queue.SimpleQueue[int | None] = field(default_factory=queue.SimpleQueue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    scheduled: set[int] = field(default_factory=set)
    """Items queued or being called, so that an item read as due at start-up and announced by an event is
    called once."""
    busy: dict[str, int] = field(default_factory=dict)
    """Calls under way per target (`Endpoint.target`: the address and port connected to)."""
    waiting: dict[str, deque[_Call]] = field(default_factory=dict)
    """Per target at its limit: the calls waiting for one of its calls to end."""
    threads: list[threading.Thread] = field(default_factory=list)


class HttpWebhookService(WebhookServiceBase):
    def __init__(
        self, events: EventServiceBase, session_queue: SessionQueueBase, settings: WebhookSettings | None = None
    ) -> None:
        self._events = events
        self._queue = session_queue
        self._settings = settings or WebhookSettings()
        self._per_target = max(1, self._settings.senders // 2)
        # A claim covers the longest a claimed call may take: every try to its deadline, and the backoffs between.
        tries, timeout_s = self._settings.tries, self._settings.timeout_s
        backoffs_s = self._settings.first_backoff_s * (2 ** (tries - 1) - 1)
        self._claim_s = tries * timeout_s + backoffs_s + CLAIM_MARGIN_S
        self._batches_with_webhooks: OrderedDict[str, None] = OrderedDict()
        self._batches_lock = threading.Lock()
        # Held around every database access of a sender and by `stop()` as it stops the run, so that no sender
        # touches the database once `stop()` has returned (the database is closed next).
        self._database_guard = threading.Lock()
        self._run: _Run | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        caller = WebhookCaller(self._settings.timeout_s, self._settings.allow_private)
        run = _Run(caller=caller, claimant=WebhookClaimant.new().id)
        self._run = run
        # Calls claimed by a server on this host that has since crashed are taken at once, not after their lapse.
        self._queue.release_gone_webhook_claims()
        # Subscribed before reading what is due, so that nothing finishing meanwhile is missed; `scheduled`
        # keeps an item both read and announced from being called twice.
        self._unsubscribe = self._events.subscribe(self._on_event)
        with self._batches_lock:
            self._batches_with_webhooks.update(dict.fromkeys(self._queue.get_unfinished_webhook_batch_ids()))
        for item_id in self._queue.get_webhooks_due():
            self._schedule(run, item_id)
        for index in range(self._settings.senders):
            thread = threading.Thread(target=self._send_forever, args=(run,), name=f"nodeloom-webhooks-{index}")
            thread.daemon = True
            thread.start()
            run.threads.append(thread)
        sweeper = threading.Thread(target=self._sweep_forever, args=(run,), name="nodeloom-webhooks-sweep")
        sweeper.daemon = True
        sweeper.start()
        run.threads.append(sweeper)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        run, self._run = self._run, None
        if run is None:
            return
        with self._database_guard:
            run.stopping.set()
            # The calls cut short are left to the next server to start, or to another one running, at once.
            try:
                self._queue.release_webhook_claims(run.claimant)
            except Exception:
                logger.exception("Could not free this server's webhook claims; they lapse in %g s", self._claim_s)
        run.caller.close()
        for _ in run.threads:
            run.pending.put(None)
        deadline = time.monotonic() + STOP_WAIT_S
        for thread in run.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _on_event(self, event: EventBase) -> None:
        # Batches are enqueued (and announced) before any of their items change, so the set is complete when
        # an item finishes; only the item id travels, and the item is read when the call is made.
        if isinstance(event, BatchEnqueuedEvent):
            if event.has_webhook:
                with self._batches_lock:
                    self._batches_with_webhooks[event.batch_id] = None
                    while len(self._batches_with_webhooks) > MAX_REMEMBERED_BATCHES:
                        self._batches_with_webhooks.popitem(last=False)
        elif isinstance(event, QueueItemStatusChangedEvent) and event.status in FINISHED_STATUSES:
            run = self._run
            with self._batches_lock:
                has_webhook = event.batch_id in self._batches_with_webhooks
            if has_webhook and run is not None:
                self._schedule(run, event.item_id)

    def _sweep_forever(self, run: _Run) -> None:
        while not run.stopping.wait(self._settings.sweep_interval_s):
            try:
                due = self._while_running(run, self._queue.get_webhooks_due)
            except _Stopped:
                return
            except Exception:
                logger.exception("Could not read the webhook calls due; trying again later")
                continue
            for item_id in due:
                self._schedule(run, item_id)

    def _schedule(self, run: _Run, item_id: int) -> None:
        with run.lock:
            if item_id in run.scheduled:
                return
            run.scheduled.add(item_id)
        run.pending.put(item_id)

    def _unschedule(self, run: _Run, item_id: int) -> None:
        with run.lock:
            run.scheduled.discard(item_id)

    def _send_forever(self, run: _Run) -> None:
        while (item_id := run.pending.get()) is not None:
            try:
                url = self._while_running(run, lambda: self._queue.get_webhook_due_url(item_id))
            except _Stopped:
                return
            except SessionQueueItemNotFoundError:
                url = None  # deleted before its call was made
            except Exception:
                logger.exception("Could not read the webhook of item %s; it is called at the next start", item_id)
                url = None
            if url is None:  # no webhook, or its call was made already: an item can be read due and announced
                self._unschedule(run, item_id)
                continue
            try:
                self._call_target(run, item_id, url)
            except _Stopped:
                return

    def _call_target(self, run: _Run, item_id: int, url: str) -> None:
        """Resolves the call's host, then makes the call and those waiting for the same target, unless the target
        has its share of calls."""
        endpoint = self._handled(run, item_id, lambda: self._tried(run, item_id, url, lambda: run.caller.resolve(url)))
        if endpoint is None:
            self._unschedule(run, item_id)
            return
        # The address and port connected to, so that no other name or spelling of a server escapes its share.
        target = endpoint.target
        with run.lock:
            if run.busy.get(target, 0) >= self._per_target:
                run.waiting.setdefault(target, deque()).append((item_id, url, endpoint))
                return
            run.busy[target] = run.busy.get(target, 0) + 1
        call: _Call | None = (item_id, url, endpoint)
        try:
            while call is not None:
                self._call(run, *call)
                with run.lock:
                    waiting = run.waiting.get(target)
                    call = waiting.popleft() if waiting else None
                    if waiting is not None and not waiting:
                        del run.waiting[target]
        finally:
            with run.lock:
                run.busy[target] -= 1
                if not run.busy[target]:
                    del run.busy[target]

    def _call(self, run: _Run, item_id: int, url: str, endpoint: Endpoint) -> None:
        try:
            self._handled(run, item_id, lambda: self._try_call(run, item_id, url, endpoint))
        finally:
            self._unschedule(run, item_id)

    def _handled(self, run: _Run, item_id: int, step: Callable[[], T]) -> T | None:
        """`step()`'s result, or None when it failed, logged (and the call given up on where it cannot be made);
        `_Stopped` goes through."""
        try:
            return step()
        except _Stopped:
            raise
        except SessionQueueItemNotFoundError:
            pass  # deleted before its call was made
        except SessionQueueItemUnreadableError:
            # No outcome can be sent for it: kept due, it would be tried forever and never pruned.
            logger.error("Webhook for item %s given up: the item cannot be read back", item_id)
            self._while_running(run, lambda: self._queue.set_webhook_done(item_id, False, run.claimant))
        except Exception:
            logger.exception("Webhook for item %s failed; it is called again later", item_id)
        return None

    def _try_call(self, run: _Run, item_id: int, url: str, endpoint: Endpoint) -> None:
        """Claims the call, then tries it until it is answered with a 2xx or given up on; a call that another
        server has made or is making is left to it.

        Claimed here, once the call has its target's share, rather than when it is read: a claim then covers what
        a call may take, and no call waits for a target under this server's claim while another could make it.
        """
        if not self._while_running(run, lambda: self._queue.claim_webhook(item_id, run.claimant, self._claim_s)):
            return
        item = self._while_running(run, lambda: self._queue.get_queue_item(item_id))
        body = QueueItemOutcome.from_item(item).model_dump_json().encode()

        def post() -> bool:
            status = run.caller.post(endpoint, body, self._headers(body))
            if not 200 <= status < 300:
                raise _Refused(f"HTTP {status}")
            return True

        if self._tried(run, item_id, url, post):
            self._while_running(run, lambda: self._queue.set_webhook_done(item_id, True, run.claimant))

    def _tried(self, run: _Run, item_id: int, url: str, attempt: Callable[[], T]) -> T | None:
        """`attempt()`'s result, tried up to `tries` times with backoff; None once given up on (and recorded so).

        Raises `_Stopped` when the run stops first, leaving the call due.
        """
        settings = self._settings
        backoff = settings.first_backoff_s
        for number in range(1, settings.tries + 1):
            try:
                return attempt()
            except WebhookAddressError as e:
                problem = str(e)
                break  # the next try would be refused as well
            except _Refused as e:
                problem = str(e)
            except (OSError, http.client.HTTPException) as e:
                problem = f"{type(e).__name__}: {e}"
            if run.stopping.is_set():
                raise _Stopped  # cut by stop(), not failed
            logger.warning(
                "Webhook %s for item %s failed (try %d of %d): %s", url, item_id, number, settings.tries, problem
            )
            if number < settings.tries and run.stopping.wait(backoff):
                raise _Stopped
            backoff *= 2
        logger.error("Gave up on the webhook %s for item %s: %s", url, item_id, problem)
        self._while_running(run, lambda: self._queue.set_webhook_done(item_id, False, run.claimant))
        return None

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": f"nodeloom/{nodeloom.__version__}"}
        secret = self._settings.secret
        if secret is not None:
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
        return headers

    def _while_running(self, run: _Run, access: Callable[[], T]) -> T:
        """The database access's result; raises `_Stopped` instead once the run has been stopped."""
        with self._database_guard:
            if run.stopping.is_set():
                raise _Stopped
            return access()
