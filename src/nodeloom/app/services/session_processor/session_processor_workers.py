"""Session processors in child worker processes, one per device, started and watched by the API server.

Node code then never runs in the API process: a node that holds the GIL or ignores its cancel slows and blocks its
own worker only. Parent and child talk over one `multiprocessing` pipe each:

- the child tells each session it starts and ends (`WorkerControl`, the child's `RunWatcher`), and answers calls;
- the parent calls the child to read or clear its caches, and asks it to stop.

Everything else (the queue, the claim, pause, cancels, events) passes through the database, as for `nodeloom worker`
processes on other machines. The parent ends a child whose node ignores its item's cancel, or its timeout, for
`hard_cancel_after_s` (failing a timed-out item as the child would have), and starts a fresh one in the place of any
child that died; the dead child's item is then recovered as interrupted.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Protocol

from nodeloom.app.services.events.events_common import EventBase, QueueClearedEvent, QueueItemStatusChangedEvent
from nodeloom.app.services.invocation_cache.invocation_cache_base import InvocationCacheBase
from nodeloom.app.services.invocation_cache.invocation_cache_common import InvocationCacheStatus
from nodeloom.app.services.model_load.model_load_base import ModelLoadServiceBase
from nodeloom.app.services.session_processor.session_processor_base import SessionProcessorBase
from nodeloom.app.services.session_processor.session_processor_common import (
    SessionEnd,
    SessionProcessorStatus,
    SharedPause,
    item_gone,
    timeout_message,
)
from nodeloom.backend.model_manager.load.cache_stats import CacheStats, EmptyModelCacheResult

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput
    from nodeloom.app.services.config.config_default import NodeloomConfig
    from nodeloom.app.services.events.events_base import EventServiceBase
    from nodeloom.app.services.invocation_stats.invocation_stats_common import InvocationStatsSummary
    from nodeloom.app.services.metrics.metrics_base import MetricsServiceBase
    from nodeloom.app.services.session_queue.session_queue_base import SessionQueueBase
    from nodeloom.app.services.session_queue.session_queue_common import SessionQueueItem
    from nodeloom.backend.model_manager.configs import AnyModelConfig
    from nodeloom.backend.model_manager.load.cache_stats import ModelCacheStatsSummary
    from nodeloom.backend.model_manager.load.load_base import LoadedModel
    from nodeloom.backend.model_manager.taxonomy import SubModelType

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerState:
    """What a child starts with, so that one started in the place of a dead one carries on as it left off."""

    cache_enabled: bool = True


class WorkerTarget(Protocol):
    """What a child process runs (`invoker.run_worker_process`): the worker on `device` until told to stop or its
    parent is gone, telling the parent of its sessions and answering its calls over `conn`."""

    def __call__(self, config: NodeloomConfig, device: str, state: WorkerState, conn: Connection) -> None: ...


@dataclass(frozen=True)
class PoolSettings:
    devices: tuple[str, ...]
    hard_cancel_after_s: float = 10.0
    restart_interval_s: float = 1.0
    """How long a dead child's place stays empty before a fresh one starts; doubled (up to a minute) while children
    die within a minute of their start, so that a worker that cannot start does not spin."""
    call_timeout_s: float = 2.0
    """How long a call waits for a child's answer; a child whose node holds the GIL does not answer."""


PR_SET_PDEATHSIG = 1  # from Linux's <sys/prctl.h>


def die_with_parent() -> None:
    """Has the kernel kill this (child) process when the thread that started it ends, so that a worker never outlives
    a server killed outright, nor claims items after it (Linux; elsewhere the end of the pipe tells the worker, once
    it reads it). Exits at once if the parent is already gone."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def _send(conn: Connection, lock: threading.Lock, message: tuple[Any, ...]) -> None:
    """Sends `message` whole (one sender at a time); nothing if the other end is gone."""
    with lock, contextlib.suppress(OSError, ValueError):
        conn.send(message)


class WorkerControl:
    """The child's end of the pipe: tells the parent of each session (as the processors' `RunWatcher`) and runs the
    parent's calls on the worker's services until the parent says stop or is gone."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()

    def run_started(self, item: SessionQueueItem) -> None:
        self._send(("started", item.item_id, item.queue_id, item.processor_id, item.timeout))

    def run_ended(self, item: SessionQueueItem, status: SessionEnd, stats: InvocationStatsSummary | None) -> None:
        self._send(("ended", item.item_id, status, stats))

    def serve(self, calls: dict[str, Callable[[], Any]], stop: Callable[[float], None]) -> None:
        """Answers calls until the parent asks the worker to stop, then stops it (`stop(timeout_s)`) and returns.

        If the parent is gone, at any point (it died, or was told to exit at once), the process exits at once, its
        item left in progress for recovery as the parent's own would have been.
        """
        stopping: threading.Thread | None = None
        while stopping is None or stopping.is_alive():
            # While stopping, the pipe is watched for the parent's end only.
            if stopping is not None and not self._conn.poll(0.1):
                continue
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                logger.error("The server process is gone: worker process %d exits at once", os.getpid())
                logging.shutdown()
                os._exit(1)
            match message:
                case ("call", int(request), str(name)):
                    try:
                        self._send(("reply", request, calls[name](), None))
                    except Exception as error:
                        logger.exception("The worker's %s call failed", name)
                        self._send(("reply", request, None, f"{type(error).__name__}: {error}"))
                case ("stop", float(timeout_s)) if stopping is None:
                    stopping = threading.Thread(target=stop, args=(timeout_s,), name="nodeloom-worker-stop")
                    stopping.start()

    def _send(self, message: tuple[Any, ...]) -> None:
        # A parent that is gone is seen by `serve`, at the end of the pipe.
        _send(self._conn, self._send_lock, message)


@dataclass(frozen=True)
class _Running:
    """An item a child runs, as it told of its start."""

    item_id: int
    queue_id: str
    processor_id: str | None
    """The child's processor, which holds the item."""
    timeout: float | None
    started_at: float
    """When the parent heard of the start: the child's timer starts then too, within a pipe's delay."""


@dataclass(eq=False)
class _Child:
    """One worker process on one device, as the parent sees it."""

    device: str
    process: BaseProcess
    conn: Connection
    started_at: float
    running: _Running | None = None
    canceled_at: float | None = None
    """When the parent saw the running item canceled."""
    overdue: SessionEnd | None = None
    """How its session ended, where the parent ended the child for a node that ignored its cancel or its timeout."""
    replies: dict[int, Future[Any]] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerProcessPool(SessionProcessorBase):
    """The API server's processors: one child worker process per device, as `nodeloom worker` runs them."""

    def __init__(
        self,
        config: NodeloomConfig,
        queue: SessionQueueBase,
        events: EventServiceBase,
        metrics: MetricsServiceBase,
        target: WorkerTarget,
        settings: PoolSettings,
    ) -> None:
        self._config = config
        self._queue = queue
        self._events = events
        self._metrics = metrics
        self._target = target
        self._settings = settings
        self._state = WorkerState()
        self._pause = SharedPause(queue, events)
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._requests = itertools.count()
        self._stopping = threading.Event()
        self._stop_timeout_s: float | None = None
        self._supervisor: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._restarts = 0
        self._death: str | None = None
        # Items seen canceled, and queues seen cleared, lately: for a child that tells of its start after that.
        self._canceled: dict[int, float] = {}
        self._cleared: dict[str, float] = {}

    def start(self) -> None:
        if self._supervisor is not None:
            return
        self._stopping.clear()
        self._unsubscribe = self._events.subscribe(self._on_event)
        spawned = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, args=(spawned,), name="nodeloom-worker-pool", daemon=True
        )
        self._supervisor.start()
        spawned.wait()

    def stop(self, timeout_s: float | None = None) -> None:
        supervisor = self._supervisor
        if supervisor is None:
            return
        self._stop_timeout_s = timeout_s
        self._stopping.set()
        supervisor.join()
        self._supervisor = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def pause(self) -> SessionProcessorStatus:
        self._pause.set(True)
        return self.get_status()

    def resume(self) -> SessionProcessorStatus:
        self._pause.set(False)
        return self.get_status()

    def get_status(self) -> SessionProcessorStatus:
        with self._lock:
            children = list(self._children)
        running = [child.running.item_id for child in children if child.running is not None]
        alive = bool(children) and all(child.process.is_alive() for child in children)
        return SessionProcessorStatus(
            is_started=self._supervisor is not None,
            is_processing=not self._pause.paused,
            current_item_id=running[0] if running else None,
            is_alive=alive,
            error=None if alive else self._death,
            restarts=self._restarts,
        )

    def call_all(self, name: str) -> list[Any]:
        """What each child answers to `name` (see `invoker.run_worker_process`), leaving out those that do not answer
        within `call_timeout_s`."""
        with self._lock:
            children = list(self._children)
        pending = []
        for child in children:
            request = next(self._requests)
            reply: Future[Any] = Future()
            child.replies[request] = reply
            self._tell(child, ("call", request, name))
            pending.append((child, request, reply))
        deadline = time.monotonic() + self._settings.call_timeout_s
        answers = []
        for child, request, reply in pending:
            try:
                answers.append(reply.result(max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                logger.warning("The worker process on %s did not answer %s in time", child.device, name)
            except RuntimeError as error:
                logger.warning("The worker process on %s could not answer %s: %s", child.device, name, error)
            finally:
                child.replies.pop(request, None)
        return answers

    @property
    def cache_enabled(self) -> bool:
        return self._state.cache_enabled

    def set_cache_enabled(self, enabled: bool) -> None:
        """Turns the children's invocation caches on or off, and those of children started later."""
        with self._lock:
            self._state = WorkerState(cache_enabled=enabled)
        self.call_all("cache_enable" if enabled else "cache_disable")

    def _spawn(self, device: str) -> _Child:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=self._target,
            args=(self._config, device, self._state, child_end),
            name=f"nodeloom-worker-{device}",
            daemon=True,
        )
        process.start()
        child_end.close()
        child = _Child(device=device, process=process, conn=parent_end, started_at=time.monotonic())
        threading.Thread(target=self._read, args=(child,), name=f"nodeloom-worker-{device}-reader", daemon=True).start()
        logger.info("Started worker process %d on %s", process.pid, device)
        return child

    def _tell(self, child: _Child, message: tuple[Any, ...]) -> None:
        # A child that is gone is seen by the supervisor.
        _send(child.conn, child.send_lock, message)

    def _read(self, child: _Child) -> None:
        while True:
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                break
            match message:
                case ("started", int(item_id), str(queue_id), processor_id, timeout):
                    child.running = _Running(item_id, queue_id, processor_id, timeout, time.monotonic())
                    child.canceled_at = time.monotonic() if self._canceled_before(child.running) else None
                case ("ended", int(), status, stats):
                    child.running = None
                    child.canceled_at = None
                    self._metrics.record_session(status, stats)
                case ("reply", int(request), value, None):
                    if (reply := child.replies.get(request)) is not None:
                        reply.set_result(value)
                case ("reply", int(request), _, str(error)):
                    if (reply := child.replies.get(request)) is not None:
                        reply.set_exception(RuntimeError(error))
        for reply in list(child.replies.values()):
            if not reply.done():
                reply.set_exception(RuntimeError("the worker process ended"))
        if child.overdue is not None and child.running is not None:
            # The child was ended before it could tell its session's end: the parent counts it.
            self._metrics.record_session(child.overdue, None)

    def _on_event(self, event: EventBase) -> None:
        now = time.monotonic()
        if isinstance(event, QueueItemStatusChangedEvent) and event.status == "canceled":
            _remember(self._canceled, event.item_id, now)
            for child in list(self._children):
                if child.running is not None and child.running.item_id == event.item_id and child.canceled_at is None:
                    child.canceled_at = now
        elif isinstance(event, QueueClearedEvent):
            _remember(self._cleared, event.queue_id, now)
            for child in list(self._children):
                running = child.running
                if (
                    running is not None
                    and running.queue_id == event.queue_id
                    and child.canceled_at is None
                    and item_gone(self._queue, running.item_id)
                ):
                    child.canceled_at = now

    def _canceled_before(self, running: _Running) -> bool:
        """Whether the item a child just told of was canceled, or cleared from its queue, before the parent heard of
        its start."""
        return running.item_id in self._canceled or (
            running.queue_id in self._cleared and item_gone(self._queue, running.item_id)
        )

    def _supervise(self, spawned: threading.Event) -> None:
        """Starts the children, starts a fresh one in the place of each that dies, then stops them all.

        Only this thread starts children, and it outlives them: a child dies with the thread that started it (see
        `die_with_parent`)."""
        with self._lock:
            self._children = [self._spawn(device) for device in self._settings.devices]
        spawned.set()
        self._watch()
        with self._lock:
            children, self._children = self._children, []
        self._stop_children(children)

    def _stop_children(self, children: list[_Child]) -> None:
        """Each child stops its sessions (interrupting them) within its share of the time, then exits; one that
        does not is killed, its item left for recovery."""
        timeout_s = self._stop_timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for child in children:
            self._tell(child, ("stop", 0.8 * timeout_s if timeout_s is not None else 3600.0))
        for child in children:
            child.process.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                logger.error(
                    "The worker process on %s did not stop in time and was killed; its item is recovered at the next "
                    "start",
                    child.device,
                )
                child.process.kill()
                child.process.join()
            child.conn.close()

    def _watch(self) -> None:
        restart_interval = self._settings.restart_interval_s
        while not self._stopping.is_set():
            with self._lock:
                children = list(self._children)
            # Wakes at once on a death; the hard cancel is judged to within the timeout.
            wait([child.process.sentinel for child in children], timeout=0.2)
            now = time.monotonic()
            for child in children:
                if self._stopping.is_set():
                    return
                self._end_if_overdue(child, now)
                if child.process.is_alive():
                    continue
                child.process.join()
                child.conn.close()
                lived = now - child.started_at
                self._death = f"The worker process on {child.device} exited with code {child.process.exitcode}"
                logger.error("%s after %.1f s; starting a fresh one", self._death, lived)
                self._recover()
                restart_interval = min(60.0, 2 * restart_interval) if lived < 60 else self._settings.restart_interval_s
                if self._stopping.wait(0 if child.overdue is not None else restart_interval):
                    return
                with self._lock:
                    self._children[self._children.index(child)] = self._spawn(child.device)
                    self._restarts += 1

    def _end_if_overdue(self, child: _Child, now: float) -> None:
        """Ends the child if its node ignored its item's cancel, or its timeout, for `hard_cancel_after_s`; a
        canceled item is left canceled, whatever its timeout."""
        running, grace = child.running, self._settings.hard_cancel_after_s
        ended: SessionEnd
        if child.canceled_at is not None:
            if now - child.canceled_at < grace:
                return
            ignored = "its cancel"
            ended = "deleted" if running is not None and item_gone(self._queue, running.item_id) else "canceled"
        elif (
            running is not None
            and running.timeout is not None
            and now - running.started_at >= running.timeout + grace
            and self._fail_timed_out(running, running.timeout)
        ):
            ignored = f"its timeout of {running.timeout:g} s"
            ended = "failed"
        else:
            return
        logger.error(
            "The node running item %s on %s ignored %s for %.0f s: ending worker process %d",
            running.item_id if running is not None else None,
            child.device,
            ignored,
            grace,
            child.process.pid,
        )
        child.overdue = ended
        child.process.kill()
        child.process.join()

    def _fail_timed_out(self, running: _Running, timeout: float) -> bool:
        """Fails the item that ran past its timeout, as the child would have; whether the child is to be ended: not
        if it ended the item itself meanwhile (the failure then changes nothing).

        Failed while the child still holds the item: once the child is dead, any processor's sweep would recover it
        as interrupted."""
        message = f"{timeout_message(timeout)}; its node ignored the stop, and its worker process was ended"
        try:
            item = self._queue.fail_queue_item(
                running.item_id, "Timeout", message, "", processor_id=running.processor_id
            )
        except Exception:
            logger.exception("Could not fail item %s as timed out", running.item_id)
            return True
        return item.error_message == message

    def _recover(self) -> None:
        """Recovers the dead child's item now (its pid no longer runs), rather than at the next sweep."""
        try:
            recovered = self._queue.recover_interrupted()
        except Exception:
            logger.exception("Could not recover the items of a dead worker process; the sweeps will")
            return
        if recovered:
            logger.warning("Recovered %d item(s) of the dead worker process: %s", len(recovered), recovered)


def _remember(seen: dict[Any, float], key: object, now: float) -> None:
    """Notes `key` seen at `now`, forgetting what was seen over a minute ago: a child tells of its start within a
    pipe's delay."""
    seen[key] = now
    for old, when in list(seen.items()):
        if now - when > 60:
            seen.pop(old, None)


class WorkerInvocationCache(InvocationCacheBase):
    """The API server's view of its workers' invocation caches: their figures summed, and each call made on all.

    Nodes run in the workers only, so nothing in this process reads or writes outputs here."""

    def __init__(self, pool: WorkerProcessPool) -> None:
        self._pool = pool

    def get(self, key: int | str) -> BaseInvocationOutput | None:
        raise RuntimeError("Node outputs are cached in the worker processes")

    def save(self, key: int | str, output: BaseInvocationOutput) -> None:
        raise RuntimeError("Node outputs are cached in the worker processes")

    def delete(self, key: int | str) -> None:
        raise RuntimeError("Node outputs are cached in the worker processes")

    def create_key(self, invocation: BaseInvocation) -> int | str:
        raise RuntimeError("Node outputs are cached in the worker processes")

    def clear(self) -> None:
        self._pool.call_all("cache_clear")

    def enable(self) -> None:
        self._pool.set_cache_enabled(True)

    def disable(self) -> None:
        self._pool.set_cache_enabled(False)

    def get_status(self) -> InvocationCacheStatus:
        statuses: list[InvocationCacheStatus] = self._pool.call_all("cache_status")
        return InvocationCacheStatus(
            size=sum(status.size for status in statuses),
            hits=sum(status.hits for status in statuses),
            misses=sum(status.misses for status in statuses),
            enabled=self._pool.cache_enabled,
            max_size=sum(status.max_size for status in statuses),
        )


class WorkerModelCache(ModelLoadServiceBase):
    """The API server's view of its workers' model caches: their figures summed, and emptying done on all.

    Models load in the workers only."""

    def __init__(self, pool: WorkerProcessPool) -> None:
        self._pool = pool

    def load_model(
        self, config: AnyModelConfig, submodel_type: SubModelType | None = None, *, session_id: str | None = None
    ) -> LoadedModel:
        raise RuntimeError("Models load in the worker processes")

    def get_session_stats(self, session_id: str) -> ModelCacheStatsSummary:
        raise RuntimeError("Models load in the worker processes")

    def get_stats(self) -> CacheStats:
        stats: list[CacheStats] = self._pool.call_all("model_stats")
        sizes: dict[str, int] = {}
        for each in stats:
            for key, size in each.loaded_model_sizes.items():
                sizes[key] = sizes.get(key, 0) + size
        return CacheStats(
            hits=sum(each.hits for each in stats),
            misses=sum(each.misses for each in stats),
            high_watermark=sum(each.high_watermark for each in stats),
            in_cache=sum(each.in_cache for each in stats),
            cleared=sum(each.cleared for each in stats),
            cache_size=sum(each.cache_size for each in stats),
            loaded_model_sizes=sizes,
        )

    def empty_cache(self) -> EmptyModelCacheResult:
        results: list[EmptyModelCacheResult] = self._pool.call_all("empty_model_cache")
        return EmptyModelCacheResult(
            models_cleared=sum(result.models_cleared for result in results),
            bytes_freed=sum(result.bytes_freed for result in results),
        )
