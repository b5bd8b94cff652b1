"""Webhooks: when an item of a batch with a `callback_url` finishes, its status and outputs are POSTed there."""

from __future__ import annotations

from abc import ABC, abstractmethod


class WebhookServiceBase(ABC):
    """Calls are made on the service's own threads, so a slow or dead endpoint never blocks the processor.

    An item's call falls due in the queue's write that finishes the item and stays due until it is answered with a
    2xx or given up on, so a call that a stop or a crash cut short is made after the next start. Of several servers
    sharing the database, the one that claims a call makes it; a claim that its server did not see through lapses.
    """

    @abstractmethod
    def start(self) -> None:
        """Starts making calls, first those left due by an earlier run."""

    @abstractmethod
    def stop(self) -> None:
        """Stops within about a second, cutting the calls under way; they stay due for the next start."""
