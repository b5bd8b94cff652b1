"""The Invoker starts and stops the services; it holds no queue logic."""

from __future__ import annotations

import logging
import threading
import time

from nodeloom.app.services.invocation_services import InvocationServices
from nodeloom.app.services.session_processor.session_processor_base import SessionProcessorBase

logger = logging.getLogger(__name__)

PROCESSOR_SHARE = 0.8
"""The share of `stop`'s time the processor may wait for its node; the rest is kept for the last events, the
webhooks' stop (about a second) and closing the database, which come after it."""


class Invoker:
    def __init__(self, services: InvocationServices) -> None:
        self.services = services

    def start(self) -> None:
        """Recovers items a dead process left running and clears what it left on disk, then starts delivering
        events and processing."""
        services = self.services
        recovered = services.session_queue.recover_interrupted()
        if recovered:
            logger.warning("Found %d queue item(s) left in progress by a stopped server: %s", len(recovered), recovered)
        services.images.remove_leftovers(services.session_queue.get_queue_items_by_item_ids(recovered))
        for objects in (services.tensors, services.conditioning):
            objects.remove_temporary_files()
        services.bulk_download.start()
        services.model_manager.install.start()
        services.events.start()
        services.webhooks.start()
        if services.config.run_processor:
            services.session_processor.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stops the processor, the bulk downloads and the model installs, delivers the last events, stops the
        webhooks and closes the database, within `timeout_s` (default: the `shutdown_timeout_s` setting).

        In this order, because each step feeds the next: the processor's last status change is an event, which the
        webhooks act on, and all of them write to the database. A node that ignores its cancel is left running and
        its item in progress, for start-up recovery.
        """
        services = self.services
        deadline = time.monotonic() + (services.config.shutdown_timeout_s if timeout_s is None else timeout_s)
        running = services.session_processor.get_status().current_item_id
        services.session_processor.stop(timeout_s=PROCESSOR_SHARE * max(0.0, deadline - time.monotonic()))
        if running is not None:
            self._remove_images_of_interrupted(running)
        # Half the time left at most: its job stops between two images, and its last event is yet to be delivered.
        services.bulk_download.stop(timeout_s=max(0.0, deadline - time.monotonic()) / 2)
        # Likewise: its downloads stop between two chunks, and each cancelled job has an event to deliver.
        services.model_manager.install.stop(timeout_s=max(0.0, deadline - time.monotonic()) / 2)
        services.events.stop(timeout_s=max(0.0, deadline - time.monotonic()))
        services.webhooks.stop()
        services.database.close()

    def _remove_images_of_interrupted(self, item_id: int) -> None:
        """The images an item's cut-short run made that nothing will use, as start-up recovery does after a crash."""
        items = self.services.session_queue.get_queue_items_by_item_ids([item_id])
        interrupted = [item for item in items if item.status == "pending" or item.error_type == "Interrupted"]
        self.services.images.remove_interrupted_images(interrupted)


class Worker:
    """What `nodeloom worker` runs on the services: its processors and the events they need; the HTTP API, webhooks,
    downloads and the cleanup of the outputs folder are the API server's."""

    def __init__(self, services: InvocationServices, processors: list[SessionProcessorBase]) -> None:
        self.services = services
        self.processors = processors

    def start(self) -> None:
        """Recovers items whose processor is gone, then starts delivering events and processing."""
        recovered = self.services.session_queue.recover_interrupted()
        if recovered:
            logger.warning("Found %d queue item(s) whose processor is gone: %s", len(recovered), recovered)
        self.services.events.start()
        for processor in self.processors:
            processor.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stops the processors together (their sessions are interrupted), delivers the last events and closes the
        database, within `timeout_s` (default: the `shutdown_timeout_s` setting)."""
        services = self.services
        deadline = time.monotonic() + (services.config.shutdown_timeout_s if timeout_s is None else timeout_s)
        share = PROCESSOR_SHARE * max(0.0, deadline - time.monotonic())
        stopping = [threading.Thread(target=p.stop, args=(share,), daemon=True) for p in self.processors]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join(max(0.0, deadline - time.monotonic()))
        services.events.stop(timeout_s=max(0.0, deadline - time.monotonic()))
        services.database.close()
