"""Webhooks: when an item of a batch with a `callback_url` finishes, its status and outputs are POSTed there."""

from __future__ import annotations

from abc import ABC, abstractmethod


class WebhookServiceBase(ABC):
    """Delivery happens on the service's own thread, so a slow or dead endpoint never blocks the processor."""

    @abstractmethod
    def start(self) -> None:
        """Starts delivering."""

    @abstractmethod
    def stop(self) -> None:
        """Stops after the delivery in progress; undelivered calls are logged and dropped."""
