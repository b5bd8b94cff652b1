"""The node-facing API: what a node may reach while it runs, and nothing more."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nodeloom.app.invocations.baseinvocation import CanceledException

if TYPE_CHECKING:
    from nodeloom.app.invocations.baseinvocation import BaseInvocation


@dataclass(frozen=True)
class InvocationContextData:
    """Which queue item, session and node the context belongs to."""

    invocation: BaseInvocation
    source_invocation_id: str
    session_id: str
    queue_id: str = "default"
    item_id: int = 0
    batch_id: str = ""


ProgressCallback = Callable[[str, "float | None"], None]


def _ignore_progress(message: str, percentage: float | None) -> None:
    return None


def _never_canceled() -> bool:
    return False


@dataclass(frozen=True)
class UtilInterface:
    """Cancellation and progress for long-running nodes."""

    _is_canceled: Callable[[], bool] = _never_canceled
    _on_progress: ProgressCallback = _ignore_progress

    def is_canceled(self) -> bool:
        """True once the session this node runs in has been canceled; a long node should stop then."""
        return self._is_canceled()

    def signal_progress(self, message: str, percentage: float | None = None) -> None:
        """Reports progress (`percentage` from 0 to 1); raises `CanceledException` if the session was canceled."""
        if self._is_canceled():
            raise CanceledException()
        self._on_progress(message, percentage)


@dataclass(frozen=True)
class InvocationContext:
    """Built for each invocation by the engine."""

    data: InvocationContextData
    util: UtilInterface = field(default_factory=UtilInterface)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("nodeloom.invocation"))
