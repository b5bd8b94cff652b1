"""The session processor: takes sessions from the queue and runs them, node by node."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeloom.app.services.session_processor.session_processor_common import SessionProcessorStatus


class SessionProcessorBase(ABC):
    """Runs one session at a time on its own thread."""

    @abstractmethod
    def start(self) -> None:
        """Starts the thread; it processes at once unless paused."""

    @abstractmethod
    def stop(self, timeout_s: float | None = None) -> None:
        """Cancels the current session and waits for the thread, at most `timeout_s` (None: until it stops).

        A node that ignores its cancel past the timeout is left running on its (daemon) thread, and its item in
        progress for start-up recovery.
        """

    @abstractmethod
    def pause(self) -> SessionProcessorStatus:
        """Lets the current session finish and takes no new one until resumed."""

    @abstractmethod
    def resume(self) -> SessionProcessorStatus:
        """Takes new sessions again."""

    @abstractmethod
    def get_status(self) -> SessionProcessorStatus:
        """Started, processing, alive, and the current item."""
