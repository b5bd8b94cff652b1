"""Events across processes: every process appends its events to the database's events table and tails it, so each
process's subscribers (socket.io clients, processors, webhooks) get every process's events."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from nodeloom.app.services.events.events_base import EventHandler, EventServiceBase
from nodeloom.app.services.events.events_common import (
    EVENT_TYPES,
    EventBase,
    QueueEventBase,
    StoredQueueEvent,
    StoredQueueEvents,
)
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.shared.timestamps import to_timestamp, utc_now

if TYPE_CHECKING:
    from nodeloom.app.services.shared.database.database_base import DatabaseBase, DbCursor, DbRow, Listener

logger = logging.getLogger(__name__)

CHANNEL = "nodeloom_events"
"""The PostgreSQL notification channel that wakes the tails: the payload stays in the table, of any size."""

_NEXT_SEQ = (
    "INSERT INTO event_sequences (queue_id, seq) VALUES (?, ?) "
    "ON CONFLICT (queue_id) DO UPDATE SET seq = event_sequences.seq + excluded.seq RETURNING seq"
)
_INSERT = (
    "INSERT INTO events (queue_id, seq, event_name, payload, created_at) VALUES (?, ?, ?, ?, ?) RETURNING event_id"
)
# On PostgreSQL each stored event notifies the tails, in the insert's own statement; the notifications of one
# transaction are sent once, at its commit, and only one of those alike.
_INSERT_NOTIFYING = f"{_INSERT}, pg_notify('{CHANNEL}', '') AS notified"
_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"
_LAST_ID = "SELECT MAX(event_id) AS last_id FROM events"
_AFTER = "SELECT event_id, queue_id, seq, event_name, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?"
_BETWEEN = (
    "SELECT event_id, queue_id, seq, event_name, payload FROM events WHERE event_id BETWEEN ? AND ? ORDER BY event_id"
)
_QUEUE_LAST = "SELECT seq FROM event_sequences WHERE queue_id = ?"
# A reconnecting client's replay: searches of the index on (queue_id, seq), which a test checks.
QUEUE_OLDEST = "SELECT MIN(seq) AS oldest FROM events WHERE queue_id = ?"
QUEUE_AFTER = "SELECT seq, event_name, payload FROM events WHERE queue_id = ? AND seq > ? ORDER BY seq LIMIT ?"
_PRUNE = "DELETE FROM events WHERE event_id <= ?"
_PRUNE_PROGRESS = "DELETE FROM events WHERE event_name = 'invocation_progress' AND created_at < ?"

_BATCH = 1000
"""The most events one read of the tail takes."""
_PRUNE_EVERY = 1000
"""A tail prunes after reading this many events (or `prune_interval_s`), so that the table stays near its bound."""
_GAP_WAIT_S = 30.0
"""How long the tail waits for an id it skipped to be committed: on PostgreSQL ids are taken before commits, so a
later one can commit first; one that never comes was rolled back."""


class DatabaseEventService(EventServiceBase):
    """Stores every event in the database and delivers, in this process, every event any process stored.

    A queue's events are numbered (`seq`) in the transaction that stores them, so that numbers grow in the order the
    queue's changes committed and are the same for every process. The tail reads events in their id order after a
    wake-up: a PostgreSQL notification sent by the storing transaction (the payload stays in the table, so an event
    of any size arrives), or on SQLite a poll every `poll_interval_s`. This process's own events are handed to its
    subscribers as they were stored, once committed, with no read nor parse (the tail skips their rows), unless
    another process's event of the same queue with a lower `seq` is still unread: then the tail delivers both in
    order. So each queue's events arrive in `seq` order in every process; events of different queues may
    interleave differently in different processes.
    Events stored once the service is built are delivered, those stored before are not. The newest `keep` events
    are kept, progress events (with their previews) for `keep_progress_s` at most. With `kinds`, only the events of
    those names are read back from other processes (a worker's processors need the queue's events only, not every
    other worker's node events): the rest are not parsed. `min_read_interval_s` spaces the tail's reads, so that
    a process for which a little delay does not matter (a worker: cancels and new batches) reads a busy table a few
    times a second, not at every other process's commit.
    """

    stores_queue_events = True

    def __init__(
        self,
        db: DatabaseBase,
        poll_interval_s: float = 0.05,
        keep: int = 10_000,
        keep_progress_s: float = 60.0,
        prune_interval_s: float = 30.0,
        write_delay_s: float = 0.01,
        kinds: frozenset[str] | None = None,
        min_read_interval_s: float = 0.0,
    ) -> None:
        self._db = db
        self._kinds = kinds
        self._min_read_interval_s = min_read_interval_s
        self._poll_interval_s = poll_interval_s
        self._keep = keep
        self._keep_progress_s = keep_progress_s
        self._prune_interval_s = prune_interval_s
        self._local = InProcessEventService()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_delay_s = write_delay_s
        self._pending: list[EventBase] = []
        self._pending_lock = threading.Lock()
        self._pending_wake = threading.Event()
        # Held while pending events are stored and handed on, so that they are numbered in the order dispatched.
        self._flush_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._gaps: dict[int, float] = {}
        # Shared by the tail and `_hand_on`, so that each event is delivered once and a queue's in `seq` order.
        self._lock = threading.Lock()
        self._delivered_seq: dict[str, int] = {}
        """The last `seq` delivered in this process, per queue."""
        self._handed: set[int] = set()
        """Ids of this process's events delivered by `_hand_on` that the tail is yet to read (and skip)."""
        self._deferred: set[int] = set()
        """Ids of this process's events `_hand_on` left to the tail, which delivers them whatever their kind."""
        with db.read() as cursor:
            cursor.execute(_LAST_ID)
            row = cursor.fetchone()
        self._last_id: int = 0 if row is None or row["last_id"] is None else row["last_id"]

    # --- storing

    def dispatch(self, event: EventBase) -> None:
        with self._pending_lock:
            self._pending.append(event)
        self._pending_wake.set()

    def flush(self) -> None:
        with self._flush_lock:
            events = self._take_pending()
            if not events:
                return
            try:
                with self._db.transaction() as cursor:
                    if cursor.dialect == "postgres":
                        # Events on their own (a node's, a model's, an image's) change nothing else, so their commit
                        # need not wait for the disk: a crash of the database server may lose the last ones, never
                        # a queue change or its events. It keeps the queues' numbers locked for a moment only.
                        cursor.execute(_ASYNC_COMMIT)
                    hand_on = self._store(cursor, events)
            except Exception:
                logger.exception("Could not store %d events: they are dropped", len(events))
                return
            hand_on()

    @contextmanager
    def writing(self) -> Iterator[None]:
        # Taken before the transaction, as `flush` takes it: a flush holding it waits for no lock the transaction
        # holds (the events' numbers, SQLite's writer lock).
        with self._flush_lock:
            yield

    def dispatch_in(self, cursor: DbCursor, events: Sequence[EventBase]) -> Callable[[], None]:
        # The events dispatched before and not stored yet (a session's node events, before the change that ends
        # it) go first, in this transaction: numbered before these, and with no transaction of their own.
        return self._store(cursor, [*self._take_pending(), *events])

    def stored(self, event_id: int, event: QueueEventBase) -> Callable[[], None]:
        return lambda: self._hand_on([(event_id, event)])

    def _take_pending(self) -> list[EventBase]:
        with self._pending_lock:
            events, self._pending = self._pending, []
        return events

    def _store(self, cursor: DbCursor, events: Sequence[EventBase]) -> Callable[[], None]:
        if not events:
            return _nothing
        numbers = Counter(event.queue_id for event in events if isinstance(event, QueueEventBase))
        next_seq: dict[str, int] = {}
        for queue_id, count in numbers.items():
            cursor.execute(_NEXT_SEQ, (queue_id, count))
            row = cursor.fetchone()
            assert row is not None, "an upsert with RETURNING answers its row"
            next_seq[queue_id] = row["seq"] - count + 1
        now = utc_now()
        insert = _INSERT_NOTIFYING if cursor.dialect == "postgres" else _INSERT
        stored: list[tuple[int, EventBase]] = []
        for event in events:
            if isinstance(event, QueueEventBase):
                seq = next_seq[event.queue_id]
                next_seq[event.queue_id] += 1
                event = event.model_copy(update={"seq": seq})
                cursor.execute(insert, (event.queue_id, seq, event.event_name, event.model_dump_json(), now))
            else:
                cursor.execute(insert, (None, None, event.event_name, event.model_dump_json(), now))
            row = cursor.fetchone()
            assert row is not None, "an insert with RETURNING answers its row"
            stored.append((row["event_id"], event))
        return lambda: self._hand_on(stored)

    def _hand_on(self, stored: list[tuple[int, EventBase]]) -> None:
        """Delivers this process's own committed events at once, as they are, unless the tail must: one it has
        read already, or a queue event whose predecessor (another process's) it is yet to deliver."""
        with self._lock:
            for event_id, event in stored:
                if event_id <= self._last_id and event_id not in self._gaps:
                    continue
                if isinstance(event, QueueEventBase):
                    if event.seq is None or self._delivered_seq.get(event.queue_id) != event.seq - 1:
                        self._deferred.add(event_id)
                        self._wake.set()
                        continue
                    self._delivered_seq[event.queue_id] = event.seq
                self._handed.add(event_id)
                self._local.dispatch(event)

    def stored_queue_events(self, queue_id: str, after: int, limit: int) -> StoredQueueEvents:
        with self._db.read() as cursor:
            cursor.execute(_QUEUE_LAST, (queue_id,))
            row = cursor.fetchone()
            last: int = 0 if row is None else row["seq"]
            cursor.execute(QUEUE_OLDEST, (queue_id,))
            row = cursor.fetchone()
            oldest: int | None = None if row is None else row["oldest"]
            rows: list[DbRow] = []
            if limit > 0:
                cursor.execute(QUEUE_AFTER, (queue_id, after, limit))
                rows = cursor.fetchall()
        return StoredQueueEvents(
            oldest=oldest,
            last=last,
            events=tuple(StoredQueueEvent(row["seq"], row["event_name"], row["payload"]) for row in rows),
        )

    # --- delivering

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        return self._local.subscribe(handler)

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._local.start()
            self._thread = threading.Thread(target=self._tail, name="nodeloom-events-tail", daemon=True)
            self._thread.start()
            self._writer = threading.Thread(target=self._write, name="nodeloom-events-writer", daemon=True)
            self._writer.start()

    def stop(self, timeout_s: float | None = None) -> None:
        thread = self._thread
        if thread is None:
            return
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._stopping.set()
        self._pending_wake.set()
        if self._writer is not None:
            self._writer.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            self._writer = None
        self._wake.set()
        # The tail reads once more after it is told to stop: the events stored until now are delivered.
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._thread = None
        self._local.stop(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _write(self) -> None:
        """Stores dispatched events in batches: a transaction each costs more than the events in it."""
        while not self._stopping.is_set():
            self._pending_wake.wait()
            self._pending_wake.clear()
            # Gathers the events that follow closely (a node's end, the next node's start) into the same write.
            self._stopping.wait(self._write_delay_s)
            self.flush()
        self.flush()

    def _tail(self) -> None:
        listener: Listener | None = None
        pruned, pruned_id = time.monotonic(), self._last_id
        while True:
            try:
                if listener is None:
                    listener = self._db.listen(CHANNEL)
                while self._read():
                    pass
                if self._stopping.wait(self._min_read_interval_s):
                    break
                if time.monotonic() - pruned >= self._prune_interval_s or self._last_id - pruned_id >= _PRUNE_EVERY:
                    pruned, pruned_id = time.monotonic(), self._last_id
                    self._prune()
                if listener is None:
                    self._wake.wait(self._poll_interval_s)
                else:
                    # This process's own events are notified too; the timeout bounds the wait for a skipped id.
                    listener.wait(1.0 if not self._gaps else self._poll_interval_s)
                self._wake.clear()
            except Exception:
                logger.exception("Could not read the events table; trying again")
                if listener is not None:
                    listener.close()
                    listener = None
                if self._stopping.wait(1.0):
                    break
        if listener is not None:
            listener.close()

    def _read(self) -> bool:
        """Delivers the events stored since the last read, and those of ids skipped before that have committed
        since; whether there may be more."""
        now = time.monotonic()
        with self._db.read() as cursor:
            skipped: list[DbRow] = []
            if self._gaps:
                cursor.execute(_BETWEEN, (min(self._gaps), max(self._gaps)))
                skipped = cursor.fetchall()
            cursor.execute(_AFTER, (self._last_id, _BATCH))
            rows = cursor.fetchall()
        with self._lock:
            for row in skipped:
                if self._gaps.pop(row["event_id"], None) is not None:
                    self._deliver(row)
            for row in rows:
                event_id: int = row["event_id"]
                for gap in range(self._last_id + 1, min(event_id, self._last_id + 1 + _BATCH)):
                    self._gaps[gap] = now
                self._last_id = event_id
                self._deliver(row)
            self._gaps = {event_id: seen for event_id, seen in self._gaps.items() if now - seen < _GAP_WAIT_S}
        return len(rows) == _BATCH

    def _deliver(self, row: DbRow) -> None:
        if row["event_id"] in self._handed:
            self._handed.discard(row["event_id"])
            return
        own = row["event_id"] in self._deferred
        self._deferred.discard(row["event_id"])
        if self._kinds is not None and row["event_name"] not in self._kinds and not own:
            # Not delivered, but its number counts: this process's own next event of the queue follows it.
            if row["seq"] is not None:
                self._delivered_seq[row["queue_id"]] = row["seq"]
            return
        event_type = EVENT_TYPES.get(row["event_name"])
        if event_type is None:
            logger.warning("Skipped event %s of an unknown kind, %r", row["event_id"], row["event_name"])
            return
        try:
            event = event_type.model_validate_json(row["payload"])
        except ValueError:
            logger.exception("Skipped event %s (%s): it does not read back", row["event_id"], row["event_name"])
            return
        if isinstance(event, QueueEventBase) and event.seq is not None:
            self._delivered_seq[event.queue_id] = event.seq
        self._local.dispatch(event)

    def _prune(self) -> None:
        now = datetime.now(UTC)
        with self._db.transaction() as cursor:
            cursor.execute(_PRUNE, (self._last_id - self._keep,))
            cursor.execute(_PRUNE_PROGRESS, (to_timestamp(now - timedelta(seconds=self._keep_progress_s)),))


def _nothing() -> None:
    pass
