"""A shutdown bounded by `shutdown_timeout_s`, whatever clients and nodes do.

On Ctrl-C or SIGTERM the server stops listening and `Shutdown` begins: routes that long-poll answer at once,
open connections get `DRAIN_SHARE` of the time to finish (then uvicorn cancels them), and the lifespan stops the
services in what is left (`Invoker.stop`). A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)

DRAIN_SHARE = 0.25
"""The share of `shutdown_timeout_s` that open connections get to finish. Long polls answer at once and websockets
close at once, so this only bounds slow transfers and socket.io's polling transport (up to 25 s per request)."""


class Shutdown:
    """When the server began to stop, and the time left. Used on the event loop only."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._began = asyncio.Event()
        self._deadline: float | None = None

    @property
    def began(self) -> bool:
        return self._deadline is not None

    def begin(self) -> None:
        """Starts the clock (once) and wakes every `wait`."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout_s
            self._began.set()

    def remaining_s(self) -> float:
        """The seconds left until the deadline; the clock starts now if it has not yet (a lifespan ending alone)."""
        self.begin()
        assert self._deadline is not None
        return max(0.0, self._deadline - time.monotonic())

    async def wait(self, event: asyncio.Event, timeout_s: float) -> None:
        """Returns once `event` is set, the shutdown begins, or `timeout_s` has passed."""
        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._began.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()


class NodeloomServer(uvicorn.Server):
    """uvicorn's server, with its shutdown bounded by `shutdown` and a second signal that exits at once.

    uvicorn answers a second Ctrl-C with `force_exit`, which stops its wait for connections but not the lifespan's
    shutdown, where the processor waits for a node that may ignore its cancel; and it ignores a second SIGTERM.
    """

    def __init__(self, config: uvicorn.Config, shutdown: Shutdown) -> None:
        # uvicorn types this as whole seconds but only hands it to `asyncio.wait_for`, which takes any.
        config.timeout_graceful_shutdown = shutdown.timeout_s * DRAIN_SHARE  # type: ignore[assignment]
        super().__init__(config)
        self._shutdown = shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._shutdown.begin()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            # As kill -9 would: the running item stays in progress and start-up recovery fails or requeues it.
            name = signal.Signals(sig).name
            os.write(2, f"A second {name}: exiting at once, without waiting for the shutdown to end\n".encode())
            os._exit(128 + sig)
        super().handle_exit(sig, frame)
