"""The Invoker starts and stops the services; it holds no queue logic."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from nodeloom.app.invocations import load_builtin_nodes
from nodeloom.app.invocations.custom_nodes import load_custom_nodes
from nodeloom.app.services.invocation_services import InvocationServices, build_processor, build_services
from nodeloom.app.services.session_processor.session_processor_base import SessionProcessorBase
from nodeloom.app.services.session_processor.session_processor_workers import (
    WorkerControl,
    WorkerState,
    die_with_parent,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from multiprocessing.connection import Connection

    from nodeloom.app.services.config.config_default import NodeloomConfig
    from nodeloom.app.services.session_processor.session_processor_common import RunWatcher
    from nodeloom.backend.util.devices import DeviceName

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


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def build_worker(config: NodeloomConfig, devices: Sequence[DeviceName], watcher: RunWatcher | None = None) -> Worker:
    """A worker with one processor per device (the first on the services' own model cache), after loading the
    built-in nodes and the root's node packs; nothing runs until started."""
    load_builtin_nodes()
    load_custom_nodes(config.nodes_path)
    services = build_services(
        config.model_copy(update={"device": devices[0]}),
        watcher=watcher,
        processors_only=True,
    )
    further = [build_processor(services, device, watcher) for device in devices[1:]]
    return Worker(services, [services.session_processor, *further])


def run_worker_process(config: NodeloomConfig, device: DeviceName, state: WorkerState, conn: Connection) -> None:
    """What a child worker process of `nodeloom serve` runs: a worker on `device`, telling its parent of its
    sessions and answering its calls, until the parent asks it to stop or is gone."""
    die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when its children stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    control = WorkerControl(conn)
    worker = build_worker(config.model_copy(update={"devices": [device]}), [device], control)
    services = worker.services
    if not state.cache_enabled:
        services.invocation_cache.disable()
    worker.start()
    calls: dict[str, Callable[[], Any]] = {
        "cache_status": services.invocation_cache.get_status,
        "cache_enable": services.invocation_cache.enable,
        "cache_disable": services.invocation_cache.disable,
        "cache_clear": services.invocation_cache.clear,
        "model_stats": services.model_manager.load.get_stats,
        "empty_model_cache": services.model_manager.load.empty_cache,
    }
    control.serve(calls, worker.stop)
