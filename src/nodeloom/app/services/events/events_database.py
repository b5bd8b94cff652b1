"""Events across processes: every process appends its events to the database's events table and tails it, so each
process's subscribers (socket.io clients, processors, webhooks) get every process's events."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from nodeloom.app.services.events.events_base import EventHandler, EventServiceBase
from nodeloom.app.services.events.events_common import EVENT_TYPES, EventBase, QueueEventBase
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
_INSERT = "INSERT INTO events (queue_id, seq, event_name, payload, created_at) VALUES (?, ?, ?, ?, ?)"
_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF"
_NOTIFY = "SELECT pg_notify(?, ?) AS notified"
_LAST_ID = "SELECT MAX(event_id) AS last_id FROM events"
_AFTER = "SELECT event_id, event_name, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?"
_BETWEEN = "SELECT event_id, event_name, payload FROM events WHERE event_id BETWEEN ? AND ? ORDER BY event_id"
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
    of any size arrives), or on SQLite a poll every `poll_interval_s` (at once for this process's own events).
    Events stored once the service is built are delivered, those stored before are not. The newest `keep` events
    are kept, progress events (with their previews) for `keep_progress_s` at most.
    """

    def __init__(
        self,
        db: DatabaseBase,
        poll_interval_s: float = 0.05,
        keep: int = 10_000,
        keep_progress_s: float = 60.0,
        prune_interval_s: float = 30.0,
    ) -> None:
        self._db = db
        self._poll_interval_s = poll_interval_s
        self._keep = keep
        self._keep_progress_s = keep_progress_s
        self._prune_interval_s = prune_interval_s
        self._local = InProcessEventService()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._gaps: dict[int, float] = {}
        with db.read() as cursor:
            cursor.execute(_LAST_ID)
            row = cursor.fetchone()
        self._last_id: int = 0 if row is None or row["last_id"] is None else row["last_id"]

    # --- storing

    def dispatch(self, event: EventBase) -> None:
        with self._db.transaction() as cursor:
            if cursor.dialect == "postgres":
                # An event on its own (a node's, a model's, an image's) changes nothing else, so its commit need
                # not wait for the disk: a crash of the database server may lose the last ones, never a queue
                # change or its events. It keeps the queue's number locked for a moment, not for a disk write.
                cursor.execute(_ASYNC_COMMIT)
            hand_on = self.dispatch_in(cursor, [event])
        hand_on()

    def dispatch_in(self, cursor: DbCursor, events: Sequence[EventBase]) -> Callable[[], None]:
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
        rows: list[tuple[object, ...]] = []
        for event in events:
            if isinstance(event, QueueEventBase):
                seq = next_seq[event.queue_id]
                next_seq[event.queue_id] += 1
                stored = event.model_copy(update={"seq": seq})
                rows.append((event.queue_id, seq, event.event_name, stored.model_dump_json(), now))
            else:
                rows.append((None, None, event.event_name, event.model_dump_json(), now))
        cursor.executemany(_INSERT, rows)
        if cursor.dialect == "postgres":
            cursor.execute(_NOTIFY, (CHANNEL, ""))
        return self._wake.set

    # --- delivering

    def subscribe(self, handler: EventHandler) -> Callable[[], None]:
        return self._local.subscribe(handler)

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._local.start()
            self._thread = threading.Thread(target=self._tail, name="nodeloom-events-tail", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        thread = self._thread
        if thread is None:
            return
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._stopping.set()
        self._wake.set()
        # The tail reads once more after it is told to stop: the events stored until now are delivered.
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._thread = None
        self._local.stop(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _tail(self) -> None:
        listener: Listener | None = None
        pruned, pruned_id = time.monotonic(), self._last_id
        while True:
            try:
                if listener is None:
                    listener = self._db.listen(CHANNEL)
                while self._read():
                    pass
                if self._stopping.is_set():
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
            if self._gaps:
                cursor.execute(_BETWEEN, (min(self._gaps), max(self._gaps)))
                for row in cursor.fetchall():
                    if self._gaps.pop(row["event_id"], None) is not None:
                        self._deliver(row)
            cursor.execute(_AFTER, (self._last_id, _BATCH))
            rows = cursor.fetchall()
        for row in rows:
            event_id: int = row["event_id"]
            for skipped in range(self._last_id + 1, min(event_id, self._last_id + 1 + _BATCH)):
                self._gaps[skipped] = now
            self._last_id = event_id
            self._deliver(row)
        self._gaps = {event_id: seen for event_id, seen in self._gaps.items() if now - seen < _GAP_WAIT_S}
        return len(rows) == _BATCH

    def _deliver(self, row: DbRow) -> None:
        event_type = EVENT_TYPES.get(row["event_name"])
        if event_type is None:
            logger.warning("Skipped event %s of an unknown kind, %r", row["event_id"], row["event_name"])
            return
        try:
            event = event_type.model_validate_json(row["payload"])
        except ValueError:
            logger.exception("Skipped event %s (%s): it does not read back", row["event_id"], row["event_name"])
            return
        self._local.dispatch(event)

    def _prune(self) -> None:
        now = datetime.now(UTC)
        with self._db.transaction() as cursor:
            cursor.execute(_PRUNE, (self._last_id - self._keep,))
            cursor.execute(_PRUNE_PROGRESS, (to_timestamp(now - timedelta(seconds=self._keep_progress_s)),))


def _nothing() -> None:
    pass
