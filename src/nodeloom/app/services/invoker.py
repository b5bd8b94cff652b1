"""The Invoker starts and stops the services; it holds no queue logic."""

from __future__ import annotations

import logging

from nodeloom.app.services.invocation_services import InvocationServices

logger = logging.getLogger(__name__)


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
        services.events.start()
        services.webhooks.start()
        services.session_processor.start()

    def stop(self) -> None:
        """Stops the processor (nothing stays in progress), delivers the last events, closes the database."""
        services = self.services
        services.session_processor.stop()
        services.events.stop()
        services.webhooks.stop()
        services.database.close()
