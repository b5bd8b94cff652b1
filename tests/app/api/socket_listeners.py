"""socket.io listeners for the API tests, which see every event in the order the server sent it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import socketio

T = TypeVar("T")


class Listeners:
    """python-socketio clients subscribed to a queue, each keeping the events it receives in order.

    They are the asyncio clients, on an event loop of their own: those call handlers in the order the frames
    arrived, where the threaded client starts a thread per frame, and the threads may run in another order.
    """

    def __init__(self, url: str, count: int = 1, subscription: dict[str, Any] | None = None) -> None:
        self.events: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in range(count)]
        self.acks: list[dict[str, Any]] = []
        """Each client's answer to its `subscribe_queue`."""
        self._subscription = subscription or {"queue_id": "default"}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._clients = self._run(self._connect(url))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _connect(self, url: str) -> list[socketio.AsyncClient]:
        clients = []
        for events in self.events:
            sio = socketio.AsyncClient()
            sio.on("*", lambda name, data, events=events: events.append((name, data)))
            await sio.connect(url, socketio_path="/ws/socket.io", transports=["websocket"])
            clients.append(sio)
            self.acks.append(await sio.call("subscribe_queue", self._subscription, timeout=10))
        return clients

    async def _disconnect(self) -> None:
        for sio in self._clients:
            await sio.disconnect()

    def close(self) -> None:
        self._run(self._disconnect())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
