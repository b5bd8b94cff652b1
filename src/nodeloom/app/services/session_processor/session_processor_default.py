"""The session processor: one thread that dequeues a session and runs it node by node."""

from __future__ import annotations

import cProfile
import functools
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nodeloom.app.services.events.events_common import (
    BatchEnqueuedEvent,
    EventBase,
    InvocationCompleteEvent,
    InvocationErrorEvent,
    InvocationStartedEvent,
    ProcessingPausedChangedEvent,
    QueueClearedEvent,
    QueueItemsRetriedEvent,
    QueueItemStatusChangedEvent,
)
from nodeloom.app.services.invocation_stats.invocation_stats_common import dump_summary, log_summary
from nodeloom.app.services.session_processor.session_processor_base import SessionProcessorBase
from nodeloom.app.services.session_processor.session_processor_common import (
    RunWatcher,
    SessionEnd,
    SessionProcessorStatus,
    SharedPause,
    item_gone,
    timeout_message,
)
from nodeloom.app.services.session_queue.session_queue_common import (
    ProcessorInfo,
    SessionQueueItemNotFoundError,
    SessionQueueItemTakenError,
)
from nodeloom.app.services.session_queue.session_queue_sql_processors import this_host
from nodeloom.app.services.shared.graph_common import uuid_string
from nodeloom.app.services.shared.session_runner import (
    NodeCompleted,
    NodeFailed,
    NodeStarted,
    RunEvent,
    SessionOutcome,
    run_session,
    summarise_stats,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from nodeloom.app.services.events.events_base import EventServiceBase
    from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
    from nodeloom.app.services.invocation_stats.invocation_stats_base import InvocationStatsServiceBase
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.metrics.metrics_base import MetricsServiceBase
    from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
    from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem
    from nodeloom.app.services.shared.invocation_context import InvocationContextBuilder

logger = logging.getLogger(__name__)

StopReason = Literal["canceled", "timeout", "shutdown", "deleted", "taken"]
"""Why a session was asked to stop: its item was canceled (or its queue cleared), it ran past its timeout, the
processor is stopping, or its item was found deleted."""


@dataclass(frozen=True)
class ProcessorSettings:
    poll_interval_s: float = 1.0
    save_state_after_s: float = 1.0
    stats_dir: Path | None = None
    profiles_dir: Path | None = None
    """Profile every session with cProfile and write the profiles here; None turns profiling off."""
    profile_prefix: str = ""
    restart_interval_s: float = 1.0
    """How long the processor stays down after its thread died, before the supervisor starts another."""
    max_session_nodes: int | None = None
    """The most nodes a session may prepare (`GraphExecutionState.limit_nodes`); None: no limit."""
    devices: tuple[str, ...] = ("auto",)
    """The devices its models run on, as it registers them."""
    heartbeat_interval_s: float = 5.0
    """How often it renews its lease on the items it holds, and sweeps for items whose processor is gone."""


@dataclass
class _Run:
    """The session being processed and why it may have to stop."""

    item: SessionQueueItem
    cancel: threading.Event = field(default_factory=threading.Event)
    node_id: str | None = None
    """The graph's node running or last run (its source node), for the heartbeat."""
    stop_reason: StopReason | None = None
    """The first reason given, once the session has been asked to stop."""

    def request_stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.cancel.set()


@dataclass(frozen=True)
class _Death:
    """What ended the processor's thread."""

    error: str
    trace: str


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class DefaultSessionProcessor(SessionProcessorBase):
    """Wakes on `BatchEnqueued` and on a resume, else polls; stops the running node on a cancel, a clear, a timeout
    or `stop()`. Its pause and resume are the queue's, so they reach the processors of every process.

    It registers itself in the queue when started (a new id at each start), and a heartbeat thread renews its lease
    every `heartbeat_interval_s` and sweeps the queue for items whose processor is gone (`recover_interrupted`);
    `stop()` deregisters it.

    Whatever a node raises (any `BaseException`: `sys.exit()` too) fails its session, with the traceback kept on the
    queue item, never the processor; an `Exception` in the processor itself is logged, fails the item, and the loop
    goes on. Anything else ends the thread: a supervisor thread fails the item it was running as interrupted, reports
    the processor down (`get_status().is_alive`) for `restart_interval_s`, then starts a new thread.
    """

    EVENTS_READ = frozenset(
        kind.event_name
        for kind in (
            BatchEnqueuedEvent,
            QueueItemsRetriedEvent,
            QueueItemStatusChangedEvent,
            QueueClearedEvent,
            ProcessingPausedChangedEvent,
        )
    )
    """The events `_on_event` acts on: all a process that runs only processors reads from the others."""

    def __init__(
        self,
        queue: SessionQueueBase,
        events: EventServiceBase,
        stats: InvocationStatsServiceBase,
        cache: InvocationCacheBase,
        contexts: InvocationContextBuilder,
        metrics: MetricsServiceBase,
        settings: ProcessorSettings | None = None,
        watcher: RunWatcher | None = None,
    ) -> None:
        self._queue = queue
        self._watcher = watcher
        self._events = events
        self._stats = stats
        self._cache = cache
        self._contexts = contexts
        self._metrics = metrics
        self._settings = settings or ProcessorSettings()
        self._wake = threading.Event()
        self._pause = SharedPause(queue, events)
        self._stopping = threading.Event()
        # Held while the worker thread is swapped, so `stop` never misses one the supervisor is starting.
        self._lifecycle = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._death: _Death | None = None
        self._restarts = 0
        self._run: _Run | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._info: ProcessorInfo | None = None
        self._heart: threading.Thread | None = None

    def start(self) -> None:
        if self._supervisor is not None:
            return
        self._stopping.clear()
        info = ProcessorInfo(
            processor_id=uuid_string(),
            host=this_host(),
            pid=os.getpid(),
            devices=list(self._settings.devices),
            started_at=datetime.now(UTC),
        )
        # Registered before the first claim, so that no sweep takes its first item for an orphan.
        self._queue.heartbeat(info)
        self._info = info
        self._heart = threading.Thread(
            target=self._beat, args=(info,), name="nodeloom-processor-heartbeat", daemon=True
        )
        self._heart.start()
        self._unsubscribe = self._events.subscribe(self._on_event)
        self._start_worker()
        self._supervisor = threading.Thread(target=self._supervise, name="nodeloom-processor-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, timeout_s: float | None = None) -> None:
        supervisor = self._supervisor
        if supervisor is None:
            return
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lifecycle:
            self._stopping.set()
            worker = self._worker
        self._wake.set()
        run = self._run
        if run is not None:
            limit = "" if timeout_s is None else f" (at most {timeout_s:.1f} s)"
            logger.info("Waiting for the node running item %s to stop%s", run.item.item_id, limit)
            run.request_stop("shutdown")
        if worker is not None:
            worker.join(_left(deadline))
        if worker is not None and worker.is_alive():
            item_id = run.item.item_id if run is not None else None
            logger.error(
                "The node running item %s did not stop within %.1f s: it is left running and the item in progress, "
                "to be recovered at the next start",
                item_id,
                timeout_s,
            )
        else:
            supervisor.join(_left(deadline))
        self._supervisor = None
        self._worker = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stop_heartbeat(deadline)

    def _stop_heartbeat(self, deadline: float | None) -> None:
        """Stops renewing the lease and deregisters: an item a node left running is then any sweep's to recover."""
        heart, info = self._heart, self._info
        self._heart = self._info = None
        if heart is not None:
            heart.join(_left(deadline))
        if info is not None:
            try:
                self._queue.deregister_processor(info.processor_id)
            except Exception:
                logger.exception("Could not deregister processor %s; its lease expires by itself", info.processor_id)

    def _beat(self, info: ProcessorInfo) -> None:
        while not self._stopping.wait(self._settings.heartbeat_interval_s):
            run = self._run
            try:
                self._queue.heartbeat(info, run.item.item_id if run else None, run.node_id if run else None)
                recovered = self._queue.recover_interrupted()
            except Exception:
                logger.exception("The heartbeat of processor %s failed; trying again", info.processor_id)
                continue
            if recovered:
                logger.warning("Recovered %d item(s) whose processor is gone: %s", len(recovered), recovered)

    def pause(self) -> SessionProcessorStatus:
        self._pause.set(True)
        return self.get_status()

    def resume(self) -> SessionProcessorStatus:
        self._pause.set(False)
        self._wake.set()
        return self.get_status()

    def get_status(self) -> SessionProcessorStatus:
        run, worker, death = self._run, self._worker, self._death
        info = self._info
        return SessionProcessorStatus(
            processor_id=info.processor_id if info else None,
            is_started=self._supervisor is not None,
            is_processing=not self._pause.paused,
            current_item_id=run.item.item_id if run else None,
            is_alive=worker is not None and worker.is_alive(),
            error=death.error if death else None,
            restarts=self._restarts,
        )

    def _on_event(self, event: EventBase) -> None:
        if isinstance(event, BatchEnqueuedEvent | QueueItemsRetriedEvent) or (
            isinstance(event, ProcessingPausedChangedEvent) and not event.paused
        ):
            self._wake.set()
            return
        run = self._run
        if run is None:
            return
        if isinstance(event, QueueItemStatusChangedEvent):
            if event.item_id == run.item.item_id and event.status == "canceled":
                run.request_stop("canceled")
        elif (
            isinstance(event, QueueClearedEvent)
            and event.queue_id == run.item.queue_id
            and item_gone(self._queue, run.item.item_id)
        ):
            run.request_stop("deleted")

    def _start_worker(self) -> None:
        self._death = None
        self._worker = threading.Thread(target=self._work, name="nodeloom-session-processor", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        try:
            self._loop()
        except BaseException as e:
            # What the loop lets through ends this thread: recorded for the supervisor, which starts another.
            self._death = _Death(f"{type(e).__name__}: {e}", traceback.format_exc())
            logger.critical("The session processor's thread died", exc_info=True)

    def _supervise(self) -> None:
        while True:
            worker = self._worker
            if worker is not None:
                worker.join()
            try:
                self._fail_abandoned_run()
            except Exception:
                logger.exception("Could not fail the item the processor's thread was running when it died")
            if self._stopping.wait(self._settings.restart_interval_s):
                return
            with self._lifecycle:
                if self._stopping.is_set():
                    return
                self._start_worker()
                self._restarts += 1
            logger.warning("Restarted the session processor's thread (restart %d)", self._restarts)

    def _fail_abandoned_run(self) -> None:
        """Fails, as interrupted, the item the dead thread was running: `_process` leaves its run behind then."""
        run, death = self._run, self._death
        if run is None or death is None:
            return
        self._run = None
        message = f"The session processor's thread died while this item ran: {death.error}"
        # The session is not stored: the thread may have died while changing it.
        session_id = run.item.session.id
        stats = summarise_stats(self._stats, session_id)
        self._fail(run.item, "Interrupted", message, death.trace, stats)
        self._keep_stats(run.item, stats, None, "failed")

    def _loop(self) -> None:
        info = self._info
        assert info is not None, "the worker thread runs between start() and stop()"
        processor_id = info.processor_id
        while not self._stopping.is_set():
            try:
                item = self._queue.dequeue(processor_id)
            except Exception:
                logger.exception("The session processor could not dequeue; retrying")
                self._stopping.wait(self._settings.poll_interval_s)
                continue
            if item is None:
                self._wake.wait(self._settings.poll_interval_s)
                self._wake.clear()
                continue
            self._process(_Run(item))

    def _process(self, run: _Run) -> None:
        self._run = run
        if self._watcher is not None:
            self._watcher.run_started(run.item)
        if self._stopping.is_set():  # `stop` came between the dequeue and now, and saw no run to stop
            run.request_stop("shutdown")
        timer = None
        if run.item.timeout is not None:
            timer = threading.Timer(run.item.timeout, run.request_stop, args=("timeout",))
            timer.daemon = True
            timer.start()
        profiler = cProfile.Profile() if self._settings.profiles_dir is not None else None
        try:
            if profiler is not None:
                profiler.enable()
            if self._settings.max_session_nodes is not None:
                run.item.session.limit_nodes(self._settings.max_session_nodes)
            outcome = run_session(
                run.item.session,
                lambda node: self._contexts.build(run.item, node, run.cancel.is_set),
                cache=self._cache,
                stats=self._stats,
                emit=functools.partial(self._on_run_event, run),
                should_stop=run.cancel.is_set,
            )
        finally:
            if profiler is not None:
                profiler.disable()
            if timer is not None:
                timer.cancel()
        status = self._end(run, outcome)
        # Not reached when something else ends the thread: the run stays for the supervisor to fail its item.
        self._run = None
        self._keep_stats(run.item, outcome.stats, profiler, status)

    def _on_run_event(self, run: _Run, event: RunEvent) -> None:
        item = run.item
        match event:
            case NodeStarted(node):
                run.node_id = item.session.prepared_source_mapping[node.id]
                self._events.dispatch(InvocationStartedEvent.build(item, node))
            case NodeCompleted(node, output, seconds):
                self._events.dispatch(InvocationCompleteEvent.build(item, node, output))
                if seconds >= self._settings.save_state_after_s:
                    try:
                        self._queue.set_queue_item_session(item.item_id, item.session, item.processor_id)
                    except SessionQueueItemNotFoundError:
                        run.request_stop("deleted")
                    except SessionQueueItemTakenError as taken:
                        logger.warning("%s", taken)
                        run.request_stop("taken")
            case NodeFailed(node, error):
                self._events.dispatch(
                    InvocationErrorEvent.build(item, node, error.error_type, error.message, error.traceback)
                )

    def _end(self, run: _Run, outcome: SessionOutcome) -> SessionEnd:
        """Stores how the session ended with the session and its stats, in one write; how it ended."""
        item, session, stats = run.item, run.item.session, outcome.stats
        held_by = item.processor_id
        error = outcome.error
        try:
            if error is not None:
                if error.node is None:
                    logger.error("The session processor failed on item %s", item.item_id, exc_info=error.exception)
                self._queue.fail_queue_item(
                    item.item_id, error.error_type, error.message, error.traceback, session, stats, held_by
                )
                return "failed"
            if outcome.status == "completed":
                return self._queue.complete_queue_item(item.item_id, session, stats, held_by)
            match run.stop_reason:
                case "timeout":
                    assert item.timeout is not None, "only an item with a timeout times out"
                    message = timeout_message(item.timeout)
                    self._queue.fail_queue_item(item.item_id, "Timeout", message, "", session, stats, held_by)
                    return "failed"
                case "shutdown":
                    return self._queue.interrupt_queue_item(item.item_id, session, stats, held_by)
                case "deleted" | "taken":
                    return run.stop_reason
                case _:  # canceled: the item's cancel is what stopped it
                    self._queue.cancel_queue_item(item.item_id, session, stats, held_by)
                    return "canceled"
        except SessionQueueItemNotFoundError:
            logger.info("Item %s was deleted while it ran", item.item_id)
            return "deleted"
        except SessionQueueItemTakenError as taken:
            logger.warning("%s", taken)
            return "taken"
        except Exception as e:
            logger.exception("The session processor could not store the end of item %s", item.item_id)
            self._fail(item, type(e).__name__, str(e), traceback.format_exc())
            return "failed"

    def _fail(
        self,
        item: SessionQueueItem,
        error_type: str,
        message: str,
        trace: str,
        stats: InvocationStatsSummary | None = None,
    ) -> None:
        try:
            self._queue.fail_queue_item(
                item.item_id, error_type, message, trace, stats=stats, processor_id=item.processor_id
            )
        except SessionQueueItemTakenError as taken:
            logger.warning("%s", taken)
        except Exception:
            logger.exception("Could not mark item %s failed", item.item_id)

    def _keep_stats(
        self,
        item: SessionQueueItem,
        summary: InvocationStatsSummary | None,
        profiler: cProfile.Profile | None,
        status: SessionEnd,
    ) -> None:
        """Counts the session in the metrics and tells the watcher; logs its stats and writes them where the
        settings ask."""
        self._metrics.record_session(status, summary)
        if self._watcher is not None:
            self._watcher.run_ended(item, status, summary)
        session_id = item.session.id
        if summary is None:
            return
        settings = self._settings
        try:
            log_summary(summary)
            if settings.stats_dir is not None:
                settings.stats_dir.mkdir(parents=True, exist_ok=True)
                dump_summary(summary, settings.stats_dir / f"{session_id}.json")
            if profiler is not None and settings.profiles_dir is not None:
                settings.profiles_dir.mkdir(parents=True, exist_ok=True)
                stem = settings.profiles_dir / f"{settings.profile_prefix}{session_id}"
                profiler.dump_stats(stem.with_suffix(".prof"))
                dump_summary(summary, stem.with_suffix(".json"))
        except Exception:
            logger.exception("Could not keep the stats of session %s", session_id)
