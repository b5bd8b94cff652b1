"""socket.io at /ws/socket.io: every event of a queue goes to that queue's room, numbered, with replay.

The events are those of every process sharing the database (`DatabaseEventService`), each queue's numbered (`seq`)
when stored, so that every server numbers them alike. They leave the bus thread through one bridge (a deque, and
`loop.call_soon_threadsafe` to wake the loop); one task keeps the last ones (`ReplayBuffer`, bounded in count and
bytes) and emits them. Under load that task drains at most once per `flush_interval_s`, so each wake of the loop
carries many events. A client that reconnects with `subscribe_queue {queue_id, after: N}` first gets the events
numbered above N, or `events_missed` when they are no longer kept, so it knows to refetch the state. Bulk download
events go to the room a client joins with `subscribe_bulk_download {bulk_download_id}` (InvokeAI's), unnumbered;
other events to every client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict, deque
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

logger = logging.getLogger(__name__)

SOCKET_PATH = "/ws/socket.io"

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
        self._sequence: defaultdict[str, int] = defaultdict(int)
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
            for _, eio_sid in list(self.sio.manager.get_participants("/", queue_id)):
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
        async with self._lock:
            await self.sio.enter_room(sid, queue_id)
            last = self._sequence[queue_id]
            if isinstance(after, int) and not isinstance(after, bool) and after < last:
                oldest = self.replay.oldest(queue_id)
                oldest = last + 1 if oldest is None else oldest
                if after + 1 < oldest:
                    await self.sio.emit(
                        "events_missed", {"queue_id": queue_id, "after": after, "oldest": oldest, "last": last}, to=sid
                    )
                else:
                    eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
                    for packet in self.replay.after(queue_id, after):
                        await self.sio.eio.send(eio_sid, packet)
        return {"queue_id": queue_id, "last_seq": last}

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
