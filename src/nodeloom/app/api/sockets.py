"""socket.io at /ws/socket.io: every event of a queue goes to that queue's room, numbered, with replay.

The events are those of every process sharing the database (`DatabaseEventService`), each queue's numbered (`seq`)
when stored, so that every server numbers them alike. They leave the bus thread through one bridge (a deque, and
`loop.call_soon_threadsafe` to wake the loop); one task keeps the last ones (`ReplayBuffer`, bounded in count and
bytes) and emits them. Under load that task drains at most once per `flush_interval_s`, so each wake of the loop
carries many events. A client that reconnects with `subscribe_queue {queue_id, after: N}`, to this server or to
another of the same database, first gets the events numbered above N, from this server's memory where it reaches
back that far, else from the events table, or `events_missed` when they are no longer stored, so it knows to
refetch the state. Bulk download events go to the room a client joins with `subscribe_bulk_download
{bulk_download_id}` (InvokeAI's), unnumbered; other events to every client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio

from nodeloom.app.api.socket_replay import ReplayBuffer
from nodeloom.app.services.events.events_base import EventServiceBase
from nodeloom.app.services.events.events_common import (
    BulkDownloadEventBase,
    EventBase,
    QueueEventBase,
    QueueItemStatusChangedEvent,
)
from nodeloom.app.services.shared.database.database_common import DatabaseError

logger = logging.getLogger(__name__)

SOCKET_PATH = "/ws/socket.io"

REPLAY_PAGE = 100
"""The most stored events one read of the table takes for a reconnecting client: each page is read off the event
loop and sent before the next is read, so that a long replay holds neither the loop nor the memory (pages of 500 held
other requests up to half a second on PostgreSQL; of 100, a few tens of milliseconds, for the same total time)."""

SocketAuthorizer = Callable[[Mapping[str, Any], object], Awaitable[bool]]
"""Whether a client may connect, from its handshake's environ and its auth payload."""


def _event_packet(name: str, payload_json: str) -> str:
    """A socket.io EVENT packet for the default namespace, made once per event from JSON pydantic encoded.

    Queue events are sent through engine.io with it, not `sio.emit`, which encodes the payload again and walks it
    for binary parts for every event: that tripled the event loop's work per event, and the event loop competes
    with the processor for the GIL.
    """
    return f"2[{json.dumps(name)},{payload_json}]"


class SocketBridge:
    """Owns the socket.io server and the thread-to-loop bridge; notifies in-process waiters of status changes."""

    def __init__(self, replay_bytes: int, buffer_size: int = 1000, flush_interval_s: float = 0.01) -> None:
        # CORS off: the edge guard (security.py) checks the origin of every request, socket.io's too, and answers CORS.
        self.sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[])
        self.asgi = socketio.ASGIApp(self.sio, socketio_path=SOCKET_PATH)
        self._flush_interval_s = flush_interval_s
        self._sequence: dict[str, int] = {}
        """The number of the last event of each queue sent to its room."""
        self._ahead: dict[str, dict[str, int]] = {}
        """Per queue, the clients (engine.io ids) that joined its room with events read from the table beyond what
        this server has sent yet, each with the number it has: the room's events up to it are not sent it again."""
        self._events: EventServiceBase | None = None
        self.replay = ReplayBuffer(max_events=buffer_size, max_bytes=replay_bytes)
        self._status_listeners: set[Callable[[QueueItemStatusChangedEvent], None]] = set()
        self._lock = asyncio.Lock()
        self._close: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._authorize: SocketAuthorizer | None = None
        self.sio.on("connect", self._connect)
        self.sio.on("subscribe_queue", self._subscribe_queue)
        self.sio.on("unsubscribe_queue", self._unsubscribe_queue)
        self.sio.on("subscribe_bulk_download", self._subscribe_bulk_download)
        self.sio.on("unsubscribe_bulk_download", self._unsubscribe_bulk_download)

    async def start(self, events: EventServiceBase, authorize: SocketAuthorizer) -> None:
        """Bridges every event of `events` to socket.io until `stop`; lets in the clients `authorize` accepts."""
        self._authorize = authorize
        self._events = events
        loop = asyncio.get_running_loop()
        inbox: deque[EventBase | None] = deque()
        wakeup = asyncio.Event()
        wakeup_scheduled = False

        def bridge(event: EventBase | None) -> None:
            # Runs on the bus thread. The loop is woken once for however many events arrive before it drains
            # them, not once per event: under load that is most of the bridge's cost.
            nonlocal wakeup_scheduled
            inbox.append(event)
            if not wakeup_scheduled:
                wakeup_scheduled = True
                loop.call_soon_threadsafe(wakeup.set)

        async def drain() -> None:
            nonlocal wakeup_scheduled
            last_drain = -self._flush_interval_s
            while True:
                await wakeup.wait()
                # Each wake of the loop takes the GIL from the processor thread, waiting on it at its next database
                # call: while events keep coming, gather them for a short while and send them in one go. An event
                # after a quiet spell still goes out at once.
                pause = last_drain + self._flush_interval_s - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                last_drain = loop.time()
                wakeup.clear()
                wakeup_scheduled = False
                while inbox:
                    event = inbox.popleft()
                    if event is None:
                        return
                    try:
                        await self._emit(event)
                    except Exception:
                        logger.exception("Could not emit %s", event.event_name)

        self._unsubscribe = events.subscribe(bridge)
        self._close = lambda: bridge(None)
        self._task = asyncio.create_task(drain())

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._close is not None and self._task is not None:
            self._close()
            await self._task

    def add_status_listener(self, listener: Callable[[QueueItemStatusChangedEvent], None]) -> Callable[[], None]:
        """Calls `listener` on the event loop for every queue item status change; returns the remover."""
        self._status_listeners.add(listener)
        return lambda: self._status_listeners.discard(listener)

    async def _emit(self, event: EventBase) -> None:
        if isinstance(event, BulkDownloadEventBase):
            await self.sio.emit(event.event_name, event.model_dump(mode="json"), room=event.bulk_download_id)
            return
        if not isinstance(event, QueueEventBase):
            await self.sio.emit(event.event_name, event.model_dump(mode="json"))
            return
        if isinstance(event, QueueItemStatusChangedEvent):
            for listener in list(self._status_listeners):
                listener(event)
        seq = event.seq
        if seq is None:
            logger.error("Not sent: %s of queue %s has no number (it was not stored)", event.event_name, event.queue_id)
            return
        packet = _event_packet(event.event_name, event.model_dump_json())
        async with self._lock:
            queue_id = event.queue_id
            self._sequence[queue_id] = seq
            self.replay.add(queue_id, seq, packet)
            has: dict[str, int] = {}
            if (ahead := self._ahead.get(queue_id)) is not None:
                has = {eio_sid: position for eio_sid, position in ahead.items() if position >= seq}
                still_ahead = {eio_sid: position for eio_sid, position in has.items() if position > seq}
                if still_ahead:
                    self._ahead[queue_id] = still_ahead
                else:
                    del self._ahead[queue_id]
            for _, eio_sid in list(self.sio.manager.get_participants("/", queue_id)):
                if eio_sid not in has:
                    await self.sio.eio.send(eio_sid, packet)

    async def _connect(self, sid: str, environ: Mapping[str, Any], auth: object) -> None:
        # Anything but a refusal raised here would leave the client half-connected, where broadcasts still reach
        # it: a check that fails is a refusal.
        try:
            allowed = self._authorize is not None and await self._authorize(environ, auth)
        except Exception:
            logger.exception("The socket.io token check failed; the connection is refused")
            allowed = False
        if not allowed:
            # One answer for a missing and a wrong token.
            raise socketio.exceptions.ConnectionRefusedError(
                "A valid token is needed: send it as 'Authorization: Bearer <token>' or as the auth payload {token}"
            )

    async def _subscribe_queue(self, sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("queue_id"), str):
            return {"error": "subscribe_queue needs {queue_id: str, after?: int}"}
        queue_id: str = data["queue_id"]
        after = data.get("after")
        if isinstance(after, int) and not isinstance(after, bool):
            last = await self._catch_up(sid, queue_id, max(after, 0))
        else:
            last = await self._catch_up(sid, queue_id, None)
        return {"queue_id": queue_id, "last_seq": last}

    async def _catch_up(self, sid: str, queue_id: str, after: int | None) -> int:
        """Sends the client the queue's events numbered above `after` (none when None), then adds it to the queue's
        room; returns the number of the last event it has, after which the room's events follow without a gap.

        This server sends its room every event of the queue stored since it started, in order. The events the
        client missed come from its memory where that reaches back far enough, else from the table, page by page,
        outside the room and the lock, while the room's events go on; so the table is read until it holds nothing
        the client lacks that the room will not bring: up to the last event this server sent (whose predecessors
        are committed too), or to its end when the server has sent none of the queue's events yet (those stored
        before it started never come to the room). A client that the table took beyond what the room has had
        joins it marked as ahead, and is not sent those events again.
        """
        assert self._events is not None, "start() comes before any client"
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        async with self._lock:
            # Subscribing again replays from `after` again, not interleaved with the room's events.
            await self.sio.leave_room(sid, queue_id)
            self._set_ahead(queue_id, eio_sid, None)
        position = after
        table_read_to_end = False
        while True:
            async with self._lock:
                if not self.sio.manager.is_connected(sid, "/"):
                    return position or 0
                live = self._sequence.get(queue_id, 0)
                if position is None and live > 0:
                    position = live
                if position is not None:
                    oldest_kept = self.replay.oldest(queue_id)
                    if oldest_kept is not None and oldest_kept <= position + 1 <= live:
                        for packet in self.replay.after(queue_id, position):
                            await self.sio.eio.send(eio_sid, packet)
                        position = live
                    if position >= live and (live > 0 or table_read_to_end):
                        await self.sio.enter_room(sid, queue_id)
                        self._set_ahead(queue_id, eio_sid, position if position > live else None)
                        return position
            try:
                page = await asyncio.to_thread(
                    self._events.stored_queue_events, queue_id, position or 0, 0 if position is None else REPLAY_PAGE
                )
            except DatabaseError:
                # The client goes on from the room's events and refetches the state, as when they are pruned.
                logger.exception("Could not read the stored events of queue %s to replay them", queue_id)
                await self._tell_missed(sid, queue_id, position or 0, live + 1, live)
                position, table_read_to_end = live if position is None else max(position, live), True
                continue
            if position is None or position > page.last:
                # A plain subscription starts after the last stored event; a number beyond it comes from another
                # database, and the `last_seq` answered below it tells the client so.
                position, table_read_to_end = page.last, True
                continue
            if position < page.last and (page.oldest is None or position + 1 < page.oldest):
                oldest = page.last + 1 if page.oldest is None else page.oldest
                await self._tell_missed(sid, queue_id, position, oldest, page.last)
                position, table_read_to_end = page.last, True
                continue
            for stored in page.events:
                await self.sio.eio.send(eio_sid, _event_packet(stored.event_name, stored.payload))
            table_read_to_end = len(page.events) < REPLAY_PAGE
            # Past the page's end, up to the last number given and the last this server sent before the read, the
            # table has nothing: the rest of those events were pruned (progress events go after a minute).
            position = max(page.last, live) if table_read_to_end else page.events[-1].seq

    async def _tell_missed(self, sid: str, queue_id: str, after: int, oldest: int, last: int) -> None:
        await self.sio.emit(
            "events_missed", {"queue_id": queue_id, "after": after, "oldest": oldest, "last": last}, to=sid
        )

    def _set_ahead(self, queue_id: str, eio_sid: str, position: int | None) -> None:
        ahead = self._ahead.get(queue_id, {})
        ahead.pop(eio_sid, None)
        if position is not None:
            ahead[eio_sid] = position
        if ahead:
            self._ahead[queue_id] = ahead
        else:
            self._ahead.pop(queue_id, None)

    async def _unsubscribe_queue(self, sid: str, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("queue_id"), str):
            await self.sio.leave_room(sid, data["queue_id"])

    async def _subscribe_bulk_download(self, sid: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("bulk_download_id"), str):
            return {"error": "subscribe_bulk_download needs {bulk_download_id: str}"}
        await self.sio.enter_room(sid, data["bulk_download_id"])
        return {"bulk_download_id": data["bulk_download_id"]}

    async def _unsubscribe_bulk_download(self, sid: str, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("bulk_download_id"), str):
            await self.sio.leave_room(sid, data["bulk_download_id"])
