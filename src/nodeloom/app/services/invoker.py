"""The Invoker starts and stops the services; it holds no queue logic."""

from __future__ import annotations

import logging

from nodeloom.app.services.invocation_services import InvocationServices

logger = logging.getLogger(__name__)


class Invoker:
    def __init__(self, services: InvocationServices) -> None:
        self.services = services

    def start(self) -> None:
        """Recovers items a dead process left running, then starts delivering events and processing."""
        services = self.services
        recovered = services.session_queue.recover_interrupted()
        if recovered:
            logger.warning("Found %d queue item(s) left in progress by a stopped server: %s", len(recovered), recovered)
        report = services.images.check_consistency()
        if report.records_without_files:
            logger.error("Image records without files: %s", report.records_without_files)
        if report.files_without_records:
            logger.warning("Image files without records: %s", report.files_without_records)
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
